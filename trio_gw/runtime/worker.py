"""A worker process of a node: ``python -m trio_gw.runtime.worker <control fd>``, started by the supervisor.

The worker reads its hello from the control channel (``runtime/control.py``):
the supervisor's exact settings, its slot, the proxy sockets it inherited, the
https port and, for ``database: off``, the ticket key ring.  It then runs a
:class:`~trio_gw.runtime.gateway.Gateway` in the ``worker`` role: the proxy
listeners on those sockets, its own generation (built off its loop, swapped as
one reference), its own datastore connection and change feed, and no Admin API
or status listener.  The CA certificates of client chains it verifies go to the
other workers (:class:`SharedIntermediates`).  It reports its state to the supervisor when a generation
is installed and every :data:`~trio_gw.runtime.control.REPORT_INTERVAL`; it
handles SIGHUP and SIGTERM as a single-process node does; when its control
channel closes (the supervisor is gone) it drains and exits.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import trio

from trio_gw.errors import ConfigError
from trio_gw.runtime.control import REPORT_INTERVAL, Channel, ProcessRole
from trio_gw.runtime.logs import configure_logging
from trio_gw.settings import Settings
from trio_gw.tls.resumed_chain import IntermediateCache
from trio_gw.tls.ticket_keys import decode_ring

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

__all__ = ["main"]

log = logging.getLogger("trio_gw")


class _Reporter:
    """Sends this worker's state: at once after each install, else every REPORT_INTERVAL."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.wake = trio.Event()

    def installed(self, _generation: object) -> None:
        self.wake.set()

    async def run(self, gateway: Gateway) -> None:
        from trio_gw.runtime.node_status import own_state

        # The first state means "ready" to the supervisor, which then may write the node's ready file:
        # not before this worker handles SIGTERM (its process group gets it too).
        await gateway.serving.wait()
        self.wake.set()  # report at once
        while True:
            with trio.move_on_after(REPORT_INTERVAL):
                await self.wake.wait()
            self.wake = trio.Event()
            if not gateway.holder.ready:
                continue
            gateway.metrics.flush()  # this worker's request counts into the multiprocess files
            if gateway.metrics.before_scrape is not None:
                # this worker's connection gauges, which the supervisor's /metrics adds up (livesum)
                gateway.metrics.before_scrape(gateway.metrics)
            try:
                await self.channel.send({"type": "state", **own_state(gateway).as_message()})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the supervisor is gone; the control listener starts the drain


class SharedIntermediates(IntermediateCache):
    """Client-chain intermediates this worker verified, sent to the others; theirs, taken in.

    A session resumed from a ticket carries the client's leaf but not its chain;
    with tickets shared, the resumption may land on a worker that never saw the
    full handshake, and a route trusting only the root would refuse the client
    (``tls/resumed_chain.py``).  What is shared is only what a worker's listener
    verified; the plugins still verify every chain against their own anchors.
    """

    def __init__(self, outbox: trio.MemorySendChannel[list[bytes]]) -> None:
        super().__init__()
        self._outbox = outbox

    def remember(self, ca_certificates_der: Sequence[bytes]) -> None:
        fresh = [der for der in ca_certificates_der if not self.knows(der)]
        super().remember(ca_certificates_der)
        if fresh:
            try:
                self._outbox.send_nowait(fresh)
            except trio.WouldBlock:
                pass  # a burst of new CAs: the others learn them from their own full handshakes

    def learn(self, ca_certificates_der: Sequence[bytes]) -> None:
        """What another worker verified (not sent back)."""
        super().remember(ca_certificates_der)


async def _share_intermediates(outbox: trio.MemoryReceiveChannel[list[bytes]], channel: Channel) -> None:
    async for ders in outbox:
        try:
            await channel.send({"type": "intermediates", "der": [base64.b64encode(d).decode() for d in ders]})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _worker(fd: int) -> int:
    from trio_gw.runtime.gateway import Gateway

    channel = Channel.from_fd(fd)
    messages = channel.messages()
    hello = await messages.__anext__()
    if hello["type"] != "hello":
        raise RuntimeError(f"Unexpected first control message: {hello['type']!r}")
    settings: Settings = pickle.loads(base64.b64decode(hello["settings"]))  # from our own supervisor
    index = int(hello["index"])
    configure_logging(settings.log_level, process=f"worker {index}")
    reporter = _Reporter(channel)
    sockets = tuple(socket.socket(fileno=int(n)) for n in hello["proxy_fds"])
    outbox, shared = trio.open_memory_channel[list[bytes]](64)
    intermediates = SharedIntermediates(outbox)
    intermediates.learn([base64.b64decode(d) for d in hello.get("intermediates", [])])
    role = ProcessRole("worker", workers=int(hello["workers"]), index=index, proxy_sockets=sockets,
                       https_port=hello.get("https_port"), metrics_dir=hello.get("metrics_dir"),
                       on_install=reporter.installed, intermediates=intermediates, owns_process=True)
    gateway = Gateway(settings, role=role)
    if hello.get("ticket_ring"):
        gateway.tickets.adopt(decode_ring(base64.b64decode(hello["ticket_ring"])))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_follow_supervisor, messages, gateway, intermediates)
        nursery.start_soon(reporter.run, gateway)
        nursery.start_soon(_share_intermediates, shared, channel)
        await gateway.run()
        nursery.cancel_scope.cancel()
    return 0


async def _follow_supervisor(messages: AsyncIterator[dict[str, Any]], gateway: Gateway,
                             intermediates: SharedIntermediates) -> None:
    """Rings and other workers' intermediates from the supervisor; at the channel's end, drain and stop."""
    try:
        async for message in messages:
            if message["type"] == "ticket_ring":
                gateway.tickets.adopt(decode_ring(base64.b64decode(message["ring"])))
            elif message["type"] == "intermediates":
                intermediates.learn([base64.b64decode(d) for d in message["der"]])
            else:
                log.warning("unknown control message %r", message["type"])
    except ValueError as exc:
        log.error("malformed control message: %s", exc)
    log.warning("the supervisor is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    """Run one worker; its exit status (2: a configuration error, as ``trio-gw run``)."""
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m trio_gw.runtime.worker <control fd> (started by the supervisor)", file=sys.stderr)
        return 2
    try:
        return trio.run(_worker, int(argv[1]))
    except ConfigError as exc:
        print(f"trio-gw: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv))
