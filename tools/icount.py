#!/usr/bin/env python3
"""Count the CPU instructions trio-gw executes per request and per handshake (valgrind's callgrind).

    python tools/icount.py                             this checkout's gateway
    python tools/icount.py --gateway-src /tmp/old      another checkout's (git worktree add /tmp/old <commit>)
    python tools/icount.py --json icount.json          also write the figures as JSON

Wall-clock benchmarks (``tools/bench.py``) on a small shared machine move by
±20 % from one run to the next; an instruction count does not: the same
gateway doing the same work executes the same instructions to within a
fraction of a percent.  That makes this the tool for before/after
comparisons of a change to the request or handshake path, and
``tools/bench.py --with-nginx`` the one for what a machine actually does.

How: the gateway runs under ``valgrind --tool=callgrind --instr-atstart=no``
(everything else — the upstream, the clients — runs natively), with the same
settings as ``tools/bench.py`` (an ssl listener, an ECDSA P-256 certificate,
one route to the upstream, access log off).  For each scenario the client
first warms up (caches, pools, lazy imports), then ``callgrind_control -i on``
starts counting, the scenario runs ``--count`` times sequentially from one
client, ``callgrind_control -i off`` stops counting, and the count of the
window (``callgrind_control -s``: the running totals) is divided by the number
of operations.  Nothing else runs in the window, so idle wake-ups of the
event loop (timers) are part of it; they are a few thousand instructions
a second against millions per operation.

Scenarios:

* ``keepalive``: one TLS 1.3 connection, one request after another
  (``GET /bytes/2``, a 2-byte response from the upstream over a pooled
  keep-alive upstream connection);
* ``handshake``: a new TLS 1.3 connection with a full handshake (no
  resumption), no request; the client half-closes the TCP connection and
  reads until the server has closed;
* ``handshake+request``: a new TLS 1.3 connection, a full handshake, one
  request with ``Connection: close``;
* ``resumption``: the same, resuming the previous connection's session (a
  TLS 1.3 ticket): what a client that reconnects costs;
* ``mtls``: a full handshake as in ``handshake``, with a client certificate,
  on a second gateway that requires one (``ssl_verify_client on``, the bench's
  CA as ``ssl_client_certificate``), started only for this scenario.

``--nginx`` counts the same scenarios on nginx (one process, ``master_process
off``, under the same callgrind, with ``tools/bench.py``'s proxy configuration)
and prints the ratio: where wall-clock ratios to nginx drift between runs, this
one does not, and ``--dump-dir`` keeps its dumps too (``nginx-<scenario>``)
for a side-by-side ``callgrind_annotate``.

``--set NAME=VALUE`` adds a setting to every gateway started (VALUE is read as
JSON, else taken as a string): ``--set ssl_session_tickets=off`` counts what
the session tickets cost.

The upstream is the built-in echo upstream or (``--upstream static``) nginx
returning 2 bytes; it is outside the count either way.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    """tools/bench.py (its PKI, upstreams and gateway start-up are shared, not repeated here)."""
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import bench  # tools/bench.py, as mypy sees it (tools/ is a folder of scripts)
else:
    bench = _bench()

SCENARIOS = ("keepalive", "handshake", "handshake+request", "resumption", "mtls")
TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def parse_totals(text: str) -> int:
    """The ``Ir`` count of a callgrind dump (its ``totals:`` line, or ``summary:`` in older formats)."""
    match = TOTALS.search(text)
    if match is None:
        raise ValueError(f"no 'totals:' line in the callgrind dump: {text[-400:]!r}")
    return int(match.group(1))


class Valgrind(bench.Gateway):
    """The gateway under ``valgrind --tool=callgrind``, counting nothing until told to."""

    def __init__(self, src: Path | None, out: Path) -> None:
        super().__init__(src)
        self.out = out

    def command(self) -> list[str]:
        # Plain `python -m trio_gw`: valgrind must see the interpreter, not a console script's shebang.
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}",
                sys.executable, "-m", "trio_gw"]

    def env(self) -> dict[str, str] | None:
        base = super().env()
        import os

        return {**(base or os.environ), "PYTHONHASHSEED": "0"}


def control(pid: int, *args: str) -> str:
    done = subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def counted(pid: int, out: Path, run: Callable[[], None], keep: Path | None = None) -> int:
    """Instructions the gateway executed while ``run`` ran (a callgrind dump of the window)."""
    before = set(out.parent.glob(out.name + ".*"))
    control(pid, "-z")  # zero the counters
    control(pid, "-i", "on")
    try:
        run()
        # Dump while still counting (the dump also zeroes); the gateway is idle by now, so the dump adds
        # only an idle loop's wake-ups.
        control(pid, "-d")
    finally:
        control(pid, "-i", "off")
    dumps = sorted(set(out.parent.glob(out.name + ".*")) - before, key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump beside {out}")
    if keep is not None:
        shutil.copyfile(dumps[-1], keep)
    return parse_totals(dumps[-1].read_text(errors="replace"))


def client_context(ca: Path, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if client_cert is not None:
        ctx.load_cert_chain(*client_cert)
    return ctx


def start_nginx(stack: ExitStack, tmp: Path, pki: Any, upstream: int, out: Path) -> tuple[int, int, int]:
    """The bench's nginx proxy under callgrind, counting nothing until told to: (pid, port, mTLS port).

    One process (``master_process off``): the master would otherwise be the pid callgrind_control talks to.
    """
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    child, port, mtls_port = bench.start_nginx_proxy(stack, tmp, pki, upstream, wrap=wrap, single_process=True,
                                                     timeout=120)
    return child.pid, port, mtls_port


def setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from the command line: VALUE as JSON when it is JSON, else as the string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def read_response(sock: ssl.SSLSocket, buf: bytearray) -> None:
    """Read one response with a Content-Length body from ``sock`` (what is read past it stays in ``buf``)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before a response")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"the gateway answered {status}: {head[:200]!r}")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside a body")
        rest += chunk
    buf[:] = rest[length:]


