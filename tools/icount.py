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
  TLS 1.3 ticket): what a client that reconnects costs.

The upstream is the built-in echo upstream or (``--upstream static``) nginx
returning 2 bytes; it is outside the count either way.
"""

from __future__ import annotations

import argparse
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    """tools/bench.py (its PKI, upstreams and gateway start-up are shared, not repeated here)."""
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()

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


def client_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


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
        for _ in range(n):
            sock = connect(ctx, port)
            # The client's handshake is done before the server has read its Finished.  Half-close
            # the TCP connection (no close_notify: a gateway that holds its session tickets back
            # would answer one with a record the client cannot decrypt) and read to the end: the
            # server reads the Finished, then the EOF, and closes.
            sock.shutdown(socket.SHUT_WR)  # drops the TLS layer, shuts down the socket's write side
            try:
                while socket.socket.recv(sock, 65536):
                    pass
            except ConnectionError:
                pass
            sock.close()

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
                        help="comma-separated subset of keepalive,handshake,handshake+request,resumption")
    parser.add_argument("--upstream", choices=("echo", "static"), default="echo",
                        help="echo: the built-in Python echo upstream; static: nginx returning 2 bytes")
    parser.add_argument("--path", default="/bytes/2", help="request path (default /bytes/2)")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds the gateway may take to start")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures to FILE")
    parser.add_argument("--dump-dir", type=Path, metavar="DIR",
                        help="keep each scenario's callgrind dump as DIR/<scenario>.callgrind "
                             "(read with callgrind_annotate or kcachegrind)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("icount: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    names = [s for s in args.scenarios.split(",") if s]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trio-gw-icount-")))
        pki = bench.make_pki(tmp, 0)
        upstream = bench.start_static_upstream(stack, tmp) if args.upstream == "static" else bench.start_echo(stack, tmp)
        gateway = Valgrind(args.gateway_src.resolve() if args.gateway_src else None, tmp / "callgrind.out")
        gateway.load_known_settings(tmp)
        print(f"gateway: {gateway.describe()}", file=sys.stderr)
        child, port = bench.start_gateway(stack, tmp, "icount", pki, upstream, gateway, certificates=0,
                                          timeout=args.start_timeout)
        ctx = client_context(pki.ca_pem)
        table = scenarios(port, ctx, args.path)
        figures: dict[str, Any] = {"gateway": gateway.describe(), "count": args.count}
        for name in names:
            if name not in table:
                parser.error(f"unknown scenario {name!r}")
            run, _ = table[name]
            run(args.warmup)
            keep = None
            if args.dump_dir:
                args.dump_dir.mkdir(parents=True, exist_ok=True)
                keep = args.dump_dir / f"{name}.callgrind"
            total = counted(child.pid, gateway.out, lambda run=run: run(args.count), keep)
            figures[name] = {"instructions": total, "per_operation": round(total / args.count)}
            print(f"{name:>18}: {total / args.count:>12,.0f} instructions per operation "
                  f"({total:,} over {args.count})")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
