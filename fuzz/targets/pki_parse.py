"""Fuzz target ``pki-parse``: certificate and key parsing on any bytes.

Drives :func:`trio_gw.pki.parse.parse_certificates`,
:func:`~trio_gw.pki.parse.parse_private_key` (without and with a password) and
:func:`~trio_gw.pki.parse.has_private_key_block`, then the inspection helpers
the gateway applies to every parsed certificate (fingerprint, id, SPKI pin,
description) — these run in the snapshot compiler and must not raise either.
"""

from __future__ import annotations

import base64
import urllib.parse

from fuzz.targets._support import InvariantViolation
from trio_gw.errors import CertificateError
from trio_gw.pki.info import (
    certificate_id,
    describe_certificate,
    fingerprint_sha256,
    spki_pin,
)
from trio_gw.pki.parse import (
    has_private_key_block,
    parse_certificates,
    parse_private_key,
)

INVARIANT = """\
Any bytes give a non-empty list of certificates or ``CertificateError``,
nothing else; every returned certificate can be fingerprinted, pinned and
described without an exception; ASCII input gives the same result as bytes and
as ``str``.  ``parse_private_key`` (with and without a password) gives a key or
``CertificateError``; ``has_private_key_block`` gives a bool.
"""

PASSWORD = b"fuzz"


def _certificates(data: bytes | str) -> list[str] | str:
    """Fingerprints of the parsed certificates, or the error's message."""
    try:
        certs = parse_certificates(data)
    except CertificateError as exc:
        return f"error: {exc}"
    if not certs:
        raise InvariantViolation("parse_certificates returned an empty list")
    out = []
    for cert in certs:
        out.append(fingerprint_sha256(cert))
        certificate_id(cert)
        spki_pin(cert)
        describe_certificate(cert)
    return out


def fuzz_one(data: bytes) -> None:
    """Parse ``data`` as certificates and as keys; check the invariant."""
    as_bytes = _certificates(data)
    if data.isascii():
        as_text = _certificates(data.decode("ascii"))
        if as_text != as_bytes:
            raise InvariantViolation(f"bytes and str inputs differ: {as_bytes!r} vs {as_text!r}")
    if not isinstance(has_private_key_block(data), bool):
        raise InvariantViolation("has_private_key_block did not return a bool")
    for password in (None, PASSWORD):
        try:
            parse_private_key(data, password=password)
        except CertificateError:
            pass


def _armor(label: str, body: str, *, headers: str = "") -> bytes:
    """A PEM-armoured block (built here so that no armour line appears literally in the source)."""
    dashes = "-" * 5
    return f"{dashes}BEGIN {label}{dashes}\n{headers}{body}\n{dashes}END {label}{dashes}\n".encode()


#: Hand-written seeds: broken or truncated structures only, never real key material.
SEEDS: dict[str, bytes] = {
    "pem-garbage": _armor("CERTIFICATE", "MIIB"),
    "pem-unterminated": _armor("CERTIFICATE", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A").rsplit(b"\n", 2)[0],
    "der-prefix": b"\x30\x82\x01\x0a\x02\x82\x01\x01\x00",
    "base64": b"TUlJQg==",
    "url-encoded": _armor("CERTIFICATE", "MIIB").replace(b" ", b"%20").replace(b"\n", b"%0A"),
    "key-label": _armor("PRIVATE KEY", "MC4CAQAwBQYDK2VwBCIEIA=="),
    "legacy-headers": _armor("RSA PRIVATE KEY", "AAAA", headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n"),
}


def generated_seeds() -> dict[str, bytes]:
    """Real certificates and keys in every encoding (made at run time, never committed)."""
    from cryptography.hazmat.primitives import serialization

    from trio_gw.testing.pki import chain_of_depth, self_signed_leaf

    out: dict[str, bytes] = {}
    for name, issued in (("ec-chain", chain_of_depth(1)), ("rsa", chain_of_depth(0, key_kind="rsa")),
                         ("ed25519", self_signed_leaf("ed.example", key_kind="ed25519"))):
        pem = issued.chain_pem().encode()
        out[f"{name}.pem"] = pem
        out[f"{name}.der"] = issued.cert_der()
        out[f"{name}.b64"] = base64.b64encode(issued.cert_der())
        out[f"{name}.pem.b64"] = base64.b64encode(pem)
        out[f"{name}.url"] = urllib.parse.quote(pem.decode(), safe="+/=").encode()
        out[f"{name}.key"] = issued.key_pem().encode()
        out[f"{name}.key.der"] = issued.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    leaf = chain_of_depth(0)
    out["ec.key.encrypted"] = leaf.key_pem(password=PASSWORD).encode()
    out["ec.key.traditional"] = leaf.key_pem(fmt="traditional").encode()
    out["cert-then-key"] = (leaf.cert_pem() + leaf.key_pem()).encode()
    return out
