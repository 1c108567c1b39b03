"""Sending on a connection whose next step is a receive.

Every call on a Trio stream is a checkpoint: a cancel point, and a schedule
point that lets other tasks run even when the call did not have to wait.  In
the proxy's relay every send to a client or an upstream is followed, on the
same task, by a receive (the upstream's answer, the client's next request, the
next part of a body), and that receive is a schedule point itself.  The
gateway's own streams (:class:`~trio_gw.net.tls_stream.TlsStream`,
:class:`~trio_gw.net.plain_stream.PlainStream`) can skip the send's own yield;
a send is still a cancel point, and a send that waits for the socket still
yields.  Any other stream (a CONNECT tunnel's, say) sends as usual.
"""

from __future__ import annotations

import trio

from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.tls_stream import TlsStream

__all__ = ["send_before_receive"]


async def send_before_receive(stream: trio.abc.Stream, data: bytes | bytearray | memoryview) -> None:
    """``stream.send_all(data)`` for a caller whose next call on this task is a receive."""
    if isinstance(stream, (TlsStream, PlainStream)):
        await stream.send_all(data, schedule=False)
    else:
        await stream.send_all(data)
