"""The supervisor of a node with worker processes (``workers`` above 1).

Theory of operation
-------------------
One supervisor, N workers, one Trio loop each.  The supervisor:

* **binds the proxy listeners** before any worker starts, so a port 0 is
  chosen once and every worker serves the same port.  A listener without
  flags is one socket inherited by every worker (they all accept on it); with
  the ``reuseport`` flag each worker slot gets a socket of its own
  (``SO_REUSEPORT``: the kernel spreads new connections over them by a hash).
  The supervisor keeps its copy of every socket, so a restarted worker
  inherits the very socket its slot had: connections queued on it while the
  worker was away are served, not reset.  ``tools/measure_accept_spread.py``
  measured how each spreads load on this machine (docs/architecture.md);
* **starts each worker** once its own gateway has loaded the configuration
  (so a bad setting stops the node before any worker starts, and files made
  under ``prefix`` exist) — ``python -m trio_gw.runtime.worker``, with its
  sockets and one end of a control socket pair (``runtime/control.py``); the
  first message is the hello (the settings, exactly the supervisor's); each
  worker builds and swaps its own generations from then on;
* **restarts a worker that exits** without being asked to, in the same slot,
  after the delay :func:`trio_gw.model.workers.after_exit` says (at once, then
  backing off while it keeps dying); the other workers serve meanwhile;
* **serves the Admin API and the status listener once for the node** with a
  gateway of its own (:class:`~trio_gw.runtime.control.ProcessRole`
  ``supervisor``): an Admin write is committed to the datastore and reaches
  every worker through the change feed, like a write of another node;
  ``/status`` lists the workers from their reports, ``/metrics`` adds up their
  counts (prometheus-client's multiprocess files under
  ``<prefix>/metrics``);
* **passes SIGHUP and SIGTERM on** to every worker (each reloads, or drains
  and stops, as a single-process node does) and, on SIGTERM, waits for them
  before it exits itself; the ready file is written once every worker serves;
* **relays the workers' output** line by line: each worker writes to pipes of
  its own, the supervisor writes whole lines only, so no access-log or error
  line of one worker is ever cut by another's.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from base64 import b64encode
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import trio

from trio_gw.errors import ConfigError
from trio_gw.model.workers import RestartPolicy, SlotState, WorkerState, after_exit, workers_summary
from trio_gw.runtime.control import Channel, ProcessRole, SupervisorView
from trio_gw.runtime.logs import NOTICE
from trio_gw.settings import Settings
from trio_gw.tls.ticket_keys import TicketKeyRing, encode_ring
from trio_gw.tls.ticket_policy import TicketSource

__all__ = ["METRICS_DIRECTORY", "Supervisor", "bind_proxy_sockets", "prepare_metrics_directory", "run_supervisor"]

log = logging.getLogger("trio_gw")

#: The multiprocess metrics directory under ``prefix``.
METRICS_DIRECTORY: Final = "metrics"
#: A worker that exits this many times in a row before it ever served stops the node's start-up.
START_ATTEMPTS: Final = 3
#: Seconds a stopping worker gets beyond ``graceful_shutdown_timeout`` before it is killed.
STOP_MARGIN: Final = 5.0
#: Client-chain CA certificates the supervisor keeps for workers started later.
KEPT_INTERMEDIATES: Final = 1024
def bind_proxy_sockets(settings: Settings, workers: int) -> list[list[socket.socket]]:
    """Bind every proxy listener: one socket shared by the workers, or one per worker with ``reuseport``.

    Raises:
        ConfigError: an address cannot be bound (naming ``proxy_listen``).
    """
    groups: list[list[socket.socket]] = []
    try:
        for addr in settings.proxy_listen:
            first = _bound(addr.host, addr.port, reuseport=addr.reuseport, backlog=addr.backlog)
            group = [first]
            if addr.reuseport:
                port = first.getsockname()[1]
                group += [_bound(addr.host, port, reuseport=True, backlog=addr.backlog) for _ in range(workers - 1)]
            groups.append(group)
    except OSError as exc:
        for group in groups:
            for sock in group:
                sock.close()
        raise ConfigError(f"cannot listen: {exc.strerror}", path="proxy_listen") from exc
    return groups


def _bound(host: str, port: int, *, reuseport: bool, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_metrics_directory(prefix: str) -> str:
    """An empty ``<prefix>/metrics`` for prometheus-client's multiprocess files (an earlier run's are removed)."""
    directory = Path(prefix) / METRICS_DIRECTORY
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    return str(directory)


class Supervisor(SupervisorView):
    """The worker processes of one node (see the module's theory).

    Args:
        settings: the node settings.
        workers: how many worker processes.
        sockets: :func:`bind_proxy_sockets`' result.
        metrics_dir: the multiprocess metrics directory.
        policy: restart delays.
    """

    def __init__(self, settings: Settings, workers: int, sockets: list[list[socket.socket]], *,
                 metrics_dir: str | None, policy: RestartPolicy = RestartPolicy()) -> None:
        self.settings = settings
        self.count = workers
        self.sockets = sockets
        self.metrics_dir = metrics_dir
        self.policy = policy
        self.slots = [SlotState(i) for i in range(workers)]
        self.reports: dict[int, WorkerState] = {}
        self.channels: dict[int, Channel] = {}
        self.ring: TicketKeyRing | None = None
        #: CA certificates of client chains the workers verified (base64 DER), for workers started later.
        self.intermediates: list[str] = []
        self.stopping = False
        self._go = trio.Event()
        self._stopping = trio.Event()
        self._ready = trio.Event()
        self._start_failure: str | None = None
        self._nursery: trio.Nursery | None = None
        self._slots_done = trio.Event()
        self._running_slots = 0

    # -- SupervisorView -------------------------------------------------------------------

    def workers_status(self) -> dict[str, Any]:
        return workers_summary(self.slots, self.reports, time.time())

    def proxy_listeners(self) -> list[dict[str, Any]]:
        out = []
        for addr, group in zip(self.settings.proxy_listen, self.sockets, strict=True):
            host, port = group[0].getsockname()[:2]
            out.append({"host": host, "port": port, "ssl": addr.ssl, "sockets": len(group)})
        return out

    @property
    def https_port(self) -> int | None:
        ports = [g[0].getsockname()[1] for a, g in zip(self.settings.proxy_listen, self.sockets, strict=True) if a.ssl]
        return ports[0] if ports else None

    def forward_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
            self._stopping.set()
            self._close_sockets()  # new clients are refused at once, as by a single node's drain
        for slot in self.slots:
            if slot.pid is not None:
                try:
                    os.kill(slot.pid, signum)
                except ProcessLookupError:
                    pass  # it exited meanwhile: its slot task sees that

    async def wait_workers_ready(self) -> None:
        """Start the workers (the supervisor's own gateway has loaded: the settings, the datastore and the
        configuration are good, and files under prefix such as the development PKI exist), then wait for them."""
        self._go.set()
        await self._ready.wait()
        if self._start_failure is not None:
            raise ConfigError(f"worker processes could not start ({self._start_failure}); their errors are above",
                              path="workers")

    def publish_ring(self, ring: TicketKeyRing) -> None:
        self.ring = ring
        if self._nursery is None:
            return
        message = {"type": "ticket_ring", "ring": b64encode(encode_ring(ring)).decode()}
        for channel in list(self.channels.values()):
            self._nursery.start_soon(_send_quietly, channel, message)

    # -- running the workers ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep every slot's worker running until :meth:`stop` (or cancellation, which kills them)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._running_slots = self.count
            task_status.started()
            await self._go.wait()
            for index in range(self.count):
                nursery.start_soon(self._keep_slot, index)

    async def stop(self) -> None:
        """Stop every worker: SIGTERM (each drains), then SIGKILL after ``graceful_shutdown_timeout`` + a margin."""
        if not self.stopping:
            self.forward_signal(signal.SIGTERM)
        if not self._go.is_set():
            return  # no worker was started
        with trio.move_on_after(self.settings.graceful_shutdown_timeout + STOP_MARGIN):
            await self._slots_done.wait()
        for slot in self.slots:
            if slot.pid is not None:
                log.error("worker %d (pid %d) did not stop in time: killed", slot.index, slot.pid)
                _kill(slot.pid)
        await self._slots_done.wait()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for group in self.sockets:
            for sock in group:
                sock.close()

    async def _keep_slot(self, index: int) -> None:
        try:
            while not self.stopping:
                returncode = await self._run_worker(index)
                if self.stopping:
                    break
                slot, delay = after_exit(self.slots[index], returncode, time.time(), self.policy)
                self.slots[index] = slot
                self.reports.pop(index, None)
                if not self._ready.is_set() and slot.crashes_in_a_row >= START_ATTEMPTS:
                    self._start_failure = f"worker {index}: {slot.last_exit}"
                    self._ready.set()
                    return
                log.error("worker %d exited (%s); restarting it%s", index, slot.last_exit,
                          f" in {delay:.1f} s" if delay else "")
                with trio.move_on_after(delay):
                    await self._stopping.wait()  # a node stopping does not wait out a backoff
        finally:
            self._running_slots -= 1
            if self._running_slots == 0:
                self._slots_done.set()

    async def _run_worker(self, index: int) -> int:
        """Start the worker of one slot and wait for it to exit; its return code."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        inherited = [group[index] if len(group) > 1 else group[0] for group in self.sockets]
        fds = [theirs.fileno(), *[s.fileno() for s in inherited]]
        env = dict(os.environ)
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trio_gw.runtime.worker", str(theirs.fileno())],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            )
        finally:
            theirs.close()
        self.slots[index] = self.slots[index].started(process.pid, time.time())
        channel = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        self.channels[index] = channel
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(_relay, process.stdout, sys.stdout.fileno())
                nursery.start_soon(_relay, process.stderr, sys.stderr.fileno())
                nursery.start_soon(self._listen, index, channel)
                await channel.send(self._hello(index, [s.fileno() for s in inherited]))
                await process.wait()
        except BaseException:
            _kill(process.pid)  # cancelled (the node is failing): no worker outlives its supervisor
            with trio.CancelScope(shield=True):
                await process.wait()
            raise
        finally:
            self.channels.pop(index, None)
            with trio.CancelScope(shield=True):
                await channel.aclose()
            if self.metrics_dir is not None:
                _mark_dead(process.pid, self.metrics_dir)
            self.slots[index] = replace(self.slots[index], pid=None)
        return process.returncode if process.returncode is not None else -signal.SIGKILL

    def _hello(self, index: int, fds: list[int]) -> dict[str, Any]:
        return {
            "type": "hello", "index": index, "workers": self.count, "proxy_fds": fds,
            "https_port": self.https_port, "metrics_dir": self.metrics_dir,
            "settings": b64encode(pickle.dumps(self.settings)).decode(),
            "ticket_ring": None if self.ring is None else b64encode(encode_ring(self.ring)).decode(),
            "intermediates": self.intermediates,
        }  # fmt: skip

    async def _listen(self, index: int, channel: Channel) -> None:
        """The worker's reports, until its end of the channel closes."""
        try:
            async for message in channel.messages():
                if message["type"] == "intermediates":
                    self._share_intermediates(index, [str(d) for d in message["der"]])
                    continue
                if message["type"] != "state":
                    log.warning("worker %d sent an unknown control message %r", index, message["type"])
                    continue
                report = WorkerState.from_message(message)
                first = index not in self.reports
                self.reports[index] = report
                if first:
                    log.info("worker %d (pid %d) serves generation %s", index, report.pid, report.generation)
                    self._check_all_ready()
        except ValueError as exc:
            log.error("worker %d: malformed control message: %s", index, exc)

    def _share_intermediates(self, sender: int, ders: list[str]) -> None:
        """A worker verified a client chain with CA certificates new to it: every other worker gets them,
        and so does every worker started later (in its hello; the most recent :data:`KEPT_INTERMEDIATES`)."""
        self.intermediates = [*[d for d in self.intermediates if d not in ders], *ders][-KEPT_INTERMEDIATES:]
        if self._nursery is None:
            return
        for index, channel in list(self.channels.items()):
            if index != sender:
                self._nursery.start_soon(_send_quietly, channel, {"type": "intermediates", "der": ders})

    def _check_all_ready(self) -> None:
        if not self._ready.is_set() and all(s.pid is not None and s.index in self.reports for s in self.slots):
            log.log(NOTICE, "%d workers serving", self.count)
            self._ready.set()


async def _send_quietly(channel: Channel, message: dict[str, Any]) -> None:
    try:
        await channel.send(message)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the worker exited: its replacement gets the ring in its hello


async def _relay(stream: trio.abc.ReceiveStream, fd: int) -> None:
    """Copy a worker's output to ``fd`` in whole lines (a last line without newline gets one)."""
    pending = b""
    async for chunk in stream:
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            _write_all(fd, data[:cut])
        pending = data[cut:]
    if pending:
        _write_all(fd, pending + b"\n")


def _write_all(fd: int, data: bytes) -> None:
    """One ``write`` per batch of whole lines (a short write continues where it stopped)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)  # our stdout is non-blocking (shared with a terminal): wait for room
            continue
        view = view[written:]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _mark_dead(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (its counts stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _first_leaf(group: BaseExceptionGroup[ConfigError]) -> ConfigError:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def run_supervisor(settings: Settings, workers: int, metrics_dir: str) -> None:
    """Run a node as a supervisor and ``workers`` worker processes until SIGTERM (see the module).

    Raises:
        ConfigError: the settings, the datastore or the configuration cannot be used, or
            the workers could not start.
    """
    from trio_gw.runtime.gateway import Gateway

    sockets = await trio.to_thread.run_sync(bind_proxy_sockets, settings, workers)
    supervisor = Supervisor(settings, workers, sockets, metrics_dir=metrics_dir)
    role = ProcessRole("supervisor", workers=workers, https_port=supervisor.https_port, supervisor=supervisor,
                       metrics_dir=metrics_dir, owns_process=True)
    gateway = Gateway(settings, role=role)
    supervisor.ring = gateway.tickets.ring if gateway.tickets.source is TicketSource.SUPERVISOR else None
    log.log(NOTICE, "starting %d worker processes", workers)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await gateway.run()
            with trio.CancelScope(shield=True):
                await supervisor.stop()
    except BaseExceptionGroup as group:
        refused = group.subgroup(ConfigError)
        if refused is not None and refused.exceptions:  # start-up refused: one message, as without workers
            raise _first_leaf(refused) from None
        raise
    finally:
        supervisor._close_sockets()
    log.log(NOTICE, "every worker stopped")
