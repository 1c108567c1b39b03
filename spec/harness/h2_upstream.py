"""The ``h2`` upstream kind: an HTTP/2-over-TLS server (``trio_gw.testing.h2_server``) in a thread.

It answers every stream with a JSON description of the request and records it
like the echo upstream does (``http_version`` ``"2"`` or ``"1.1"``), so the
``upstream`` expectations apply unchanged.  ``alpn`` limits what it offers
(``["http/1.1"]``: an upstream that never picks h2).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import trio

from trio_gw.testing.h2_server import H2Request, H2TestServer

__all__ = ["H2Upstream"]


class H2Upstream:
    """Runs an :class:`H2TestServer` under its own trio loop (the harness's ``serve_forever`` contract)."""

    def __init__(self, name: str, ssl_context: ssl.SSLContext, observed: Any, alpn: list[str] | None = None) -> None:
        self.name = name
        self.ssl_context = ssl_context
        self.observed = observed
        self._server = H2TestServer(ssl_context, alpn=alpn or ["h2", "http/1.1"], on_request=self._add)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self.port = 0
        self._thread = threading.Thread(target=trio.run, args=(self._main,), name=f"spec-h2-{name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"h2 upstream {name} did not start")

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(self._server.serve)
                self._ready.set()

    def _add(self, request: H2Request) -> None:
        fields = request.fields
        target = urlsplit(fields.get(":path", ""))
        headers = {k: v for k, v in fields.items() if not k.startswith(":")}
        self.observed.add({
            "upstream": self.name, "method": fields.get(":method", ""), "path": target.path, "query": target.query,
            "http_version": "2" if request.protocol == "h2" else "1.1", "headers": headers,
            "header_list": [[k, v] for k, v in fields.items()], "body_length": len(request.body),
            "body_sha256": hashlib.sha256(request.body).hexdigest(), "tls": True, "tls_version": "", "cipher": "",
            "client_cert_subject": "", "connection": request.connection,
        })

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """Already serving (its thread started with it); kept for the harness's contract."""

    def shutdown(self) -> None:
        if self._token is not None and self._scope is not None:
            try:
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout=5)

    def server_close(self) -> None:
        """Nothing left open once the loop has stopped."""

    def close_all(self) -> None:
        """Nothing left open once the loop has stopped."""
