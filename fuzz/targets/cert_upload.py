"""Fuzz target ``cert-upload``: validation of uploaded Certificate and CA Certificate entities.

Drives :func:`trio_gw.model.certificates.parse_certificate_entity` and
:func:`~trio_gw.model.certificates.parse_ca_certificate_entity`, which the
Admin API and the declarative loader call on every uploaded certificate (and
which catch nothing but :class:`~trio_gw.errors.ConfigError`).

Input layout: the first byte is a header, the rest the entity's fields.

- bit 0 of the first byte: a CA Certificate (``1``) instead of a Certificate
  (``0``); bits 1–2 pick the validation time ``now`` from :data:`NOWS`.  A text
  seed starts with ``0``–``7``.
- the rest is split on ``|`` into :data:`FIELDS`, in order (``cert``, ``key``,
  ``cert_alt``, ``key_alt``, ``tags``, ``snis``, ``crls``, ``cert_digest``,
  then the name of an extra field).  An empty field is absent.  ``tags`` and
  ``snis`` are ``,``-separated lists; ``crls`` is a list when it holds a ``,``,
  else one text.  A whole field ``#e`` is the empty string, ``#n`` null, ``#i``
  a number, ``#b`` a boolean, ``#l`` an empty list, ``#d`` an empty object
  (the types a JSON body or YAML file can carry).  Fields are decoded as UTF-8
  with surrogate escapes.  Every field is put in the entity whatever its kind,
  so a ``key`` sent with a CA certificate is an unknown field.
- before the split, ``@`` followed by one byte is replaced by an item of a pool
  of real PKI material (``POOL``: certificates, keys in several formats, CRLs,
  an encrypted key, a cert+key bundle, a digest), chosen by that byte modulo
  the pool's size; each ``~`` right after it followed by three bytes ``p p v``
  sets byte ``pp`` (big-endian, modulo the length) of the item's DER to ``v``
  before it is PEM-armoured — so the fuzzer edits deep inside certificates,
  keys and CRLs while the PEM stays readable.  Concatenated references make
  chains (``@a@b``) and bundles.

The pool is deterministic — fixed keys, serials and dates, signatures by
Ed25519, Ed448, RSA PKCS#1 v1.5 and deterministic ECDSA — so an input means the
same entity in every process and every crash reproduces (``generated_seeds()``
therefore writes ``@`` references, never PEM, to the corpus).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fuzz.targets._support import InvariantViolation
from trio_gw.errors import CertificateError, ConfigError
from trio_gw.model.certificates import (
    CA_CERTIFICATE_FIELDS,
    CERTIFICATE_FIELDS,
    parse_ca_certificate_entity,
    parse_certificate_entity,
    redact_certificate,
)
from trio_gw.model.entities import CACertificate, Certificate
from trio_gw.model.fields import field_label
from trio_gw.pki.info import describe_certificate, fingerprint_sha256
from trio_gw.pki.keys import key_matches_certificate, key_type
from trio_gw.pki.parse import (
    has_private_key_block,
    parse_certificates,
    parse_private_key,
)
from trio_gw.tls.dhparams import probably_prime
from trio_gw.tls.revocation import parse_crl

INVARIANT = """\
Any field values give an entity or ``ConfigError``, nothing else (a bare
``CertificateError`` is a finding: the Admin API and the loader catch only
``ConfigError``).  Every problem carries a path whose first part is a field of
the entity; no problem message and no ``redact_certificate`` output (tags
aside: the sender's own text) holds private-key material (``PRIVATE KEY``
armour, or a key's secret numbers in raw, hex or base64 form).  A returned
Certificate's ``cert`` parses, holds no key, and its leaf matches ``key`` (same
for the alt pair, of another key type); a returned CA Certificate holds one CA
certificate whose SHA-256 is ``cert_digest``, and CRLs issued by it that
``tls.revocation.parse_crl`` reads (as the client-certificate plugins do, catching
no ``CertificateError``).  Validating
a returned entity's own fields again gives the same entity (normalisation is
idempotent).
"""

#: The fields an input is split into, in order (the last one names an extra field).
FIELDS: Final = ("cert", "key", "cert_alt", "key_alt", "tags", "snis", "crls", "cert_digest")
#: Validation times: mid-2025, the epoch, the day EXPIRED_AT leaves expire, and 2101.
NOWS: Final = (1_750_000_000, 0, 1_704_067_200, 4_133_980_800)
_CA = 0x01
_LIST_FIELDS: Final = frozenset({"tags", "snis"})
_SPECIAL: Final[dict[bytes, Callable[[], Any]]] = {
    b"#e": lambda: "", b"#n": lambda: None, b"#i": lambda: 0, b"#b": lambda: True,
    b"#l": list, b"#d": dict,
}
_REFERENCE: Final = re.compile(rb"@(.)((?:~...)*)", re.DOTALL)
_DASHES: Final = "-" * 5  # PEM armour is built, never written literally in the source
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- the pool --------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolItem:
    """One piece of PKI material: DER under a PEM label, or ready text (``label`` None)."""

    name: str
    data: bytes
    label: str | None = None

    def render(self, patches: bytes = b"") -> bytes:
        """The item as input text, after applying ``~ppv`` patches to its DER (or text)."""
        data = bytearray(self.data)
        for i in range(0, len(patches) - 3, 4):
            if data:
                data[int.from_bytes(patches[i + 1 : i + 3], "big") % len(data)] = patches[i + 3]
        if self.label is None:
            return bytes(data)
        return armor(self.label, bytes(data)).encode("ascii")


def armor(label: str, der: bytes) -> str:
    """PEM-armour ``der`` under ``label`` (64-column base64)."""
    body = base64.b64encode(der).decode("ascii")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"{_DASHES}BEGIN {label}{_DASHES}\n{lines}\n{_DASHES}END {label}{_DASHES}\n"


def _seed(name: str, size: int) -> bytes:
    return hashlib.shake_256(b"trio-gw fuzz cert-upload " + name.encode()).digest(size)


def _ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return ec.derive_private_key(int.from_bytes(_seed(name, 40), "big") % (order - 1) + 1, ec.SECP256R1())


def _rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A deterministic RSA key (cryptography generates only random ones)."""
    rng = random.Random(_seed(name, 32))
    e = 65537

    def prime() -> int:
        while True:
            n = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if (n - 1) % e and probably_prime(n, 24, rng):
                return n

    p, q = prime(), prime()
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "trio-gw tests"),
        x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name),
    ])


