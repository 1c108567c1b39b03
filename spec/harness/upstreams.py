"""Upstream servers a scenario's services point at, run in threads on 127.0.0.1:0.

Theory of operation: an ``echo`` upstream is a ``ThreadingHTTPServer`` (HTTP/1.1,
keep-alive) that reads every request body in 64 KiB pieces — ``Content-Length``
or chunked — hashing it as it goes, and records what it saw: method, path,
query, HTTP version, headers in order, body length and SHA-256, whether the
connection was TLS and the client certificate's subject.  It answers with that
record as JSON, so a scenario can check it from the client side too, and keeps
it for ``expect.upstream`` checks.  The query string steers the answer (it
survives ``strip_path``, unlike the path):

* ``?status=N`` — answer with status N;
* ``?echo=1`` — stream the request body back instead of the JSON record
  (the record is still kept);
* ``?bytes=N`` — answer with N bytes of deterministic data (``repeat_bytes``);
* ``?delay_ms=N`` — wait N ms before answering (on top of ``delay_ms`` of the upstream);
* ``?close=1`` — read the request, then close the connection without answering;
* ``?cut=M`` (with ``bytes=N``) — announce N bytes, send the first M, then close the connection.

A WebSocket handshake (``Upgrade: websocket`` with a key) is recorded like any
request, accepted with a 101, and every text or binary frame is echoed back
(frames by ``wsproto``'s frame protocol) until a close frame, answered, or EOF.

TLS handshakes happen in the connection's thread, never in the accept loop, so
a stalled client cannot block others.  A ``closed`` upstream holds a bound but
not listening socket: connecting to it is refused, and no one else can take
the port while the scenario runs.  Every socket has a timeout; :meth:`stop`
closes the listener and every open connection, so nothing outlives a scenario.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from wsproto.frame_protocol import FrameProtocol, Opcode
from wsproto.utilities import generate_accept_token

from spec.harness import acme, egress, h2_upstream
from spec.harness.pki import Material
from spec.harness.placeholders import Context

CHUNK = 64 * 1024
#: Seconds an upstream connection may sit idle before the handler gives up.
CONNECTION_TIMEOUT = 10.0
#: The largest delay a request may ask for, so a typo cannot stall a run.
MAX_DELAY_MS = 30_000
_PATTERN = bytes(range(256)) * 256  # 64 KiB


def repeat_bytes(n: int) -> bytes:
    """The ``?bytes=N`` body: the 256 byte values in order, repeated, cut at N."""
    whole, rest = divmod(n, len(_PATTERN))
    return _PATTERN * whole + _PATTERN[:rest]


@dataclass
class Observed:
    """Everything an upstream recorded, shared with its handler threads."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: dict[str, Any]) -> None:
        """Record one request."""
        with self.lock:
            self.requests.append(record)

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the requests recorded so far."""
        with self.lock:
            return list(self.requests)


class _BodyError(Exception):
    """The request body is malformed (bad chunk size, early EOF)."""


def _read_chunked(rfile: io.BufferedIOBase, sink: Any) -> int:
    total = 0
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise _BodyError("chunk size line too long or EOF")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BodyError(f"bad chunk size {line!r}") from exc
        if size == 0:
            while rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return total
        total += _read_exact(rfile, size, sink)
        if rfile.readline(8) not in (b"\r\n", b"\n"):
            raise _BodyError("missing CRLF after chunk")


def _read_exact(rfile: io.BufferedIOBase, size: int, sink: Any) -> int:
    left = size
    while left:
        piece = rfile.read(min(CHUNK, left))
        if not piece:
            raise _BodyError(f"EOF with {left} body bytes missing")
        sink(piece)
        left -= len(piece)
    return size


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Reads, records and answers one request at a time (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server: _EchoServer
    timeout = CONNECTION_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the run's output clean; the record is the log."""

    def _handle(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as keep:
            self._answer(query, keep)

    def _answer(self, query: dict[str, list[str]], keep: Any) -> None:
        digest = hashlib.sha256()

        def sink(piece: bytes) -> None:
            digest.update(piece)
            if "echo" in query:
                keep.write(piece)

        try:
            length = self._read_body(sink)
        except (_BodyError, ValueError) as exc:
            self.send_error(400, f"bad body: {exc}")
            self.close_connection = True
            return
        record = self._record(length, digest.hexdigest())
        self.server.observed.add(record)
        if self.headers.get("Upgrade", "").lower() == "websocket" and "Sec-WebSocket-Key" in self.headers:
            self._websocket()
            return
        delay = self.server.delay_ms + int(query.get("delay_ms", ["0"])[0])
        if delay:
            time.sleep(min(delay, MAX_DELAY_MS) / 1000)
        status = int(query.get("status", ["200"])[0])
        if "close" in query:
            self.close_connection = True  # hang up without an answer
        elif "echo" in query:
            keep.seek(0)
            self._send(status, "application/octet-stream", length, iter(lambda: keep.read(CHUNK), b""))
        elif "bytes" in query:
            n = int(query["bytes"][0])
            if "cut" in query:  # the head promises n bytes; fewer come, then the end of the connection
                self.close_connection = True
                self._send(status, "application/octet-stream", n, iter([repeat_bytes(int(query["cut"][0]))]))
            else:
                self._send(status, "application/octet-stream", n, iter([repeat_bytes(n)]))
        else:
            body = json.dumps(record, indent=1).encode() + b"\n"
            self._send(status, "application/json", len(body), iter([body]))

    def _websocket(self) -> None:
        """Accept the handshake, then echo frames until a close frame (answered) or EOF."""
        self.close_connection = True
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", generate_accept_token(self.headers["Sec-WebSocket-Key"].encode()).decode())
        self.end_headers()
        self.wfile.flush()
        frames = FrameProtocol(client=False, extensions=[])
        while True:
            data = self.rfile.read1(CHUNK)  # what the head's reader holds already, then the socket
            if not data:
                return
            frames.receive_bytes(data)
            for frame in frames.received_frames():
                payload = frame.payload
                if isinstance(payload, tuple):  # a close frame's (code, reason)
                    self.wfile.write(frames.close(payload[0], payload[1]))
                    return
                if frame.opcode is Opcode.PING:
                    self.wfile.write(frames.pong(payload if isinstance(payload, bytes) else payload.encode()))
                elif frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                    self.wfile.write(frames.send_data(payload, frame.frame_finished))

    def _read_body(self, sink: Any) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile, sink)
        length = self.headers.get("Content-Length")
        return _read_exact(self.rfile, int(length), sink) if length else 0

    def _record(self, length: int, sha256: str) -> dict[str, Any]:
        parts = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return {
            "upstream": self.server.name,
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "http_version": self.request_version.removeprefix("HTTP/"),
            "headers": headers,
            "header_list": [[k, v] for k, v in self.headers.items()],
            "body_length": length,
            "body_sha256": sha256,
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "tls_version": _tls_version(self.connection),
            "cipher": _cipher(self.connection),
            "client_cert_subject": _peer_subject(self.connection),
            "connection": self.server.connection_number(self.connection),
        }

    def _send(self, status: int, content_type: str, length: int, pieces: Any) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Spec-Upstream", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            for piece in pieces:
                self.wfile.write(piece)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def _tls_version(sock: socket.socket) -> str:
    """``TLSv1.2``, ``TLSv1.3`` ... as negotiated; ``""`` for plain connections."""
    return (sock.version() or "") if isinstance(sock, ssl.SSLSocket) else ""


