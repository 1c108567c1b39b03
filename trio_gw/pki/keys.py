"""Key helpers: the type and size of a key, and whether a key belongs to a certificate.

DSA keys are recognised by class name too: cryptography 51 deprecates DSA and
warns whenever a name of ``asymmetric.dsa`` is touched, which would print a
warning at every start.  trio-gw never accepts DSA keys (OpenSSL's security
level 2 refuses them anyway); it only has to name one in a refusal.

cryptography 47+ also returns post-quantum keys (ML-DSA in certificates,
ML-KEM), whose class names changed between releases (``MlDsa44PrivateKey``,
``MLDSA44PrivateKey``).  They are recognised by class name rather than by
importing ``asymmetric.mldsa``, so this module works on every cryptography
release the project allows.  The TLS stack (OpenSSL 3.0) cannot use them; they
are named here so that describing any parsable certificate succeeds.
"""

from __future__ import annotations

import re
from typing import Any, Final, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    ed448,
    ed25519,
    rsa,
    x448,
    x25519,
)
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

from trio_gw.errors import CertificateError

#: Names returned by :func:`key_type`, and how they read in messages.
KEY_TYPE_DISPLAY: Final = {
    "rsa": "RSA",
    "ec": "ECDSA",
    "ed25519": "Ed25519",
    "ed448": "Ed448",
    "dsa": "DSA",
    "x25519": "X25519",
    "x448": "X448",
    "ml-dsa-44": "ML-DSA-44",
    "ml-dsa-65": "ML-DSA-65",
    "ml-dsa-87": "ML-DSA-87",
    "ml-kem-768": "ML-KEM-768",
    "ml-kem-1024": "ML-KEM-1024",
}

_KEY_TYPES: Final[tuple[tuple[tuple[type, ...], str], ...]] = (
    ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "rsa"),
    ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "ec"),
    ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "ed25519"),
    ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "ed448"),
    ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "x25519"),
    ((x448.X448PrivateKey, x448.X448PublicKey), "x448"),
)
_PRIVATE_KEY_TYPES: Final = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    x25519.X25519PrivateKey,
    x448.X448PrivateKey,
)
_PUBLIC_KEY_TYPES: Final = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    x25519.X25519PublicKey,
    x448.X448PublicKey,
)
_BY_CLASS_NAME: Final = re.compile(r"(?:ML-?(DSA|KEM)-?(\d+)|(DSA))(PRIVATE|PUBLIC)KEY")


def key_type(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """Name the algorithm of a private or public key.

    Args:
        key: a cryptography key object.

    Returns:
        A key of :data:`KEY_TYPE_DISPLAY`: ``"rsa"``, ``"ec"``, ``"ed25519"``,
        ``"ed448"``, ``"dsa"``, ``"x25519"``, ``"x448"``, ``"ml-dsa-44"``, ...

    Raises:
        CertificateError: the object is not a key type this module knows.
    """
    for classes, name in _KEY_TYPES:
        if isinstance(key, classes):
            return name
    named = _by_class_name(key)
    if named is None:
        raise CertificateError(f"unsupported key type: {type(key).__name__}")
    return named[0]


def key_size(key: PrivateKeyTypes | PublicKeyTypes) -> int:
    """Give a key's size in bits.

    RSA and DSA: the modulus size.  EC: the curve size.  Edwards, Montgomery
    and post-quantum keys: the size of the raw public key (256 for Ed25519,
    456 for Ed448).

    Args:
        key: a cryptography key object.

    Returns:
        The size in bits.

    Raises:
        CertificateError: the object is not a key type this module knows.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return key.curve.key_size
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return key.key_size
    named = _by_class_name(key)
    if named is not None and named[0] == "dsa":
        return int(cast(Any, key).key_size)
    raw = _public(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return 8 * len(raw)


def public_key_der(key: PrivateKeyTypes | PublicKeyTypes) -> bytes:
    """Encode the public half of a key as DER SubjectPublicKeyInfo.

    Args:
        key: a private or public key.

    Returns:
        The SPKI DER bytes (what SPKI pins hash).

    Raises:
        CertificateError: the object is not a key type this module knows.
    """
    der: bytes = _public(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def key_matches_certificate(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Tell whether a private key is the one whose public half a certificate carries.

    Args:
        key: the private key.
        cert: the certificate.

    Returns:
        True when both public keys are equal (compared as SPKI DER).

    Raises:
        CertificateError: ``key`` is not a key type this module knows.
    """
    try:
        certified = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    if key_type(key) != key_type(certified):
        return False
    return public_key_der(key) == public_key_der(certified)


def _public(key: PrivateKeyTypes | PublicKeyTypes) -> Any:
    """The public half of a key; ``Any`` because post-quantum types are not imported."""
    if isinstance(key, _PUBLIC_KEY_TYPES):
        return key
    if isinstance(key, _PRIVATE_KEY_TYPES):
        return key.public_key()
    named = _by_class_name(key)
    if named is None:
        raise CertificateError(f"unsupported key type: {type(key).__name__}")
    return cast(Any, key).public_key() if named[1] else key


def _by_class_name(key: object) -> tuple[str, bool] | None:
    """``("ml-dsa-44", is_private)`` or ``("dsa", is_private)`` for such a cryptography key, else None."""
    if not type(key).__module__.startswith("cryptography"):
        return None
    match = _BY_CLASS_NAME.fullmatch(type(key).__name__.upper())
    if match is None:
        return None
    algorithm, level, dsa, half = match.groups()
    name = "dsa" if dsa else f"ml-{algorithm.lower()}-{level}"
    return name, half == "PRIVATE"
