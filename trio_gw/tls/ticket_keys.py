"""Session-ticket keys shared by every worker and node: the key ring, its rotation, its formats.

Theory of operation
-------------------
A TLS session ticket is the server's session state encrypted under a key only
the server knows; a client that presents it later resumes without a full
handshake (``docs/tls-stack-notes.md`` §9: a resumed TLS 1.2 handshake costs the
server 60 µs against 195 µs).  OpenSSL generates random ticket keys per
``SSL_CTX``, so a ticket resumes only on the context that issued it: not on
another worker process, not on another node.  trio-gw gives all of them the
same **ring** of keys (installed by ``trio_gw.net.ticket_keys``):

* A key is nginx's: a 16-byte name (sent in clear at the head of the ticket
  to find the key), an HMAC-SHA256 key and an AES-CBC key — 32 + 32 bytes
  (AES-256, nginx's 80-byte files) or 16 + 16 (AES-128, 48-byte files).
* **One key encrypts, every key of the ring decrypts.**  A ticket under any
  key but the encrypting one still resumes, and the client is given a new
  ticket under the current key (OpenSSL's "renew").  An unknown name gives a
  full handshake, never an error.
* **Rotation is a schedule, computed the same on every node.**  Each key has
  ``not_before``, the moment it starts encrypting; the encrypting key is the
  newest whose moment has come.  A new key is added ``lead`` seconds *before*
  it starts encrypting, so every node and worker has it (notification or
  poll) before any ticket under it exists — with one key encrypting
  everywhere, a ticket from node A resumes on node B.  A key stops encrypting
  when its successor starts; it still decrypts for ``lifetime`` more seconds
  (the ticket lifetime, ``ssl_session_timeout``), then leaves the ring.
  :func:`maintain` is the one decision: any node may run it on its clock and
  write the result with compare-and-swap; losers reload the winner's ring.
* **Scope.**  Replacing a listener's context used to invalidate every
  outstanding ticket, which is how a changed client-certificate policy was
  enforced on resumption (``tls/session.py``).  Shared keys would undo that,
  so each listener context uses keys *derived* from the ring for its policy
  (:meth:`TicketKey.scoped`, HKDF-SHA256 over a stable digest of the
  listener policy): the same policy everywhere shares tickets; a changed
  policy gives new names, so old tickets make a full handshake.
* **Formats.**  :func:`encode_ring`/:func:`decode_ring` for the datastore (the
  store seals the bytes, ``store/ticket_keys.py``); :func:`parse_nginx_key`
  for nginx's ``ssl_session_ticket_key`` files (``database: off``; the first
  file encrypts, as in nginx).

Time is a parameter; randomness is a parameter (``random_bytes``), defaulting
to ``os.urandom``.  Key bytes never appear in ``repr`` or messages.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trio_gw.errors import ConfigError, Problem

__all__ = [
    "DEFAULT_LEAD",
    "DEFAULT_ROTATION_INTERVAL",
    "NAME_SIZE",
    "RotationPolicy",
    "TicketKey",
    "TicketKeyRing",
    "decode_ring",
    "encode_ring",
    "generate_key",
    "maintain",
    "next_maintenance",
    "nginx_key_bytes",
    "parse_nginx_key",
    "ring_from_nginx_files",
]

SECONDS: Final = 1
MINUTES: Final = 60 * SECONDS
HOURS: Final = 60 * MINUTES

#: A key encrypts for this long.  Caddy rotates its STEKs every 12 h; Go's
#: crypto/tls every 24 h.  Shorter bounds what one stolen key decrypts.
DEFAULT_ROTATION_INTERVAL: Final = 12 * HOURS
#: A new key is published this long before it encrypts: far above the time a
#: change takes to reach every worker of every node (a poll fallback of a few
#: seconds included), so no node encrypts under a key another lacks.
DEFAULT_LEAD: Final = 5 * MINUTES
#: Size of a key's name, the clear prefix of every ticket (RFC 5077 §4 ``key_name``).
NAME_SIZE: Final = 16
#: nginx's file sizes: name + HMAC + AES-256 keys, or name + AES-128 + HMAC keys.
NGINX_SIZES: Final = (80, 48)

_MAGIC: Final = b"TGW-STEK"
_FORMAT: Final = 1
_ENTRY: Final = struct.Struct(">qB")  # not_before (Unix seconds), secret size (32 or 16)


@dataclass(frozen=True, repr=False)
class TicketKey:
    """One ticket key: name, HMAC-SHA256 key, AES-CBC key, and when it starts encrypting.

    Attributes:
        name: 16 bytes, in clear at the head of each ticket.
        hmac_key: 32 bytes (16 for a 48-byte nginx file).
        aes_key: 32 bytes for AES-256-CBC (16: AES-128-CBC).
        not_before: Unix seconds from which it may encrypt (0: from files, always).
    """

    name: bytes
    hmac_key: bytes
    aes_key: bytes
    not_before: int = 0

    def __post_init__(self) -> None:
        if len(self.name) != NAME_SIZE:
            raise ValueError(f"a ticket key name is {NAME_SIZE} bytes, got {len(self.name)}")
        if len(self.aes_key) not in (16, 32) or len(self.hmac_key) != len(self.aes_key):
            raise ValueError("a ticket key has 16- or 32-byte AES and HMAC keys of the same size")

    @property
    def cipher(self) -> str:
        """OpenSSL's name of the ticket cipher (``AES-256-CBC`` or ``AES-128-CBC``)."""
        return "AES-256-CBC" if len(self.aes_key) == 32 else "AES-128-CBC"

    @property
    def name_hex(self) -> str:
        """The name in hex, safe to log (it travels in clear)."""
        return self.name.hex()

    def scoped(self, scope: bytes) -> TicketKey:
        """The key a listener of one policy uses (see the module's theory); ``b""`` is the key itself.

        Args:
            scope: a stable digest of the listener's policy (the same bytes on every node).

        Returns:
            A key with its own name and secrets, derived with HKDF-SHA256.
        """
        if not scope:
            return self
        size = len(self.aes_key)
        okm = HKDF(hashes.SHA256(), length=2 * size, salt=self.name, info=b"trio-gw ticket key\x00" + scope).derive(
            self.hmac_key + self.aes_key
        )
        name = hashlib.sha256(b"trio-gw ticket key name\x00" + self.name + b"\x00" + scope).digest()[:NAME_SIZE]
        return TicketKey(name, okm[:size], okm[size:], self.not_before)

    def __repr__(self) -> str:
        return f"TicketKey(name={self.name_hex}, {self.cipher}, not_before={self.not_before})"


