"""A TLS handshake between two stdlib contexts over memory BIOs: no sockets, no threads.

For tests of what contexts do to a handshake (certificates sent, names checked)::

    client, server = memory_handshake(client_ctx, server_ctx, server_hostname="api.example")
    client._sslobj.get_unverified_chain()   # what the server sent

Each side's ``do_handshake`` runs in turn and its bytes are handed to the
other, until both are done. A verification failure on the client raises
``ssl.SSLCertVerificationError``; the server's own failure after it (the
client's alert) is left to the client's error.
"""

from __future__ import annotations

import ssl

__all__ = ["memory_handshake"]


def memory_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, *, server_hostname: str, rounds: int = 10
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run the handshake to its end: ``(client, server)``.

    Raises:
        ssl.SSLError: a side refused the handshake (the client's error first).
        AssertionError: it did not finish in ``rounds`` exchanges.
    """
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname=server_hostname)
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    server_error: ssl.SSLError | None = None
    for _ in range(rounds):
        for side, outgoing, peer_incoming in ((client, bios[1], bios[2]), (server, bios[3], bios[0])):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side is client:
                    raise
                server_error = exc  # the client reads the alert next, and raises its own error
            peer_incoming.write(outgoing.read())
        if client.version() is not None and server.version() is not None:
            return client, server
    if server_error is not None:
        raise server_error
    raise AssertionError("handshake did not finish")