def _sign_options(key: CertificateIssuerPrivateKeyTypes) -> dict[str, Any]:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return {"algorithm": None}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"algorithm": hashes.SHA256(), "ecdsa_deterministic": True}
    return {"algorithm": hashes.SHA256()}  # RSA: PKCS#1 v1.5 is deterministic


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def _certificate(
    common_name: str, key: CertificateIssuerPrivateKeyTypes, serial: int, *, issuer: _Issued | None = None,
    is_ca: bool = False, basic_constraints: bool = True, not_before: int = 946_684_800,
    not_after: int = 32_503_680_000, dns_names: tuple[str, ...] = (),
) -> _Issued:
    name = _name(common_name)
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_EPOCH + timedelta(seconds=not_before))
        .not_valid_after(_EPOCH + timedelta(seconds=not_after))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False)
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), True)
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
    return _Issued(builder.sign(signer, **_sign_options(signer)), key)


def _crl(issuer_name: x509.Name, key: CertificateIssuerPrivateKeyTypes, revoked: tuple[int, ...] = ()) -> bytes:
    moment = datetime(2025, 6, 1, tzinfo=UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name)
        .last_update(moment)
        .next_update(moment + timedelta(days=7))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(moment).build())
    return builder.sign(key, **_sign_options(key)).public_bytes(serialization.Encoding.DER)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _key_der(key: PrivateKeyTypes, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())


