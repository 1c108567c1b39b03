"""The session-ticket keys of one process: where they come from, when they rotate, what is reported.

Theory of operation
-------------------
Every listener context with tickets on holds this process's
:class:`~trio_gw.net.ticket_keys.TicketKeys` (installed by the generation
builder, scoped by the listener's policy); :class:`TicketRing` keeps the ring
inside it current.  The source is decided by
:func:`trio_gw.tls.ticket_policy.select_ticket_source`:

* **datastore** — the ring is the ``meta`` row ``ticket_keys``, sealed like
  private keys.  :meth:`TicketRing.sync` reads it, lets the pure
  :func:`~trio_gw.tls.ticket_keys.maintain` say whether it is due (no ring yet,
  the next key to publish, a retired key to drop) and writes the result with
  compare-and-swap; a process that loses the race reads the winner's.  It runs
  before the first generation is built, on every reload, and at
  :func:`~trio_gw.tls.ticket_keys.next_maintenance` — the same moment on every
  process, since the schedule is in the ring.  Until the datastore answers
  (a node that started from its local cache), the process uses a ring of its
  own and says so; the stored ring replaces it on the first successful sync.
* **files** — nginx's ``ssl_session_ticket_key``, read at start and on every
  reload (rotate by replacing the files and sending SIGHUP).
* **supervisor** — ``database: off`` with several workers: the supervisor
  makes and rotates a ring and sends it to its workers (:meth:`adopt`).
* **openssl** / **none** — OpenSSL's own keys per context, or tickets off.

A datastore that fails never stops anything: the current ring stays (its keys
still decrypt what they encrypted), the error is reported in ``/status``, and
the next attempt follows the reload loop's backoff.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import trio

from trio_gw.net.ticket_keys import TicketKeys, ticket_keys_supported
from trio_gw.runtime.logs import NOTICE
from trio_gw.runtime.ticket_keys import read_ticket_key_files
from trio_gw.settings import Settings
from trio_gw.store import SealedKeyError, Store, StoreError
from trio_gw.store.sealing import is_sealed
from trio_gw.store.ticket_keys import META_KEY, open_ticket_keys, seal_ticket_keys
from trio_gw.tls.session import parse_session_policy
from trio_gw.tls.ticket_keys import RotationPolicy, TicketKeyRing, maintain, next_maintenance
from trio_gw.tls.ticket_policy import TicketSource, select_ticket_source, ticket_rotation_policy

__all__ = ["TicketRing"]

log = logging.getLogger("trio_gw.tls")

#: Compare-and-swap attempts in one sync before giving up until the next one (others keep winning).
MAX_SWAP_ATTEMPTS: Final = 5
#: While the datastore fails, the next sync is tried after this many seconds at most.
RETRY_CAP: Final = 30.0


class TicketRing:
    """This process's ticket keys and their upkeep (see the module's theory).

    Args:
        settings: the node settings.
        workers: the resolved number of worker processes of the node.
        clock: Unix seconds.
    """

    def __init__(self, settings: Settings, *, workers: int = 1, clock: Callable[[], float] = time.time) -> None:
        session = parse_session_policy(settings.ssl_session_tickets, settings.ssl_session_timeout)
        self.settings = settings
        self.clock = clock
        self.source = select_ticket_source(tickets=session.tickets, files=settings.ssl_session_ticket_key,
                                           database=settings.database, workers=workers)
        self.policy: RotationPolicy = ticket_rotation_policy(settings.ssl_session_ticket_rotation,
                                                             session.timeout_seconds)
        self.keys: TicketKeys | None = None
        #: Where the ring in use came from (``datastore``, ``files``, ``supervisor``, ``local`` ...).
        self.origin = self.source.value
        self.rotations = 0
        self.error: str | None = None
        self._stored: str | None = None  # the stored text the ring was read from (compare-and-swap)
        self._failures = 0
        if self.source in (TicketSource.DATASTORE, TicketSource.SUPERVISOR):
            ring = maintain(None, clock(), self.policy)
            assert ring is not None
            self.keys = TicketKeys(ring, clock=clock)
            self.origin = "local" if self.source is TicketSource.DATASTORE else "supervisor"

    @property
    def ring(self) -> TicketKeyRing | None:
        return self.keys.ring if self.keys is not None else None

    # -- sources -----------------------------------------------------------------------

    def read_files(self) -> None:
        """Read ``ssl_session_ticket_key`` (blocking; at start and on every reload).

        Raises:
            ConfigError: an unreadable or malformed file, named ``ssl_session_ticket_key[i]``.
        """
        if self.source is not TicketSource.FILES:
            return
        ring = read_ticket_key_files(self.settings.ssl_session_ticket_key)
        self._use(ring, "files")

    def sync(self, store: Store) -> bool:
        """Read the stored ring, rotate it when due (compare-and-swap), use it (blocking: a worker thread).

        Returns:
            Whether the ring in use changed.

        Raises:
            StoreError: the datastore failed or holds a ring this node cannot open
                (the current ring stays in use).
        """
        if self.source is not TicketSource.DATASTORE:
            return False
        for _attempt in range(MAX_SWAP_ATTEMPTS):
            stored = store.read_meta(META_KEY)
            try:
                ring = None if stored is None else open_ticket_keys(stored, store.sealer)
            except SealedKeyError as exc:
                raise StoreError(f"the session-ticket keys do not open: {exc}") from exc
            wanted = maintain(ring, self.clock(), self.policy)
            # a ring stored in clear before a secret was configured is sealed now
            reseal = stored is not None and store.sealer is not None and not is_sealed(stored)
            if ring is not None and wanted is None and not reseal:
                return self._use(ring, "datastore", stored)
            target = wanted if wanted is not None else ring
            assert target is not None  # maintain(None, ...) always makes a ring
            text = seal_ticket_keys(target, store.sealer)
            if store.swap_meta(META_KEY, stored, text):
                if ring is not None and wanted is not None:
                    log.log(NOTICE, "session-ticket keys rotated: %s", target.describe(self.clock()))
                return self._use(target, "datastore", text)
        raise StoreError("the session-ticket keys kept changing under this node; retrying later")

    def adopt(self, ring: TicketKeyRing) -> None:
        """Use the ring the supervisor sent (``database: off`` with workers)."""
        self._use(ring, "supervisor")

    def _use(self, ring: TicketKeyRing, origin: str, stored: str | None = None) -> bool:
        self._stored = stored
        self.error = None
        self._failures = 0
        if self.keys is None:
            self.keys = TicketKeys(ring, clock=self.clock)
            self.origin = origin
            return True
        changed = self.keys.ring != ring
        if changed and self.origin != "local":  # leaving the stand-in ring for the shared one is no rotation
            self.rotations += 1
        self.keys.swap(ring)
        self.origin = origin
        return changed

    # -- the schedule --------------------------------------------------------------------

    def next_due(self) -> float:
        """When the ring next needs upkeep (Unix seconds; ``inf``: never, for files and OpenSSL's keys)."""
        ring = self.ring
        if ring is None or self.source not in (TicketSource.DATASTORE, TicketSource.SUPERVISOR):
            return math.inf
        due = next_maintenance(ring, self.clock(), self.policy)
        if self._failures:
            due = min(due, self.clock() + min(RETRY_CAP, 2.0 ** min(self._failures, 8)))
        return due

    def rotate_local(self) -> bool:
        """The supervisor's ring (no datastore): rotate it when due; whether it changed."""
        ring = self.ring
        if self.source is not TicketSource.SUPERVISOR or ring is None:
            return False
        wanted = maintain(ring, self.clock(), self.policy)
        if wanted is None:
            return False
        log.log(NOTICE, "session-ticket keys rotated: %s", wanted.describe(self.clock()))
        return self._use(wanted, "supervisor")

    async def serve_schedule(self, store: Callable[[], Store | None],
                             published: Callable[[TicketKeyRing], None] | None = None) -> None:
        """Keep the ring on its schedule until cancelled (never raises on a datastore failure).

        Args:
            store: gives the process's datastore, or ``None`` while it is unreachable.
            published: called with the ring after it changed (the supervisor sends it to workers).
        """
        while True:
            await trio.sleep(max(0.0, self.next_due() - self.clock()) + 0.01)
            if self.source is TicketSource.SUPERVISOR:
                changed = self.rotate_local()
            else:
                changed = await self.try_sync(store())
            if changed and published is not None and self.ring is not None:
                published(self.ring)

    async def try_sync(self, store: Store | None) -> bool:
        """:meth:`sync` in a worker thread, with failures recorded instead of raised."""
        if store is None or self.source is not TicketSource.DATASTORE:
            return False
        try:
            return await trio.to_thread.run_sync(self.sync, store)
        except StoreError as exc:
            self._failures += 1
            if self.error is None:
                log.warning("session-ticket keys: %s (still using %s keys)", exc, self.origin)
            self.error = str(exc)
            return False

    # -- reporting -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``session_tickets`` part of ``/status`` (names and roles only, never key bytes)."""
        now = self.clock()
        out: dict[str, Any] = {"source": self.source.value, "shared": self.shared}
        ring = self.ring
        if ring is not None:
            due = self.next_due()
            out.update({
                "origin": self.origin, "keys": ring.describe(now), "encrypting": ring.encrypting(now).name_hex[:8],
                "rotations": self.rotations, "next_rotation_check": None if math.isinf(due) else round(due, 3),
            })  # fmt: skip
        if self.error is not None:
            out["error"] = self.error
        return out

    @property
    def shared(self) -> bool:
        """Whether tickets resume across processes: a shared ring and the OpenSSL shim."""
        return self.keys is not None and self.origin != "local" and ticket_keys_supported()

    def role_counts(self) -> dict[str, int]:
        """Keys of the ring by role (``encrypts``, ``decrypts``, ``pending``), for the metrics."""
        counts = {"encrypts": 0, "decrypts": 0, "pending": 0}
        ring = self.ring
        if ring is not None:
            for part in ring.describe(self.clock()).split(", "):
                counts[part.rsplit(" ", 1)[1]] += 1
        return counts

