"""Private keys sealed at rest: the datastore holds ciphertext, never a PEM key.

Theory of operation
-------------------
When the setting ``private_key_encryption_secret`` is set (Tyk's
``security.private_certificate_encoding_secret``), every private key the
datastore holds — a certificate's ``key`` and ``key_alt``, the ``key`` in the
configuration of Kong's legacy ``ssl`` plugin, the ``acme`` plugin's
``eab_hmac_key`` — is sealed before it is
written and opened after it is read (:data:`SEALED_FIELDS`, by field path).

* **KDF: scrypt** (RFC 7914), ``n=2**15, r=8, p=1`` (32 MiB, about 0.1 s),
  32-byte output, 16-byte random salt per datastore.  The secret is a string an
  operator typed: it may be a passphrase rather than 256 random bits, and a
  stolen database file allows offline guessing against any sealed value.  A
  memory-hard KDF makes each guess cost 32 MiB and ~0.1 s; HKDF would make it
  cost one hash.  Derivation happens once per process start (and twice per
  reseal), so the cost is paid off the request path.  Parameters are stored
  with the salt, so a later reseal can raise them.
* **AEAD: AES-256-GCM** with a random 96-bit nonce per value.  One key seals a
  few thousand values over its life, far below GCM's 2**32 random-nonce bound.
* **Associated data** ``["trio-gw sealed value", 1, kind, id, field]`` (JSON):
  a sealed blob opens only in the row and field it was sealed for, so blobs
  cannot be swapped between certificates or between ``key`` and ``key_alt``.
* **Key check**: the *seal record* (one ``meta`` row) holds the parameters, the
  salt and the AEAD encryption of a constant.  Opening it with a wrong secret
  fails before any key is read, with a message that says so.

Formats: a sealed value is ``tgw-sealed:1:`` + base64(nonce ‖ ciphertext ‖ tag);
the seal record is JSON ``{"format": 1, "kdf": "scrypt", "n", "r", "p", "salt",
"aead": "AES-256-GCM", "check"}`` with base64 bytes.  A PEM key starts with
``-----BEGIN``, so sealed and plain values cannot be confused.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trio_gw.store.base import SealedKeyError, StoreError

__all__ = [
    "DEFAULT_SCRYPT_N",
    "SEALED_FIELDS",
    "SealRecord",
    "Sealer",
    "has_plain_fields",
    "is_sealed",
    "seal_fields",
    "unseal_fields",
]

#: scrypt cost: RFC 7914 section 2 suggests 2**14 for interactive logins and
#: 2**20 for files; one derivation per process start affords 2**15 (32 MiB).
DEFAULT_SCRYPT_N: Final = 2**15
DEFAULT_SCRYPT_R: Final = 8
DEFAULT_SCRYPT_P: Final = 1
#: Fields sealed, per kind, as dotted paths into the row (``config.key``: the ``key`` of the
#: ``config`` mapping).  Every plugin's ``secret_fields`` must be here (a test checks it).
SEALED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "certificates": ("key", "key_alt"),
    "plugins": ("config.key", "config.eab_hmac_key"),
}

WRONG_SECRET: Final = (
    "private_key_encryption_secret does not open this datastore (it was sealed with a different secret)"
)
_PREFIX: Final = "tgw-sealed:1:"
_NONCE_SIZE: Final = 12
_SALT_SIZE: Final = 16
_CHECK_PLAINTEXT: Final = b"trio-gw key check"
_CHECK_AAD: Final = b'["trio-gw key check",1]'


def is_sealed(value: object) -> bool:
    """Whether a stored value is a sealed blob (rather than a plain PEM key)."""
    return isinstance(value, str) and value.startswith(_PREFIX)


@dataclass(frozen=True)
class SealRecord:
    """How a datastore's keys are sealed: KDF parameters, salt, key check."""

    salt: bytes
    check: bytes
    n: int = DEFAULT_SCRYPT_N
    r: int = DEFAULT_SCRYPT_R
    p: int = DEFAULT_SCRYPT_P

    def to_json(self) -> str:
        """The record as stored in ``meta``."""
        return json.dumps({
            "format": 1, "kdf": "scrypt", "n": self.n, "r": self.r, "p": self.p,
            "salt": _b64(self.salt), "aead": "AES-256-GCM", "check": _b64(self.check),
        })  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> SealRecord:
        """Read a stored record.

        Raises:
            StoreError: not a record this version understands.
        """
        try:
            d = json.loads(text)
            if d["format"] != 1 or d["kdf"] != "scrypt" or d["aead"] != "AES-256-GCM":
                raise ValueError(f"unsupported format {d['format']!r}/{d['kdf']!r}/{d['aead']!r}")
            record = cls(_unb64(d["salt"]), _unb64(d["check"]), int(d["n"]), int(d["r"]), int(d["p"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise StoreError(f"the datastore's seal record cannot be read: {exc}") from exc
        return record


class Sealer:
    """Seals and opens values with the key derived from one secret and one record."""

    def __init__(self, key: bytes, record: SealRecord) -> None:
        self._aead = AESGCM(key)
        self.record = record

    @classmethod
    def create(cls, secret: str, *, n: int = DEFAULT_SCRYPT_N) -> Sealer:
        """A sealer with a fresh salt (for a datastore not sealed yet, or a reseal).

        Args:
            secret: the ``private_key_encryption_secret``.
            n: the scrypt cost (a power of two).

        Returns:
            The sealer; its :attr:`record` goes into the datastore's ``meta``.
        """
        salt = os.urandom(_SALT_SIZE)
        key = _derive(secret, salt, n, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P)
        nonce = os.urandom(_NONCE_SIZE)
        check = nonce + AESGCM(key).encrypt(nonce, _CHECK_PLAINTEXT, _CHECK_AAD)
        return cls(key, SealRecord(salt, check, n, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P))

    @classmethod
    def open(cls, secret: str, record: SealRecord) -> Sealer:
        """The sealer of an already sealed datastore.

        Raises:
            SealedKeyError: the secret is not the one the datastore was sealed with.
        """
        key = _derive(secret, record.salt, record.n, record.r, record.p)
        try:
            AESGCM(key).decrypt(record.check[:_NONCE_SIZE], record.check[_NONCE_SIZE:], _CHECK_AAD)
        except InvalidTag:
            raise SealedKeyError(WRONG_SECRET) from None
        return cls(key, record)

    def seal(self, plaintext: str, *, kind: str, entity_id: str, field: str) -> str:
        """Encrypt one value for one row and field.

        Returns:
            ``tgw-sealed:1:`` + base64(nonce ‖ ciphertext ‖ tag).
        """
        nonce = os.urandom(_NONCE_SIZE)
        blob = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(kind, entity_id, field))
        return _PREFIX + _b64(nonce + blob)

    def unseal(self, token: str, *, kind: str, entity_id: str, field: str) -> str:
        """Decrypt a value sealed for this row and field.

        Raises:
            SealedKeyError: the blob was altered, or sealed for another row or field.
        """
        where = f"{kind} {entity_id}: {field}"
        try:
            raw = _unb64(token[len(_PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _aad(kind, entity_id, field))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error):
            raise SealedKeyError(
                f"{where}: the sealed value does not open (altered, or moved from another row or field)"
            ) from None


def seal_fields(sealer: Sealer | None, kind: str, entity_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Seal the kind's :data:`SEALED_FIELDS` of one row (a copy; plain when no sealer).

    Args:
        sealer: the datastore's sealer, or ``None`` when no secret is configured.
        kind: the row's kind.
        entity_id: the row's id.
        data: the row's fields, plain.

    Returns:
        The fields to store.
    """
    out = dict(data)
    if sealer is not None:
        for path in SEALED_FIELDS.get(kind, ()):
            value = _get(out, path)
            if isinstance(value, str) and not is_sealed(value):
                out = _set(out, path, sealer.seal(value, kind=kind, entity_id=entity_id, field=path))
    return out


def unseal_fields(sealer: Sealer | None, kind: str, entity_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Open the sealed fields of one stored row (a copy); plain values pass through.

    Raises:
        SealedKeyError: a value is sealed and there is no sealer, or it does not open.
    """
    out = dict(data)
    for path in SEALED_FIELDS.get(kind, ()):
        value = _get(out, path)
        if not is_sealed(value):
            continue
        if sealer is None:
            raise SealedKeyError(
                f"{kind} {entity_id}: {path} is sealed; set private_key_encryption_secret to open it"
            )
        out = _set(out, path, sealer.unseal(str(value), kind=kind, entity_id=entity_id, field=path))
    return out


def has_plain_fields(kind: str, data: Mapping[str, Any]) -> bool:
    """Whether a stored row still holds a field that should be sealed in clear."""
    return any(isinstance(v, str) and not is_sealed(v) for v in (_get(data, p) for p in SEALED_FIELDS.get(kind, ())))


def _get(data: Mapping[str, Any], path: str) -> object:
    value: object = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _set(data: Mapping[str, Any], path: str, value: str) -> dict[str, Any]:
    """A copy of ``data`` with ``path`` set (every mapping on the way copied, never mutated)."""
    head, _, rest = path.partition(".")
    out = dict(data)
    out[head] = _set(out[head], rest, value) if rest else value
    return out


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not secret:
        raise SealedKeyError("private_key_encryption_secret is empty")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.encode("utf-8"))


def _aad(kind: str, entity_id: str, field: str) -> bytes:
    return json.dumps(["trio-gw sealed value", 1, kind, entity_id, field]).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