def _cipher(sock: socket.socket) -> str:
    """The negotiated suite, OpenSSL's name (``ECDHE-ECDSA-AES128-GCM-SHA256``, ``TLS_AES_256_GCM_SHA384``)."""
    suite = sock.cipher() if isinstance(sock, ssl.SSLSocket) else None
    return suite[0] if suite else ""


def _peer_subject(sock: socket.socket) -> str:
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    der = sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else ""


class _EchoServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """``ThreadingHTTPServer`` with per-thread TLS and tracking of open connections."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, name: str, ssl_context: ssl.SSLContext | None, delay_ms: int) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.name = name
        self.ssl_context = ssl_context
        self.delay_ms = delay_ms
        self.observed = Observed()
        self._open: dict[socket.socket, int] = {}  # open connection → its number (1, 2, ...)
        self._open_lock = threading.Lock()

    def connection_number(self, conn: socket.socket) -> int:
        """Which connection (1 for the first accepted) ``conn`` is."""
        with self._open_lock:
            return self._open.get(conn, 0)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run in the connection's thread: TLS handshake (if any), then the handler."""
        request.settimeout(CONNECTION_TIMEOUT)
        with self.observed.lock:
            self.observed.connections += 1
            number = self.observed.connections
        conn = request
        try:
            if self.ssl_context is not None:
                try:
                    conn = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the gateway's handshake failed; scenarios see it from its side
            with self._open_lock:
                self._open[conn] = number
            _EchoHandler(conn, client_address, self)
        except (OSError, ValueError):
            pass  # the peer went away, idled out, or stop() closed the socket; the record is kept
        finally:
            with self._open_lock:
                self._open.pop(conn, None)
            if conn is not request:
                _close_tls(conn)

    def close_all(self) -> None:
        """Close every connection still open (idle keep-alive from the gateway's pool)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer
            conn.close()


def _close_tls(conn: ssl.SSLSocket) -> None:
    """Send close_notify before closing (RFC 8446 §6.1), as a well-behaved server does."""
    try:
        conn.settimeout(1.0)
        conn.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        pass  # the peer already closed or reset; nothing left to say
    conn.close()


_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
             "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _server_context(
    leaf: Material, client_ca: Material | None, directory: str, max_version: str | None = None,
    min_version: str | None = None, ciphers: str | None = None,
) -> ssl.SSLContext:
    """A server context; ``max_version`` below 1.2 also lowers the minimum and OpenSSL's security level to 0."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    low = min_version or (max_version if max_version in ("1.0", "1.1") else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        if low is not None:
            ctx.minimum_version = _VERSIONS[low]
        if max_version is not None:
            ctx.maximum_version = _VERSIONS[max_version]
    if low in ("1.0", "1.1"):
        ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
    elif ciphers is not None:
        ctx.set_ciphers(ciphers)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", dir=directory, delete=False) as f:
        f.write(leaf.chain_pem + leaf.key_pem)
    ctx.load_cert_chain(f.name)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca.cert_pem)
    return ctx