def _legacy_encrypted(key: PrivateKeyTypes, password: bytes) -> bytes:
    """The key as OpenSSL legacy-encrypted PEM (AES-128-CBC) with a fixed IV, so deterministic."""
    der = _key_der(key, serialization.PrivateFormat.TraditionalOpenSSL)
    iv = _seed("iv", 16)
    digest = hashlib.md5(password + iv[:8], usedforsecurity=False).digest()  # EVP_BytesToKey, one round
    padding = 16 - len(der) % 16
    encryptor = Cipher(algorithms.AES(digest), modes.CBC(iv)).encryptor()
    body = encryptor.update(der + bytes([padding]) * padding) + encryptor.finalize()
    text = base64.b64encode(body).decode("ascii")
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    label = "EC PRIVATE KEY" if isinstance(key, ec.EllipticCurvePrivateKey) else "RSA PRIVATE KEY"
    return (f"{_DASHES}BEGIN {label}{_DASHES}\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{iv.hex().upper()}\n\n"
            f"{lines}\n{_DASHES}END {label}{_DASHES}\n").encode("ascii")


def build_pool() -> tuple[PoolItem, ...]:
    """The PKI material inputs refer to with ``@``: built from fixed seeds, the same in every process."""
    root = _certificate("trio-gw test CA", ed25519.Ed25519PrivateKey.from_private_bytes(_seed("root", 32)), 1,
                        is_ca=True)
    intermediate = _certificate("intermediate", ed448.Ed448PrivateKey.from_private_bytes(_seed("int", 57)), 2,
                                issuer=root, is_ca=True)
    ec_leaf = _certificate("ec", _ec_key("ec-leaf"), 10, issuer=root, dns_names=("api.example",))
    rsa_leaf = _certificate("rsa", _rsa_key("rsa-leaf"), 11, issuer=root, dns_names=("api.example",))
    small_rsa = _certificate("rsa1024", _rsa_key("rsa-1024", 1024), 17, issuer=root)
    ed_leaf = _certificate("ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(_seed("ed-leaf", 32)), 12,
                           issuer=intermediate, dns_names=("ed.example",))
    expired = _certificate("expired", _ec_key("expired"), 13, issuer=root, not_before=1_696_291_200,
                           not_after=1_704_067_200)
    future = _certificate("future", _ec_key("future"), 14, issuer=root, not_before=4_102_444_800,
                          not_after=4_133_980_800)
    not_ca = _certificate("not a CA", ed25519.Ed25519PrivateKey.from_private_bytes(_seed("not-ca", 32)), 15,
                          basic_constraints=False)
    # Same subject as the root, another key: its CRL names the root but does not verify with it.
    impostor = _certificate("trio-gw test CA", _rsa_key("impostor", 1024), 16, is_ca=True)
    x25519_key = x25519.X25519PrivateKey.from_private_bytes(_seed("x25519", 32))
    pem_bundle = armor("CERTIFICATE", _der(ec_leaf.cert)) + armor("PRIVATE KEY", _key_der(ec_leaf.key))
    leaf_pem = armor("CERTIFICATE", _der(ec_leaf.cert))
    digest = fingerprint_sha256(root.cert).upper()
    items = [
        PoolItem("root", _der(root.cert), "CERTIFICATE"),
        PoolItem("root.key", _key_der(root.key), "PRIVATE KEY"),
        PoolItem("ec", _der(ec_leaf.cert), "CERTIFICATE"),
        PoolItem("ec.key", _key_der(ec_leaf.key), "PRIVATE KEY"),
        PoolItem("rsa", _der(rsa_leaf.cert), "CERTIFICATE"),
        PoolItem("rsa.key", _key_der(rsa_leaf.key), "PRIVATE KEY"),
        PoolItem("rsa.key.pkcs1", _key_der(rsa_leaf.key, serialization.PrivateFormat.TraditionalOpenSSL),
                 "RSA PRIVATE KEY"),
        PoolItem("ed25519", _der(ed_leaf.cert), "CERTIFICATE"),
        PoolItem("ed25519.key", _key_der(ed_leaf.key), "PRIVATE KEY"),
        PoolItem("intermediate", _der(intermediate.cert), "CERTIFICATE"),
        PoolItem("intermediate.key", _key_der(intermediate.key), "PRIVATE KEY"),
        PoolItem("expired", _der(expired.cert), "CERTIFICATE"),
        PoolItem("expired.key", _key_der(expired.key), "PRIVATE KEY"),
        PoolItem("future", _der(future.cert), "CERTIFICATE"),
        PoolItem("future.key", _key_der(future.key), "PRIVATE KEY"),
        PoolItem("not-ca", _der(not_ca.cert), "CERTIFICATE"),
        PoolItem("root.crl", _crl(root.cert.subject, root.key, (10, 13)), "X509 CRL"),
        PoolItem("impostor.crl", _crl(root.cert.subject, impostor.key), "X509 CRL"),
        PoolItem("ecdsa.crl", _crl(root.cert.subject, _ec_key("crl-signer"), (11,)), "X509 CRL"),
        PoolItem("intermediate.crl", _crl(intermediate.cert.subject, intermediate.key), "X509 CRL"),
        PoolItem("impostor", _der(impostor.cert), "CERTIFICATE"),
        PoolItem("ec.key.sec1", _key_der(ec_leaf.key, serialization.PrivateFormat.TraditionalOpenSSL),
                 "EC PRIVATE KEY"),
        PoolItem("ec.key.encrypted", _legacy_encrypted(ec_leaf.key, b"fuzz")),
        PoolItem("x25519.key", _key_der(x25519_key), "PRIVATE KEY"),
        PoolItem("ec+key.b64", base64.b64encode(pem_bundle.encode())),
        PoolItem("ec+key.url", urllib.parse.quote(pem_bundle, safe="+=/").encode()),
        PoolItem("ec.url-alb", urllib.parse.quote(leaf_pem.replace("\n", " "), safe=" +=/").encode()),
        PoolItem("ec.der.b64", base64.b64encode(_der(ec_leaf.cert))),
        PoolItem("rsa1024", _der(small_rsa.cert), "CERTIFICATE"),
        PoolItem("rsa1024.key", _key_der(small_rsa.key), "PRIVATE KEY"),
        PoolItem("root.digest", ("SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))).encode()),
    ]
    return tuple(items)


@functools.cache
def pool() -> tuple[PoolItem, ...]:
    """:func:`build_pool`, built once per process."""
    return build_pool()


def ref(name: str, *patches: tuple[int, int]) -> bytes:
    """The input bytes that refer to pool item ``name`` (with ``(position, value)`` patches)."""
    index = [item.name for item in pool()].index(name)
    return b"@" + bytes([index]) + b"".join(b"~" + pos.to_bytes(2, "big") + bytes([v]) for pos, v in patches)


def private_parts(key: PrivateKeyTypes) -> list[bytes]:
    """The secret numbers of a key, as bytes (public parts such as an RSA modulus left out)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        values = [numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]
        return [v.to_bytes((v.bit_length() + 7) // 8, "big") for v in values]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")]
    return [key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption())]


def _windows(parts: list[bytes]) -> frozenset[bytes]:
    """12-byte windows of each secret (every 6 bytes): any leak of a base64 line holds one."""
    return frozenset(part[i : i + 12] for part in parts for i in range(0, max(len(part) - 11, 1), 6))


@functools.cache
def secret_windows() -> frozenset[bytes]:
    """:func:`_windows` of every private key of the pool."""
    parts: list[bytes] = []
    for item in pool():
        if item.name.endswith((".key", ".pkcs1", ".sec1")):
            parts += private_parts(serialization.load_der_private_key(item.data, None))
    return _windows(parts)


_KEY_ARMOUR: Final = re.compile(r"BEGIN[ +][A-Z0-9 +]*PRIVATE[ +]KEY")
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/_-]{16,}")


def _readings(text: str) -> list[bytes]:
    """What ``text`` may encode: itself, hex, and base64 runs (whitespace removed) at every alignment."""
    out = [text.encode("utf-8", "surrogatepass")]
    compact = re.sub(r"\s+", "", text)
    for run in _BASE64_RUN.findall(compact):
        run = run.replace("-", "+").replace("_", "/")
        for offset in range(4):
            chunk = run[offset:]
            out.append(base64.b64decode(chunk[: len(chunk) // 4 * 4]))
    for run in re.findall(r"[0-9A-Fa-f]{24,}", compact):
        out.append(bytes.fromhex(run[: len(run) // 2 * 2]))
    return out


# --- input → entity --------------------------------------------------------------------


def expand(data: bytes) -> bytes:
    """Replace every ``@x~ppv...`` reference by the pool item it names."""
    items = pool()

    def one(match: re.Match[bytes]) -> bytes:
        return items[match.group(1)[0] % len(items)].render(match.group(2))

    return _REFERENCE.sub(one, data)


def _value(field: str, raw: bytes) -> Any:
    if raw in _SPECIAL:
        return _SPECIAL[raw]()
    if field in _LIST_FIELDS or (field == "crls" and b"," in raw):
        return [part.decode("utf-8", "surrogateescape") for part in raw.split(b",")]
    return raw.decode("utf-8", "surrogateescape")


def decode_input(data: bytes) -> tuple[bool, int, dict[str, Any]]:
    """Whether the input is a CA certificate, the time ``now`` and the raw entity."""
    flags = data[0] if data else 0
    parts = expand(data[1:]).split(b"|")
    raw: dict[str, Any] = {}
    for field, part in zip(FIELDS, parts):
        if part:
            raw[field] = _value(field, part)
    if len(parts) > len(FIELDS) and parts[len(FIELDS)]:
        raw[parts[len(FIELDS)].decode("utf-8", "surrogateescape")] = "x"
    return bool(flags & _CA), NOWS[(flags >> 1) & 0x03], raw


def encode_input(raw: Mapping[str, bytes], *, ca: bool = False, now_index: int = 0, extra: bytes = b"") -> bytes:
    """The input standing for field values ``raw`` (bytes with ``@`` references)."""
    fields = [raw.get(name, b"") for name in FIELDS]
    if extra:
        fields.append(extra)
    while fields and not fields[-1]:
        fields.pop()
    return b"%d" % ((now_index << 1) | int(ca)) + b"|".join(fields)


# --- the invariant ---------------------------------------------------------------------


def _no_secret(texts: list[str], where: str, extra: frozenset[bytes] = frozenset()) -> None:
    secrets = secret_windows() | extra
    for text in texts:
        if _KEY_ARMOUR.search(text):
            raise InvariantViolation(f"{where} holds a private-key block")
        for reading in _readings(text):
            if any(window in reading for window in secrets):
                raise InvariantViolation(f"{where} holds private-key material")


def _check_error(exc: ConfigError, raw: Mapping[str, Any], allowed: frozenset[str]) -> None:
    # An unknown field is named as field_label shows it: itself when it looks like a
    # field name, a description otherwise (so a key sent as a field name is not echoed).
    labels = {field_label(k) for k in raw}
    fields = labels | allowed
    for problem in exc.problems:
        head = re.split(r"[.\[]", problem.path, maxsplit=1)[0]
        if not problem.path or (problem.path not in labels and head not in fields):
            raise InvariantViolation(f"problem without a field of the entity: {problem}")
        if not problem.message:
            raise InvariantViolation(f"problem without a message at {problem.path}")
    # Messages are the code's own words: no key material at all. Paths may echo a short
    # field name the sender chose, but never a private-key block.
    _no_secret([p.message for p in exc.problems], "a ConfigError message")
    if any(_KEY_ARMOUR.search(p.path) for p in exc.problems):
        raise InvariantViolation("a ConfigError path holds a private-key block")


def _check_certificate(entity: Certificate, now: int) -> None:
    own = private_parts(parse_private_key(entity.key))
    own += private_parts(parse_private_key(entity.key_alt)) if entity.key_alt else []
    shown = redact_certificate(entity)
    json.dumps(shown)
    if shown.get("tags") != list(entity.tags):
        raise InvariantViolation("redact_certificate changed the tags")
    # Tags are the sender's own text, shown back as sent; everything else must hold no key.
    _no_secret([json.dumps({k: v for k, v in shown.items() if k != "tags"}),
                *(v for v in shown.values() if isinstance(v, str))], "redact_certificate output", _windows(own))
    if (entity.cert_alt is None) != (entity.key_alt is None):
        raise InvariantViolation("cert_alt and key_alt are not both present or both absent")
    pairs = [(entity.cert, entity.key)]
    if entity.cert_alt is not None and entity.key_alt is not None:
        pairs.append((entity.cert_alt, entity.key_alt))
    types = []
    for cert_pem, key_pem in pairs:
        if has_private_key_block(cert_pem):
            raise InvariantViolation("a stored cert field holds a private key")
        chain = parse_certificates(cert_pem)
        key = parse_private_key(key_pem)
        if not key_matches_certificate(key, chain[0]):
            raise InvariantViolation("the stored key does not match the stored leaf")
        if describe_certificate(chain[0]).is_expired(now):
            raise InvariantViolation("an expired leaf was accepted")
        types.append(key_type(key))
    if len(types) == 2 and types[0] == types[1]:
        raise InvariantViolation(f"cert and cert_alt accepted with the same key type {types[0]}")
    again = parse_certificate_entity(
        {"cert": entity.cert, "key": entity.key, "cert_alt": entity.cert_alt, "key_alt": entity.key_alt,
         "tags": list(entity.tags)}, now=now, id=entity.id)
    if again != entity:
        raise InvariantViolation("validating a normalised Certificate again changes it")


def _check_ca_certificate(entity: CACertificate, now: int) -> None:
    _no_secret([entity.cert, *entity.crls], "a stored CA certificate")
    chain = parse_certificates(entity.cert)
    if len(chain) != 1:
        raise InvariantViolation(f"a CA certificate entity holds {len(chain)} certificates")
    if fingerprint_sha256(chain[0]) != entity.cert_digest:
        raise InvariantViolation("cert_digest is not the SHA-256 of the stored certificate")
    info = describe_certificate(chain[0])
    if not info.is_ca or info.is_expired(now):
        raise InvariantViolation("a CA certificate entity holds an expired or non-CA certificate")
    for crl in entity.crls:
        try:  # what the client-certificate plugins do with a stored CRL (they catch no CertificateError)
            parsed = parse_crl(crl)
        except CertificateError as exc:
            raise InvariantViolation(f"a stored CRL is refused by tls.revocation.parse_crl: {exc}") from exc
        if parsed.issuer != chain[0].subject:
            raise InvariantViolation("an attached CRL was not issued by the CA")
    again = parse_ca_certificate_entity(
        {"cert": entity.cert, "cert_digest": entity.cert_digest, "crls": list(entity.crls),
         "tags": list(entity.tags)}, now=now, id=entity.id)
    if again != entity:
        raise InvariantViolation("validating a normalised CA Certificate again changes it")


def fuzz_one(data: bytes) -> None:
    """Validate the entity ``data`` stands for; check the invariant."""
    is_ca, now, raw = decode_input(data)
    if is_ca:
        try:
            ca_entity = parse_ca_certificate_entity(raw, now=now, id="fuzz")
        except ConfigError as exc:
            _check_error(exc, raw, CA_CERTIFICATE_FIELDS)
            return
        _check_ca_certificate(ca_entity, now)
        return
    try:
        entity = parse_certificate_entity(raw, now=now, id="fuzz")
    except ConfigError as exc:
        _check_error(exc, raw, CERTIFICATE_FIELDS)
        return
    _check_certificate(entity, now)


#: Hand-written seeds: field syntax without PKI material.
SEEDS: dict[str, bytes] = {
    "empty": b"0",
    "types": b"0#i|#l|#d|#b|#n|#e|#i|#d",
    "text": b"0not a cert|not a key|||a,,b|x.example|||id",
    "ca-types": b"1#l|||||||#i",
    "unknown-field": b"0MIIB|MIIB|||||||passphrase",
}


def generated_seeds() -> dict[str, bytes]:
    """Entities over the pool: valid pairs and each validation failure (no PEM in the files: ``@`` references)."""
    chain_ed = ref("ed25519") + ref("intermediate")
    cases: dict[str, bytes] = {
        "valid-ec": encode_input({"cert": ref("ec"), "key": ref("ec.key"), "tags": b"a,b", "snis": b"api.example"}),
        "valid-dual": encode_input({"cert": ref("rsa"), "key": ref("rsa.key.pkcs1"),
                                    "cert_alt": ref("ec"), "key_alt": ref("ec.key.sec1")}),
        "valid-chain": encode_input({"cert": chain_ed, "key": ref("ed25519.key")}),
        "key-of-intermediate": encode_input({"cert": chain_ed, "key": ref("intermediate.key")}),
        "chain-reversed": encode_input({"cert": ref("intermediate") + ref("ed25519"), "key": ref("ed25519.key")}),
        "mismatched": encode_input({"cert": ref("ec"), "key": ref("rsa.key")}),
        "same-alt-type": encode_input({"cert": ref("ec"), "key": ref("ec.key"),
                                       "cert_alt": ref("expired"), "key_alt": ref("expired.key")}),
        "alt-without-key": encode_input({"cert": ref("ec"), "key": ref("ec.key"), "cert_alt": ref("rsa")}),
        "expired": encode_input({"cert": ref("expired"), "key": ref("expired.key")}),
        "expired-at-epoch": encode_input({"cert": ref("expired"), "key": ref("expired.key")}, now_index=1),
        "future": encode_input({"cert": ref("future"), "key": ref("future.key")}),
        "future-late": encode_input({"cert": ref("future"), "key": ref("future.key")}, now_index=3),
        "encrypted-key": encode_input({"cert": ref("ec"), "key": ref("ec.key.encrypted")}),
        "x25519-key": encode_input({"cert": ref("ec"), "key": ref("x25519.key")}),
        "rsa-1024": encode_input({"cert": ref("rsa1024"), "key": ref("rsa1024.key")}),
        "two-keys": encode_input({"cert": ref("ec"), "key": ref("ec.key") + ref("ec.key.sec1")}),
        "key-in-cert": encode_input({"cert": ref("ec") + ref("ec.key"), "key": ref("ec.key")}),
        "key-in-cert-b64": encode_input({"cert": ref("ec+key.b64"), "key": ref("ec.key")}),
        "key-in-cert-url": encode_input({"cert": ref("ec+key.url"), "key": ref("ec.key")}),
        "cert-alb": encode_input({"cert": ref("ec.url-alb"), "key": ref("ec.key")}),
        "cert-der-b64": encode_input({"cert": ref("ec.der.b64"), "key": ref("ec.key")}),
        "key-as-cert": encode_input({"cert": ref("ec.key"), "key": ref("ec")}),
        "patched-cert": encode_input({"cert": ref("ec", (200, 0x05)), "key": ref("ec.key")}),
        "patched-key": encode_input({"cert": ref("ec"), "key": ref("ec.key", (40, 0xFF))}),
        "ca-valid": encode_input({"cert": ref("root"), "crls": ref("root.crl"), "cert_digest": ref("root.digest"),
                                  "tags": b"ca"}, ca=True),
        "ca-intermediate": encode_input({"cert": ref("intermediate"), "crls": ref("intermediate.crl")}, ca=True),
        "ca-wrong-crl-issuer": encode_input({"cert": ref("root"), "crls": ref("intermediate.crl")}, ca=True),
        "ca-crl-bad-signature": encode_input(
            {"cert": ref("root"), "crls": ref("impostor.crl") + b"," + ref("ecdsa.crl") + b"," + ref("root.crl")},
            ca=True),
        "ca-impostor": encode_input({"cert": ref("impostor"), "crls": ref("root.crl") + b"," + ref("impostor.crl")},
                                    ca=True),
        "ca-not-ca": encode_input({"cert": ref("not-ca")}, ca=True),
        "ca-leaf": encode_input({"cert": ref("ec"), "key": ref("ec.key")}, ca=True),
        "ca-two": encode_input({"cert": ref("root") + ref("intermediate")}, ca=True),
        "ca-digest-mismatch": encode_input({"cert": ref("intermediate"), "cert_digest": ref("root.digest")}, ca=True),
        "ca-patched-crl": encode_input({"cert": ref("root"), "crls": ref("root.crl", (20, 0x31))}, ca=True),
        "ca-in-2101": encode_input({"cert": ref("root")}, ca=True, now_index=3),
        "passphrase": encode_input({"cert": ref("ec"), "key": ref("ec.key.encrypted")}, extra=b"passphrase"),
    }
    return cases
