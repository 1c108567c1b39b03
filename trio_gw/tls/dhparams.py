"""Finite-field Diffie-Hellman parameters for the DHE cipher suites (``ssl_dhparam``).

Theory of operation
-------------------
A TLS 1.2 ``DHE-RSA-*`` suite is negotiated only when the server context holds
DH parameters; without them OpenSSL skips the suite without a word, so a
client that offers nothing else gets ``no shared cipher`` (measured here: the
``intermediate`` preset lists three DHE suites, and before this module none of
them could ever be chosen).  Kong's ``intermediate`` preset brings the RFC 7919
group ``ffdhe2048`` for that reason, and ``ssl_dhparam`` (Kong and nginx) names
other parameters: a predefined group (``ffdhe2048`` ... ``ffdhe8192``), the path
of a PEM file, or the PEM itself.

What trio-gw decides, in the same spirit as the other settings of
:mod:`trio_gw.tls.downstream` (a setting is never ignored):

* DHE parameters are loaded only when an enabled suite needs them (a DHE suite
  in the TLS 1.2 list and TLS 1.2 or older enabled); ``ffdhe2048`` when
  ``ssl_dhparam`` is unset, for every preset and ``custom`` alike (Kong's
  ``old`` and nginx load none, which silently disables their DHE suites).
* ``ssl_dhparam`` set while no DHE suite can be negotiated is reported as unused.
* Parameters under 2048 bits are refused (Logjam, weakdh.org; OpenSSL 3 at its
  default security level refuses them too, but only at the first handshake).
  A file's prime and generator are checked: ``p`` a safe prime (``(p-1)/2``
  prime too, as ``openssl dhparam`` makes them), ``1 < g < p - 1``.

The RFC 7919 groups are not copied in as constants: RFC 7919 Appendix A defines
each prime as ``p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1`` with ``e``
Euler's number and ``X`` the smallest offset making ``p`` a safe prime; ``e``
is summed here as an exact integer series, and a test checks each result
against the group OpenSSL itself generates (``openssl genpkey -genparam
-pkeyopt group:ffdheNNNN``).  The PEM is PKCS #3 ``DHParameter``
(``SEQUENCE { prime INTEGER, base INTEGER }``), encoded and read by the small
DER code below (``cryptography`` deprecates its finite-field DH API).

Reading a file is the caller's job (:func:`is_path` says when the value is a
path); this module is pure.
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

from trio_gw.errors import ConfigError

__all__ = [
    "DEFAULT_GROUP",
    "FFDHE_GROUPS",
    "MINIMUM_BITS",
    "DhParams",
    "encode_pkcs3",
    "ffdhe_group",
    "is_path",
    "key_may_use_dhe",
    "parse_dhparam",
    "probably_prime",
    "read_pem",
]

#: RFC 7919 Appendix A: the group sizes and the offset ``X`` of each prime.
_FFDHE_OFFSETS = {2048: 560316, 3072: 2625351, 4096: 5736041, 6144: 15705020, 8192: 10965728}
#: The predefined groups ``ssl_dhparam`` accepts by name (Kong's list).
FFDHE_GROUPS = tuple(f"ffdhe{bits}" for bits in _FFDHE_OFFSETS)
#: Kong's ``intermediate`` preset; trio-gw's default wherever a DHE suite is enabled.
DEFAULT_GROUP = "ffdhe2048"
#: Smaller groups are refused (weakdh.org; NIST SP 800-131A: 2048 bits since 2014).
MINIMUM_BITS = 2048
_PEM = re.compile(
    r"-----BEGIN (X9\.42 )?DH PARAMETERS-----\s*(?P<body>[A-Za-z0-9+/=\s]*?)\s*-----END (X9\.42 )?DH PARAMETERS-----"
)
#: DER of the rsaEncryption and RSASSA-PSS algorithm identifiers (1.2.840.113549.1.1.1 / .10).
_RSA_OIDS = (bytes.fromhex("06092a864886f70d010101"), bytes.fromhex("06092a864886f70d01010a"))
_KEY_PEM = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----\s*([A-Za-z0-9+/=\s]{0,120})")
_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


@dataclass(frozen=True)
class DhParams:
    """DH parameters for a server context.

    Attributes:
        name: the RFC 7919 group name, or ``"custom"`` for other parameters.
        bits: the size of the prime.
        pem: PKCS #3 PEM, what ``SSLContext.load_dh_params`` reads.
    """

    name: str
    bits: int
    pem: bytes = field(repr=False)

    def describe(self) -> str:
        """Return a short form for logs."""
        return self.name if self.name != "custom" else f"custom {self.bits}-bit DH parameters"


def _e_fixed(bits: int) -> int:
    """``floor(e * 2**bits)``: the sum of 1/k!, computed with 64 guard bits."""
    one = 1 << (bits + 64)
    total, term, k = 0, one, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> 64


def _ffdhe_prime(bits: int) -> int:
    prime: int = (1 << bits) - (1 << (bits - 64)) + ((_e_fixed(bits - 130) + _FFDHE_OFFSETS[bits]) << 64) - 1
    return prime


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # one leading zero byte keeps it positive
    return b"\x02" + _der_length(len(raw)) + raw


def encode_pkcs3(prime: int, generator: int) -> bytes:
    """PEM of the PKCS #3 ``DHParameter`` for ``prime`` and ``generator``."""
    body = _der_integer(prime) + _der_integer(generator)
    der = b"\x30" + _der_length(len(body)) + body
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN DH PARAMETERS-----\n" + "\n".join(lines) + "\n-----END DH PARAMETERS-----\n").encode()


