"""Challenge responders for ACME tests, answering from a :class:`~trio_gw.net.acme_challenges.ChallengeStore`.

They are what the gateway's listeners will do once wired (see the
integration checklist), in the smallest real form:

* :func:`serve_http01` -- a tiny trio + h11 HTTP server: ``GET
  /.well-known/acme-challenge/<token>`` gets the published key authorization
  (``text/plain``), anything else 404;
* :func:`tls_alpn01_listener` -- a stdlib server context whose SNI callback
  swaps in the challenge context for a validation handshake (ALPN
  ``acme-tls/1``, seen by the ClientHello probe) and otherwise leaves the
  name's ordinary certificate in place.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import h11
import trio

from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.acme_tls_alpn import install_alpn_probe

__all__ = ["serve_http01", "tls_alpn01_listener"]


async def serve_http01(store: ChallengeStore, listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
                       *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer http-01 validation requests on ``listeners`` until cancelled."""
    task_status.started()

    async def handler(stream: trio.SocketStream) -> None:
        await _one(store, stream)

    await trio.serve_listeners(handler, list(listeners))


async def _one(store: ChallengeStore, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        with trio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(16384)))
                    continue
                if isinstance(event, h11.Request):
                    body = store.http01_response(event.target.decode("ascii", "replace"))
                    status = 200 if body is not None else 404
                    body = body if body is not None else b"no such challenge\n"
                    headers = [("content-type", "text/plain"), ("content-length", str(len(body))),
                               ("connection", "close")]
                    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                    await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                return
    except (trio.TooSlowError, trio.BrokenResourceError, h11.RemoteProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


def tls_alpn01_listener(store: ChallengeStore, default_ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``default_ctx`` made into a listener that answers tls-alpn-01 from ``store`` (installs the ALPN probe).

    Raises:
        RuntimeError: the OpenSSL shim cannot be used here.
    """
    if not install_alpn_probe(default_ctx):
        raise RuntimeError("the ClientHello ALPN probe is unavailable on this Python/OpenSSL")

    def sni(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        challenge = store.select_context(sslobj, server_name)
        if challenge is not None:
            sslobj.context = challenge

    default_ctx.sni_callback = sni
    return default_ctx
