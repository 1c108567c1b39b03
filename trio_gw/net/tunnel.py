"""The bytes of an upgraded connection (WebSocket), relayed both ways after a 101.

Theory of operation
-------------------
Once the upstream answered ``101 Switching Protocols`` to a WebSocket
handshake and the gateway relayed it, neither connection carries HTTP any
more: the gateway copies what each side sends to the other, unchanged, as
nginx does for an upgraded connection (``ngx_http_upstream_upgrade``), and the
limits are nginx's, that is Kong's:

* nothing received from the upstream for the service's ``read_timeout`` ends
  the tunnel (``proxy_read_timeout``: a WebSocket server pings to stay open);
* a write that cannot finish in time ends it: ``write_timeout`` towards the
  upstream, ``send_timeout`` towards the client;
* the end of either side's stream, or an error on it, ends it: both
  connections are closed then, so neither side is left half-open.

The client's silence has no deadline of its own (nginx sets none on an
upgraded downstream either); its connection closes with the upstream's.

Bytes each side sent before the switch was seen (the client's first frames
behind its request, the upstream's behind its 101) go first.  No frame is
parsed: the gateway's part in a WebSocket is its handshake, which went through
routing, the plugins (client certificates, consumers) and the upstream's TLS
like any request.
"""

from __future__ import annotations

import ssl

import trio

from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.net.deadlines import move_deadline

__all__ = ["relay_tunnel"]

#: What ends a copy: the stream ended or failed under it.
_ENDS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


class _Copy:
    """One direction of the tunnel, and why it stopped."""

    __slots__ = ("source", "target", "early", "read_timeout", "write_timeout", "read_reason", "write_reason",
                 "bytes", "reason")

    def __init__(
        self, source: trio.abc.Stream, target: trio.abc.Stream, early: bytes, *, read_timeout: float,
        write_timeout: float, read_reason: str, write_reason: str,
    ) -> None:
        self.source = source
        self.target = target
        self.early = early
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.read_reason = read_reason
        self.write_reason = write_reason
        self.bytes = 0
        self.reason: str | None = None

    async def run(self, done: trio.CancelScope) -> None:
        """Copy until the source ends, a deadline passes or either stream fails; then end the tunnel."""
        # One cancel scope whose deadline moves with what is awaited, as in the HTTP relay: a scope
        # per read and per write would cost more than the copy of a small frame.
        reason = self.write_reason
        try:
            with trio.CancelScope() as scope:
                data: bytes | bytearray = self.early
                while True:
                    if data:
                        reason = self.write_reason
                        move_deadline(scope, self.write_timeout)
                        await self.target.send_all(data)
                        self.bytes += len(data)
                    reason = self.read_reason
                    move_deadline(scope, self.read_timeout)
                    data = await self.source.receive_some(TLS_RECEIVE_SIZE)
                    if not data:
                        return
            if scope.cancelled_caught:
                self.reason = reason
        except _ENDS:
            return
        finally:
            done.cancel()


async def relay_tunnel(
    client: trio.abc.Stream, client_early: bytes, upstream: trio.abc.Stream, upstream_early: bytes, *,
    read_timeout: float, write_timeout: float, send_timeout: float,
) -> tuple[int, int, str | None]:
    """Relay both ways until one side ends; the caller closes both streams after.

    Args:
        client: the client's connection, switched.
        client_early: what the client sent after its request, before the switch.
        upstream: the upstream's connection, switched.
        upstream_early: what the upstream sent after its 101.
        read_timeout: how long the upstream may stay silent.
        write_timeout: how long a write to the upstream may take.
        send_timeout: how long a write to the client may take.

    Returns:
        ``(bytes_up, bytes_down, reason)``: the bytes relayed to the upstream
        and to the client, and the deadline that ended the tunnel
        (``upstream_read_timeout``, ``upstream_write_timeout``,
        ``client_send_timeout``), ``None`` when a side closed.
    """
    up = _Copy(client, upstream, client_early, read_timeout=float("inf"), write_timeout=write_timeout,
               read_reason="", write_reason="upstream_write_timeout")
    down = _Copy(upstream, client, upstream_early, read_timeout=read_timeout, write_timeout=send_timeout,
                 read_reason="upstream_read_timeout", write_reason="client_send_timeout")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run, nursery.cancel_scope)
        nursery.start_soon(down.run, nursery.cancel_scope)
    return up.bytes, down.bytes, down.reason or up.reason