@lru_cache(maxsize=None)
def ffdhe_group(name: str) -> DhParams:
    """The RFC 7919 group ``name`` (one of :data:`FFDHE_GROUPS`); its generator is 2."""
    bits = int(name.removeprefix("ffdhe"))
    return DhParams(name, bits, encode_pkcs3(_ffdhe_prime(bits), 2))


def _der_read(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    """The contents of the DER element with ``tag`` at ``at``, and the offset after it."""
    if at + 2 > len(data) or data[at] != tag:
        raise ValueError("not the DER structure of DH parameters")
    length, at = data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or at + size > len(data):
            raise ValueError("a DER length is malformed")
        length, at = int.from_bytes(data[at : at + size], "big"), at + size
    if at + length > len(data):
        raise ValueError("the DER data is truncated")
    return data[at : at + length], at + length


def read_pem(text: str) -> tuple[int, int]:
    """The prime and generator of a ``DH PARAMETERS`` PEM (PKCS #3, or X9.42 whose first two integers are p, g).

    Raises:
        ValueError: no such PEM block, or its contents are not DH parameters.
    """
    match = _PEM.search(text)
    if match is None:
        raise ValueError("no '-----BEGIN DH PARAMETERS-----' block (make one with: openssl dhparam 2048)")
    try:
        der = base64.b64decode("".join(match["body"].split()), validate=True)
    except ValueError:
        raise ValueError("the PEM block is not valid base64") from None
    sequence, end = _der_read(der, 0, 0x30)
    if end != len(der):
        raise ValueError("data follows the DH parameters")
    numbers = []
    at = 0
    for _ in range(2):
        raw, at = _der_read(sequence, at, 0x02)
        if not raw or raw[0] & 0x80:
            raise ValueError("a DH parameter is not a positive integer")
        numbers.append(int.from_bytes(raw, "big"))
    return numbers[0], numbers[1]


def probably_prime(n: int, rounds: int, rng: random.Random) -> bool:
    """Miller-Rabin with ``rounds`` bases drawn from ``rng``, after trial division by the primes below 100."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def key_may_use_dhe(key_pem: str | bytes) -> bool:
    """Whether a certificate context holding this private key can serve a ``DHE-RSA-*`` suite (an RSA key).

    Decided from the PEM label and, for PKCS #8, the algorithm identifier at the start of
    the DER, without parsing the key: a certificate context with only ECDSA keys need not
    load DH parameters (~0.1 ms per context).  Anything unrecognised answers ``True``.
    """
    text = key_pem.decode("ascii", "replace") if isinstance(key_pem, bytes) else key_pem
    match = _KEY_PEM.search(text)
    if match is None:
        return True
    label = match[1].strip()
    if label == "RSA":
        return True
    if label == "EC":
        return False
    if label != "":  # ENCRYPTED and anything else: cannot tell
        return True
    head = "".join(match[2].split())
    head = head[: len(head) // 4 * 4]
    try:
        der = base64.b64decode(head)
    except ValueError:
        return True
    return any(oid in der for oid in _RSA_OIDS) or b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01" not in der


def is_path(value: str) -> bool:
    """Whether an ``ssl_dhparam`` value names a file (neither a group name nor PEM content)."""
    text = value.strip()
    return bool(text) and text.lower() not in FFDHE_GROUPS and "-----BEGIN" not in text


@lru_cache(maxsize=16)
def parse_dhparam(value: str, *, path: str = "ssl_dhparam") -> DhParams:
    """Parse an ``ssl_dhparam`` value: a group name or PEM content (a file's, once read).

    Args:
        value: ``ffdhe2048`` ... ``ffdhe8192`` (any letter case), or PEM text.
        path: the setting named in errors.

    Raises:
        ConfigError: unknown group, unreadable PEM, parameters too small or not a safe-prime group.
    """
    text = value.strip()
    if text.lower() in FFDHE_GROUPS:
        return ffdhe_group(text.lower())
    if "-----BEGIN" not in text:
        raise ConfigError(
            f"{text[:40]!r} is not a predefined group ({', '.join(FFDHE_GROUPS)}) nor DH parameters in PEM; "
            "a file's path is read by the node each time it loads its configuration",
            path=path,
        )
    try:
        prime, generator = read_pem(text)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path) from None
    bits = prime.bit_length()
    for name in FFDHE_GROUPS:
        group = ffdhe_group(name)
        if bits == group.bits and prime == _ffdhe_prime(bits) and generator == 2:
            return group
    if bits < MINIMUM_BITS:
        raise ConfigError(
            f"{bits}-bit DH parameters are too weak (Logjam, weakdh.org); use {DEFAULT_GROUP} or larger, "
            f"or a file from 'openssl dhparam {MINIMUM_BITS}'",
            path=path,
        )
    if not 1 < generator < prime - 1:
        raise ConfigError("the DH generator must lie between 1 and p - 1", path=path)
    rng = random.Random(prime)  # reproducible: the same file always gets the same verdict
    if not (probably_prime(prime, 2, rng) and probably_prime(prime // 2, 2, rng)):
        raise ConfigError(
            "the DH prime is not a safe prime (p and (p-1)/2 both prime); the file is damaged or was not made "
            f"by 'openssl dhparam' (a predefined group such as {DEFAULT_GROUP} needs no file)",
            path=path,
        )
    return DhParams("custom", bits, encode_pkcs3(prime, generator))
