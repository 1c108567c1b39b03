"""Which session-ticket keys a node's listeners use, how they rotate, and each listener's scope.

Theory of operation
-------------------
``trio_gw.tls.ticket_keys`` is the ring and its schedule; this module decides,
from the settings, three things the runtime carries out:

* **The source** (:func:`select_ticket_source`).  Tickets must resume on every
  worker of a node and every node of a cluster, so every process has to encrypt
  under the same key at any moment:

  ==========================  ==========================================================
  ``ssl_session_ticket_key``  nginx's files: the first encrypts, all decrypt, on any
                              datastore (the operator shares and rotates the files)
  a datastore                 a ring stored there, sealed, rotated on a schedule by
                              whichever process comes first (compare-and-swap)
  ``database: off``, workers  a ring the supervisor makes and hands to its workers
  ``database: off``, 1 worker OpenSSL's own keys, as before: nothing to share
  tickets off                 none
  ==========================  ==========================================================

* **The schedule** (:func:`ticket_rotation_policy`): a key encrypts for
  ``ssl_session_ticket_rotation``; the next is published a fifth of that (at
  most :data:`~trio_gw.tls.ticket_keys.DEFAULT_LEAD`) before it takes over, so
  every process has it before any ticket under it exists; a retired key
  decrypts for ``ssl_session_timeout``.  The ring's length is bounded (its
  encoding counts keys in one byte), so an interval far below the session
  timeout is refused, naming the setting.

* **The scope** (:func:`listener_scope`): each listener context derives its
  keys from the ring for its policy (``TicketKey.scoped``), so a ticket never
  resumes past a changed client-certificate policy (docs/tls-stack.md §10).
  The scope must be the same bytes in every process of every node, so it is a
  SHA-256 over a canonical serialisation of the :class:`ListenerPolicyKey`:
  dataclass fields in declaration order (those that take part in equality),
  enums by name, sets sorted — never ``hash()``, which differs per process.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Final

from trio_gw.errors import ConfigError
from trio_gw.tls.session import ListenerPolicyKey
from trio_gw.tls.ticket_keys import DEFAULT_LEAD, RotationPolicy

__all__ = ["MAX_RING_KEYS", "TicketSource", "canonical_bytes", "listener_scope", "select_ticket_source",
           "ticket_rotation_policy"]

#: The most keys a ring may hold (``encode_ring`` writes the count in one byte).
MAX_RING_KEYS: Final = 255


class TicketSource(enum.Enum):
    """Where a process's session-ticket keys come from (see the module's table)."""

    FILES = "files"
    DATASTORE = "datastore"
    SUPERVISOR = "supervisor"
    OPENSSL = "openssl"
    NONE = "none"


def select_ticket_source(*, tickets: bool, files: Sequence[str], database: str, workers: int) -> TicketSource:
    """The source of the keys of a node's listeners.

    Args:
        tickets: ``ssl_session_tickets``.
        files: ``ssl_session_ticket_key``.
        database: ``off``, ``sqlite`` or ``postgres``.
        workers: the resolved number of worker processes.

    Returns:
        The source.
    """
    if not tickets:
        return TicketSource.NONE
    if files:
        return TicketSource.FILES
    if database != "off":
        return TicketSource.DATASTORE
    return TicketSource.SUPERVISOR if workers > 1 else TicketSource.OPENSSL


def ticket_rotation_policy(interval: float, session_timeout: int) -> RotationPolicy:
    """The rotation schedule of a stored ring.

    Args:
        interval: ``ssl_session_ticket_rotation`` (seconds).
        session_timeout: ``ssl_session_timeout`` (seconds): how long a retired key still decrypts.

    Returns:
        The policy.

    Raises:
        ConfigError: naming ``ssl_session_ticket_rotation`` when the ring would outgrow
            :data:`MAX_RING_KEYS` (an interval far shorter than the session timeout).
    """
    seconds = max(1, int(interval))
    keys = math.ceil(session_timeout / seconds) + 2  # the retired ones, the encrypting one, a pending one
    if keys > MAX_RING_KEYS:
        shortest = math.ceil(session_timeout / (MAX_RING_KEYS - 2))
        raise ConfigError(
            f"{seconds} s with ssl_session_timeout {session_timeout} s would keep {keys} keys "
            f"(at most {MAX_RING_KEYS}): rotate every {shortest} s or more, or shorten ssl_session_timeout",
            path="ssl_session_ticket_rotation",
        )
    return RotationPolicy(interval=seconds, lifetime=session_timeout, lead=min(DEFAULT_LEAD, seconds // 5))


def listener_scope(key: ListenerPolicyKey) -> bytes:
    """The scope of a listener context's ticket keys: the same bytes in every process for the same policy.

    Args:
        key: the listener's policy key (``ServerContexts.policy``).

    Returns:
        32 bytes (SHA-256 of :func:`canonical_bytes`).
    """
    return hashlib.sha256(b"trio-gw listener policy\x00" + canonical_bytes(key)).digest()


def canonical_bytes(value: object) -> bytes:
    """A serialisation of a policy value that does not depend on the process (see the module's theory).

    Raises:
        TypeError: a value of a type this serialisation does not know (never guessed).
    """
    return json.dumps(_canonical(value), separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _canonical(value: object) -> object:
    if isinstance(value, enum.Enum):
        return ["enum", type(value).__qualname__, value.name]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, _canonical(getattr(value, f.name))] for f in dataclasses.fields(value) if f.compare]
        return ["dataclass", type(value).__qualname__, fields]
    if isinstance(value, (tuple, list)):
        return ["seq", [_canonical(v) for v in value]]
    if isinstance(value, (frozenset, set)):
        items = [_canonical(v) for v in value]
        return ["set", sorted(items, key=lambda v: json.dumps(v, separators=(",", ":")))]
    if isinstance(value, dict):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return ["map", sorted(pairs, key=lambda p: json.dumps(p[0], separators=(",", ":")))]
    raise TypeError(f"no canonical form for {type(value).__qualname__}")