class Upstream:
    """One running upstream: an echo server, or a refused port."""

    def __init__(self, name: str, kind: str, server: _EchoServer | None, closed: socket.socket | None) -> None:
        self.name = name
        self.kind = kind
        self._server = server
        self._closed = closed
        self._thread: threading.Thread | None = None
        port = getattr(server, "port", None)  # egress kinds know their port
        if port is None:
            sock = server.socket if server is not None else closed
            assert sock is not None
            port = sock.getsockname()[1]
        self.port: int = port
        self.tls = server is not None and server.ssl_context is not None

    @property
    def observed(self) -> Observed:
        """What the upstream recorded (empty for a closed port)."""
        return self._server.observed if self._server is not None else Observed()

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._server is not None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"spec-upstream-{self.name}", daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket; bounded by the connection timeout."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self._server.server_close()
            self._server.close_all()
        if self._closed is not None:
            self._closed.close()


def start_upstreams(
    entries: dict[str, dict[str, Any]], pki: dict[str, Material], directory: str, context: Context
) -> list[Upstream]:
    """Start every upstream of a scenario and define its ``upstream.NAME.*`` placeholders.

    Placeholders: ``upstream.NAME.port``, ``.host`` (``127.0.0.1``), ``.address``
    (``127.0.0.1:PORT``) and ``.url`` (``http://`` or ``https://127.0.0.1:PORT``).

    Raises:
        KeyError: ``tls``/``client_ca`` names no generated certificate (the loader checks first).
    """
    started: list[Upstream] = []
    try:
        for name, entry in entries.items():
            if entry["kind"] == "closed":
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                upstream = Upstream(name, "closed", None, sock)
            elif entry["kind"] == "connect_proxy":
                proxy_ctx = None
                if "tls" in entry:  # an https:// proxy; with client_ca it asks for (never requires) a certificate
                    proxy_ctx = _server_context(pki[entry["tls"]], pki.get(entry.get("client_ca", "")), directory)
                    if "client_ca" in entry:
                        proxy_ctx.verify_mode = ssl.CERT_OPTIONAL
                proxy = egress.ConnectProxy(entry.get("auth"), Observed(), proxy_ctx)
                upstream = Upstream(name, "connect_proxy", proxy, None)  # type: ignore[arg-type]
            elif entry["kind"] == "pebble":
                upstream = Upstream(name, "pebble", acme.PebbleServer(name, directory), None)  # type: ignore[arg-type]
            elif entry["kind"] == "h2":
                h2_ctx = _server_context(pki[entry["tls"]], None, directory)
                server = h2_upstream.H2Upstream(name, h2_ctx, Observed(), entry.get("alpn"))
                upstream = Upstream(name, "h2", server, None)  # type: ignore[arg-type]
            elif entry["kind"] == "renegotiate":
                reneg = egress.RenegotiatingServer(pki[entry["tls"]], directory, Observed())
                upstream = Upstream(name, "renegotiate", reneg, None)  # type: ignore[arg-type]
            else:
                ctx = None
                if "tls" in entry:
                    ctx = _server_context(pki[entry["tls"]], pki.get(entry.get("client_ca", "")), directory,
                                          entry.get("max_version"), entry.get("min_version"), entry.get("ciphers"))
                upstream = Upstream(name, "echo", _EchoServer(name, ctx, entry.get("delay_ms", 0)), None)
            started.append(upstream)
            upstream.start()
            scheme = "https" if upstream.tls else "http"
            context.set(f"upstream.{name}.port", upstream.port)
            context.set(f"upstream.{name}.host", "127.0.0.1")
            context.set(f"upstream.{name}.address", f"127.0.0.1:{upstream.port}")
            context.set(f"upstream.{name}.url", f"{scheme}://127.0.0.1:{upstream.port}")
            if isinstance(upstream._server, acme.PebbleServer):
                upstream._server.define_placeholders(name, context)
    except BaseException:
        for upstream in started:
            upstream.stop()
        raise
    return started
