"""Upstream kinds for egress scenarios: a forward proxy and a renegotiating TLS server.

Theory of operation: a ``connect_proxy`` upstream is a threaded forward proxy
on 127.0.0.1:0.  It reads one request head per connection, records it (method,
target as ``path``, headers — ``proxy-authorization`` included) in the same
``Observed`` shape as the echo, answers 407 when ``auth`` is set and the
``Proxy-Authorization: Basic`` credentials differ, then either opens a
``CONNECT`` tunnel or forwards an absolute-form request verbatim to its origin,
and pipes bytes both ways until either side closes.

A ``renegotiate`` upstream is ``openssl s_server -tls1_2`` serving the scenario's
leaf; a reader thread watches its output and, once a request line has arrived,
types ``r`` on its stdin so the server sends a HelloRequest
(docs/tls-stack.md §5).  It records each request line it saw.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
from typing import Any

from cryptography import x509

from spec.harness.pki import Material

CONNECTION_TIMEOUT = 10.0


class ConnectProxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A CONNECT / absolute-form forward proxy; ``Observed`` is set by the caller.

    With ``ssl_context`` it is an ``https://`` proxy: the connection *to the proxy*
    is TLS (handshake in the connection's thread), and each record says
    ``tls`` and the client certificate the gateway presented to the proxy (if
    the context asked for one).
    """

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, auth: str | None, observed: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.ssl_context = ssl_context
        self.expected = b"Basic " + base64.b64encode(auth.encode()) if auth else None
        self.observed = observed
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.append(sock)

    def close_all(self) -> None:
        with self._lock:
            socks, self._open = self._open, []
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass  # already closed


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(CONNECTION_TIMEOUT)
        self.server.track(client)
        if self.server.ssl_context is not None:
            try:
                client = self.server.ssl_context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the gateway refused the proxy's certificate (or went away): nothing is recorded
            self.server.track(client)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = client.recv(65536)
            if not piece:
                return
            data += piece
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        with self.server.observed.lock:
            self.server.observed.connections += 1
        self.server.observed.add({
            "upstream": "proxy", "method": method, "path": target, "query": "", "http_version": "1.1",
            "headers": headers, "body_length": 0, "body_sha256": "", "tls": isinstance(client, ssl.SSLSocket),
            "client_cert_subject": _peer_subject(client),
        })  # fmt: skip
        if self.server.expected is not None and headers.get("proxy-authorization", "").encode() != self.server.expected:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            return
        authority = target if method == "CONNECT" else target.split("/", 3)[2]
        host, _, port = authority.rpartition(":")
        try:
            origin = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECTION_TIMEOUT)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return
        self.server.track(origin)
        if method == "CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            origin.sendall(head + b"\r\n\r\n" + rest)
        if isinstance(client, ssl.SSLSocket):
            _pump(client, origin)  # one thread: an SSL object must not be read and written concurrently
            return
        pump = threading.Thread(target=_pipe, args=(origin, client), daemon=True)
        pump.start()
        _pipe(client, origin)
        pump.join(timeout=CONNECTION_TIMEOUT)


def _peer_subject(sock: socket.socket) -> str:
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else ""


def _pump(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy bytes both ways between a TLS client and a plain origin, in this thread, until either closes."""
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([tls, plain], [], [], CONNECTION_TIMEOUT)[0]
            if not ready:
                return  # idle
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (plain if sock is tls else tls).sendall(data)
    except (OSError, ValueError):
        pass  # either side closed, reset or timed out
    finally:
        for sock in (tls, plain):
            try:
                sock.close()
            except OSError:
                pass  # already gone


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass  # either side closed or timed out
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already gone


class RenegotiatingServer:
    """``openssl s_server -tls1_2`` that asks for a renegotiation after each request line."""

    ssl_context = True  # TLS: the placeholders say https

    def __init__(self, leaf: Material, directory: str, observed: Any) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".pem", dir=directory, delete=False) as f:
            f.write(leaf.chain_pem + leaf.key_pem)
        self.observed = observed
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-tls1_2", "-accept", "127.0.0.1:0", "-cert", f.name, "-key", f.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        line = b""
        while b"ACCEPT" not in line:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("openssl s_server did not start")
        self.port = int(line.strip().rsplit(b":", 1)[1])

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """Watch the output; type ``r`` after each request line (runs in the upstream's thread)."""
        assert self.proc.stdout is not None and self.proc.stdin is not None
        for line in self.proc.stdout:
            parts = line.decode("latin-1").split()
            if len(parts) == 3 and parts[2].startswith("HTTP/"):
                self.observed.add({"upstream": "renegotiate", "method": parts[0], "path": parts[1], "query": "",
                                   "headers": {}, "tls": True, "client_cert_subject": ""})
                try:
                    self.proc.stdin.write(b"r\n")
                    self.proc.stdin.flush()
                except OSError:
                    return  # the server is gone

    def shutdown(self) -> None:
        self.proc.kill()

    def server_close(self) -> None:
        self.proc.wait(timeout=5)

    def close_all(self) -> None:
        """Nothing: killing s_server closed its connections."""