@dataclass(frozen=True)
class TicketKeyRing:
    """Ticket keys in order: the first whose ``not_before`` has come encrypts; all decrypt.

    A maintained ring is sorted newest first (a pending key, then the
    encrypting one, then retired ones); a ring read from nginx files keeps the
    files' order.
    """

    keys: tuple[TicketKey, ...]
    _by_name: dict[bytes, TicketKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a ticket key ring needs at least one key")
        by_name = {k.name: k for k in self.keys}
        if len(by_name) != len(self.keys):
            raise ValueError("two ticket keys share a name")
        object.__setattr__(self, "_by_name", by_name)

    def encrypting(self, now: float) -> TicketKey:
        """The key that encrypts new tickets at ``now`` (the oldest-scheduled one if none has started)."""
        for key in self.keys:
            if key.not_before <= now:
                return key
        return min(self.keys, key=lambda k: k.not_before)

    def find(self, name: bytes) -> TicketKey | None:
        """The key of a ticket's name, or ``None`` (unknown: full handshake)."""
        return self._by_name.get(name)

    def scoped(self, scope: bytes) -> TicketKeyRing:
        """Every key :meth:`TicketKey.scoped` for one listener policy (order kept)."""
        return self if not scope else TicketKeyRing(tuple(k.scoped(scope) for k in self.keys))

    def describe(self, now: float) -> str:
        """Names and roles for logs and ``/status`` (no secrets)."""
        current = self.encrypting(now)
        roles = ["encrypts" if k is current else "pending" if k.not_before > now else "decrypts" for k in self.keys]
        return ", ".join(f"{k.name_hex[:8]} {role}" for k, role in zip(self.keys, roles, strict=True))


@dataclass(frozen=True)
class RotationPolicy:
    """When keys are added and dropped (all seconds).

    Attributes:
        interval: how long a key encrypts (:data:`DEFAULT_ROTATION_INTERVAL`).
        lifetime: how long a ticket is accepted after issue: ``ssl_session_timeout``
            (Kong: 1 d); a retired key decrypts this long after its last ticket.
        lead: how long before it encrypts a new key is published (:data:`DEFAULT_LEAD`).
    """

    interval: int = DEFAULT_ROTATION_INTERVAL
    lifetime: int = 24 * HOURS
    lead: int = DEFAULT_LEAD

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.lifetime <= 0 or self.lead < 0:
            raise ConfigError("ticket key rotation: interval and lifetime must be positive, lead not negative")
        if self.lead >= self.interval:
            raise ConfigError(f"ticket key rotation: lead ({self.lead} s) must be shorter than the interval "
                              f"({self.interval} s)")  # fmt: skip


RandomBytes = Callable[[int], bytes]


def generate_key(not_before: int, random_bytes: RandomBytes = os.urandom) -> TicketKey:
    """A new AES-256 ticket key starting to encrypt at ``not_before``.

    Args:
        not_before: Unix seconds.
        random_bytes: the source of 80 random bytes.

    Returns:
        The key.
    """
    raw = random_bytes(80)
    if len(raw) != 80:
        raise ValueError("random_bytes returned the wrong size")
    return TicketKey(raw[:16], raw[16:48], raw[48:80], int(not_before))


def maintain(
    ring: TicketKeyRing | None, now: float, policy: RotationPolicy, random_bytes: RandomBytes = os.urandom
) -> TicketKeyRing | None:
    """The ring as it should be at ``now``: a first key, the next key published ``lead`` early, old keys dropped.

    Args:
        ring: the stored ring, or ``None`` when there is none yet.
        now: Unix seconds.
        policy: the rotation schedule.
        random_bytes: the source of new keys.

    Returns:
        The new ring to store (compare-and-swap against ``ring``), or ``None``
        when ``ring`` is already right.
    """
    t = int(now)
    if ring is None:
        return TicketKeyRing((generate_key(t, random_bytes),))
    current = ring.encrypting(now)
    keys = list(ring.keys)
    pending = [k for k in keys if k.not_before > now]
    if not pending and now >= current.not_before + policy.interval - policy.lead:
        start = max(current.not_before + policy.interval, t + policy.lead)
        keys.append(generate_key(start, random_bytes))
    keys.sort(key=lambda k: k.not_before, reverse=True)
    kept = tuple(k for i, k in enumerate(keys) if i == 0 or not _expired(k, keys[i - 1], now, policy))
    return None if kept == ring.keys else TicketKeyRing(kept)


def _expired(key: TicketKey, successor: TicketKey, now: float, policy: RotationPolicy) -> bool:
    """A key retired when ``successor`` started encrypting; its last ticket expires ``lifetime`` later."""
    return successor.not_before <= now and now >= successor.not_before + policy.lifetime


def next_maintenance(ring: TicketKeyRing, now: float, policy: RotationPolicy) -> float:
    """When :func:`maintain` next changes the ring (for the caller's timer).

    Args:
        ring: the current (maintained) ring.
        now: Unix seconds.
        policy: the rotation schedule.

    Returns:
        Unix seconds, never before ``now``: the next key's publication, or the
        moment a retired key's last ticket expires, whichever comes first.
    """
    ordered = sorted(ring.keys, key=lambda k: k.not_before, reverse=True)
    moments = [ordered[0].not_before + policy.interval - policy.lead]
    moments += [newer.not_before + policy.lifetime for newer in ordered[:-1]]
    return max(now, min(moments))


# -- storage -------------------------------------------------------------------------------


def encode_ring(ring: TicketKeyRing) -> bytes:
    """The ring as bytes for the datastore (seal them: they are secrets).

    Format: ``TGW-STEK``, format byte, key count, then per key ``not_before``
    (int64 big-endian), secret size (32 or 16), name, HMAC key, AES key.
    """
    out = [_MAGIC, bytes([_FORMAT, len(ring.keys)])]
    for k in ring.keys:
        out += [_ENTRY.pack(k.not_before, len(k.aes_key)), k.name, k.hmac_key, k.aes_key]
    return b"".join(out)


def decode_ring(data: bytes) -> TicketKeyRing:
    """Read :func:`encode_ring`'s bytes back.

    Raises:
        ValueError: not a ring of this format (truncated, trailing bytes, bad sizes).
    """
    if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 2:
        raise ValueError("not a trio-gw ticket key ring")
    fmt, count = data[len(_MAGIC)], data[len(_MAGIC) + 1]
    if fmt != _FORMAT:
        raise ValueError(f"ticket key ring format {fmt} is not supported (written by a newer trio-gw?)")
    pos, keys = len(_MAGIC) + 2, []
    for _ in range(count):
        if len(data) < pos + _ENTRY.size:
            raise ValueError("the ticket key ring is truncated")
        not_before, size = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        end = pos + NAME_SIZE + 2 * size
        if size not in (16, 32) or len(data) < end:
            raise ValueError("the ticket key ring is truncated or has a bad key size")
        name, secrets = data[pos : pos + NAME_SIZE], data[pos + NAME_SIZE : end]
        keys.append(TicketKey(name, secrets[:size], secrets[size:], not_before))
        pos = end
    if pos != len(data):
        raise ValueError("the ticket key ring has trailing bytes")
    return TicketKeyRing(tuple(keys))


# -- nginx's files --------------------------------------------------------------------------


def parse_nginx_key(data: bytes, *, path: str) -> TicketKey:
    """One nginx ``ssl_session_ticket_key`` file (``openssl rand 80 > file``).

    nginx's layout (``ngx_ssl_session_ticket_keys``): 80 bytes are name (16),
    HMAC key (32), AES-256 key (32); 48 bytes are name (16), AES-128 key (16),
    HMAC key (16).

    Args:
        data: the file's bytes.
        path: the setting path for messages (``ssl_session_ticket_key[0]``).

    Returns:
        The key (``not_before`` 0: file keys are ordered by the setting, not by time).

    Raises:
        ConfigError: any other size (naming ``path``); the bytes are never shown.
    """
    if len(data) == 80:
        return TicketKey(data[:16], data[16:48], data[48:80])
    if len(data) == 48:
        return TicketKey(data[:16], data[32:48], data[16:32])
    raise ConfigError(f"expected 80 (or 48) bytes as nginx writes them (openssl rand 80), got {len(data)}", path=path)


def nginx_key_bytes(key: TicketKey) -> bytes:
    """A key as nginx's file of its size (the inverse of :func:`parse_nginx_key`)."""
    if len(key.aes_key) == 32:
        return key.name + key.hmac_key + key.aes_key
    return key.name + key.aes_key + key.hmac_key


def ring_from_nginx_files(files: Sequence[tuple[str, bytes]]) -> TicketKeyRing:
    """The ring of nginx's ``ssl_session_ticket_key`` list: the first file encrypts, all decrypt.

    Args:
        files: ``(setting path, bytes)`` per file, in the setting's order.

    Returns:
        The ring.

    Raises:
        ConfigError: every bad file, and two files holding the same key name.
    """
    problems: list[Problem] = []
    keys: list[TicketKey] = []
    for path, data in files:
        try:
            keys.append(parse_nginx_key(data, path=path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    if not keys:
        raise ConfigError("no ticket key files", path="ssl_session_ticket_key")
    names = [k.name for k in keys]
    for (path, _), name in zip(files, names, strict=True):
        if names.count(name) > 1:
            raise ConfigError("two files hold keys with the same name (copies of one file?)", path=path)
    return TicketKeyRing(tuple(keys))
