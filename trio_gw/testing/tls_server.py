"""A plain stdlib ``ssl`` server in a thread, for tests of context-level TLS features.

OCSP stapling and the tls-alpn-01 answer live on ``ssl.SSLContext`` objects
and the SNI callback, not in the gateway's stream code, so they are tested on
the smallest real server: a listening socket on ``127.0.0.1`` port 0, each
connection wrapped with ``listener_ctx`` (whose ``sni_callback`` may swap
contexts), the handshake completed, ``reply`` sent, the connection closed::

    with TlsTestServer(ctx) as server:
        subprocess.run(["openssl", "s_client", "-connect", server.address, "-status"], ...)
    server.errors       # handshake failures seen, as strings

Connections are served one at a time; the thread stops on ``close()``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from types import TracebackType

__all__ = ["TlsTestServer"]


class TlsTestServer:
    """See the module docstring."""

    def __init__(self, listener_ctx: ssl.SSLContext, *, reply: bytes = b"ok\n", timeout: float = 10.0) -> None:
        self.ctx = listener_ctx
        self.reply = reply
        self.timeout = timeout
        self.errors: list[str] = []
        self.alpn: list[str | None] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tls-test-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._sock.getsockname()[1])

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``openssl s_client -connect`` wants it."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(self.timeout)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.alpn.append(tls.selected_alpn_protocol())
                tls.sendall(self.reply)
                tls.shutdown(socket.SHUT_RDWR)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def close(self) -> None:
        """Stop accepting and wait for the thread."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TlsTestServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