def connect(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=bench.SERVER_NAME)


def full_handshakes(ctx: ssl.SSLContext, port: int, n: int) -> None:
    """``n`` full handshakes, no request: the client half-closes and reads until the server has closed.

    The client's handshake is done before the server has read its Finished.
    Half-closing the TCP connection (no close_notify: a gateway that holds its
    session tickets back would answer one with a record the client cannot
    decrypt) and reading to the end lets the server read the Finished, then
    the EOF, and close.
    """
    for _ in range(n):
        sock = connect(ctx, port)
        sock.shutdown(socket.SHUT_WR)  # drops the TLS layer, shuts down the socket's write side
        try:
            while socket.socket.recv(sock, 65536):
                pass
        except ConnectionError:
            pass
        sock.close()


def scenarios(port: int, ctx: ssl.SSLContext, path: str) -> dict[str, tuple[Callable[[int], None], int]]:
    keepalive_sock: list[ssl.SSLSocket] = []
    request = f"GET {path} HTTP/1.1\r\nHost: {bench.SERVER_NAME}\r\n\r\n".encode()
    closing = f"GET {path} HTTP/1.1\r\nHost: {bench.SERVER_NAME}\r\nConnection: close\r\n\r\n".encode()

    def keepalive(n: int) -> None:
        if not keepalive_sock:
            keepalive_sock.append(connect(ctx, port))
        sock, buf = keepalive_sock[0], bytearray()
        for _ in range(n):
            sock.sendall(request)
            read_response(sock, buf)

    def handshake(n: int) -> None:
        full_handshakes(ctx, port, n)

    def handshake_request(n: int) -> None:
        for _ in range(n):
            with connect(ctx, port) as sock:
                sock.sendall(closing)
                read_response(sock, bytearray())

    session: list[ssl.SSLSession] = []

    def resumption(n: int) -> None:
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", port), timeout=120)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname=bench.SERVER_NAME,
                                 session=session[0] if session else None) as sock:
                sock.sendall(closing)
                read_response(sock, bytearray())
                if session and not sock.session_reused:
                    raise RuntimeError("the gateway did not resume the session")
                session[:] = [sock.session] if sock.session is not None else []

    return {"keepalive": (keepalive, 1), "handshake": (handshake, 1), "handshake+request": (handshake_request, 1),
            "resumption": (resumption, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-src", type=Path, metavar="DIR",
                        help="run the gateway from DIR's source tree (PYTHONPATH=DIR python -m trio_gw)")
    parser.add_argument("--count", type=int, default=300, help="operations counted per scenario (default 300)")
    parser.add_argument("--warmup", type=int, default=50, help="operations before counting (default 50)")
    parser.add_argument("--scenarios", default="keepalive,handshake,handshake+request,resumption",
                        help="comma-separated subset of keepalive,handshake,handshake+request,resumption,mtls "
                             "(default: all but mtls)")
    parser.add_argument("--nginx", action="store_true",
                        help="count the same scenarios on nginx too, and print trio-gw's ratio to it")
    parser.add_argument("--set", type=setting, action="append", default=[], metavar="NAME=VALUE", dest="settings",
                        help="a gateway setting (VALUE as JSON, else a string); repeatable")
    parser.add_argument("--upstream", choices=("echo", "static"), default="echo",
                        help="echo: the built-in Python echo upstream; static: nginx returning 2 bytes")
    parser.add_argument("--path", default="/bytes/2", help="request path (default /bytes/2)")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds the gateway may take to start")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures to FILE")
    parser.add_argument("--dump-dir", type=Path, metavar="DIR",
                        help="keep each scenario's callgrind dump as DIR/<scenario>.callgrind "
                             "(read with callgrind_annotate or kcachegrind)")
    args = parser.parse_args(argv)
    names = [s for s in args.scenarios.split(",") if s]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))} (known: {', '.join(SCENARIOS)})")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("icount: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trio-gw-icount-")))
        pki = bench.make_pki(tmp, 0)
        upstream = bench.start_static_upstream(stack, tmp) if args.upstream == "static" else bench.start_echo(stack, tmp)
        gateway = Valgrind(args.gateway_src.resolve() if args.gateway_src else None, tmp / "callgrind.out")
        gateway.load_known_settings(tmp)
        print(f"gateway: {gateway.describe()}", file=sys.stderr)
        extra = dict(args.settings)
        pids: dict[str, tuple[int, Path]] = {}
        table: dict[str, Callable[[int], None]] = {}
        if set(names) - {"mtls"}:
            child, port = bench.start_gateway(stack, tmp, "icount", pki, upstream, gateway, certificates=0,
                                              timeout=args.start_timeout, extra=extra, required=list(extra))
            for name, (run, _) in scenarios(port, client_context(pki.ca_pem), args.path).items():
                table[name], pids[name] = run, (child.pid, gateway.out)
        if "mtls" in names:
            twin = Valgrind(gateway.src, tmp / "callgrind-mtls.out")
            twin.known_settings = gateway.known_settings
            mtls = {"ssl_verify_client": "on", "ssl_client_certificate": [str(pki.ca_pem)], **extra}
            child, port = bench.start_gateway(stack, tmp, "icount-mtls", pki, upstream, twin, certificates=0,
                                              timeout=args.start_timeout, extra=mtls, required=list(mtls))
            ctx = client_context(pki.ca_pem, (pki.client_cert_pem, pki.client_key_pem))
            table["mtls"] = functools.partial(full_handshakes, ctx, port)
            pids["mtls"] = (child.pid, twin.out)
        servers = [("", table, pids)]
        if args.nginx:
            out = tmp / "callgrind-nginx.out"
            pid, port, mtls_port = start_nginx(stack, tmp, pki, upstream, out)
            ngx = {name: run for name, (run, _) in scenarios(port, client_context(pki.ca_pem), args.path).items()}
            ctx = client_context(pki.ca_pem, (pki.client_cert_pem, pki.client_key_pem))
            ngx["mtls"] = functools.partial(full_handshakes, ctx, mtls_port)
            servers.append(("nginx-", ngx, {name: (pid, out) for name in ngx}))
        figures: dict[str, Any] = {"gateway": gateway.describe(), "count": args.count, "settings": extra}
        for name in names:
            for prefix, runs, where in servers:
                run = runs[name]
                pid, out = where[name]
                run(args.warmup)
                keep = None
                if args.dump_dir:
                    args.dump_dir.mkdir(parents=True, exist_ok=True)
                    keep = args.dump_dir / f"{prefix}{name}.callgrind"
                total = counted(pid, out, functools.partial(run, args.count), keep)
                figures[prefix + name] = {"instructions": total, "per_operation": round(total / args.count)}
                print(f"{prefix + name:>24}: {total / args.count:>12,.0f} instructions per operation "
                      f"({total:,} over {args.count})")
            if args.nginx:
                ratio = figures["nginx-" + name]["instructions"] / figures[name]["instructions"]
                figures[name]["nginx_ratio"] = round(ratio, 3)
                print(f"{'':>24}  nginx's count / trio-gw's: {ratio:.2f}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
