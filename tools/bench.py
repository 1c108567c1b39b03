#!/usr/bin/env python3
"""Benchmark trio-gw as a TLS reverse proxy, optionally side by side with nginx.

    python tools/bench.py                          trio-gw only, 10 s per measurement
    python tools/bench.py --with-nginx             the same for nginx (1 worker), plus ratios
    python tools/bench.py --certificates 10000     handshakes/s with 10,000 extra certificates vs one
    python tools/bench.py --install --with-nginx   first install wrk and nginx (Debian packages)
    python tools/bench.py --upstream static        upstream = nginx returning 2 bytes (measures the proxy alone)
    python tools/bench.py --repeat 3               each rate measured 3 times, the median run reported
    python tools/bench.py --phases mtls,resumption only some of: idle, handshakes, mtls, resumption, keepalive,
                                                   websocket
    python tools/bench.py --json bench.json        also write every figure as JSON
    python tools/bench.py --gateway-src /tmp/old   run the gateway from another checkout's source tree
    python tools/bench.py --baseline-src /tmp/old  ... or measure that one too, taking turns with this one
    python tools/bench.py --workers 1,2            trio-gw with 1 worker process and with 2 (``workers``), compared
    python tools/bench.py --baseline-python V/bin/python
                                                   this checkout's gateway on another interpreter (a venv with the
                                                   lock installed) as 'baseline': two builds of CPython compared

    git worktree add /tmp/old <commit>             ... then --gateway-src /tmp/old gives the "before" figures
                                                   from the same bench script as the "after" ones

What runs (everything on 127.0.0.1, every process stopped at the end):

* the built-in echo upstream (``trio_gw.runtime.echo.EchoServer``) in its own
  process — or, with ``--upstream static``, an nginx ``return 200 "xx"`` server,
  so that the upstream is not the bottleneck;
* ``trio-gw run -c settings.yaml`` with a TLS listener serving an ECDSA P-256
  certificate from a throw-away trustme CA (nothing is written outside a
  temporary directory); for the mTLS phase a second gateway process whose
  settings add ``ssl_verify_client: on`` and ``ssl_client_certificate: [ca]``.
  With ``--gateway-src DIR`` both run as ``python -m trio_gw`` with
  ``PYTHONPATH=DIR`` (this venv's Python); settings that DIR's gateway does not
  know (``python -m trio_gw settings``) are left out, and said so;
* with ``--with-nginx``: nginx with one worker, configured as a TLS reverse
  proxy to the same upstream with upstream keep-alive, plus a second server
  block (same process) with ``ssl_verify_client on``, on free ports found by
  binding and closing (nginx cannot listen on port 0).

What is measured, for each proxy (TLS 1.3 only — every client refuses less —
ECDSA P-256 server certificate), each phase ``--repeat`` times, median run.
Every proxy runs from the start, and the phases go one at a time with the
proxies taking turns (A B, B A, A B...): on a shared machine whole phases run
15-25 % faster or slower a few minutes apart, and a drift then falls on every
proxy alike instead of on whichever was measured last:

* ``idle``: the server's VmRSS (``/proc/<pid>/status``, all its processes)
  before any connection, then the growth per idle TLS connection over N
  connections that each served one keep-alive request and then stay idle;
  the opening of those connections is timed too;
* ``handshakes``: full TLS 1.3 handshakes (no resumption, certificate
  verified), Python ``ssl`` clients in separate processes.  A handshake counts
  once the server's first session ticket has arrived: the server sends it only
  after it has processed the client's Finished (and its certificate);
* ``mtls``: the same with a client certificate the server requires and
  verifies; a probe first checks that a request with the certificate gets 200
  and that one without it is refused;
* ``resumption``: reconnects, each one TCP + TLS connection resuming the
  previous connection's session (TLS 1.3 ticket) and making one request with
  ``Connection: close``; resumed connections are counted, so a resumption rate
  below 100 % shows.  (wrk 4.1 with ``-H "Connection: close"`` resumes TLS 1.3
  sessions too — nginx's ``$ssl_session_reused`` said so for all but its first
  connections — but it cannot count them, nor can trio-gw's log, hence the
  Python clients);
* ``keepalive``: keep-alive HTTPS requests/s and latency: ``wrk`` when
  installed (forced to TLS 1.3 through an ``OPENSSL_CONF`` with
  ``MinProtocol = TLSv1.3``), else a built-in asyncio load generator;
* ``websocket``: round trips of a 32-byte text message over ``wss://`` to
  ``/ws``, which both proxies route to the tests' WebSocket echo upstream
  (``trio_gw.testing.websocket``, wsproto, its own process): each client
  connection sends a message and waits for its echo, again and again, so the
  proxy relays two frames per round trip after one handshake (nginx with the
  ``Upgrade``/``Connection`` directives its documentation gives for WebSocket).

For every phase the server's user+system CPU time (``/proc/<pid>/stat``, all
its processes) is read before and after, so ``per_cpu_s`` says what one fully
used core would do: on a small machine the clients and the upstream compete
with the server for the cores, so the figures are for comparing, not absolute.
Nothing here is a test: no figure is ever asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1.0
#: How long a child process may take beyond its planned duration before it is killed.
GRACE = 30 * SECONDS
#: How long a handshake client waits for the server's session ticket (its proof of acceptance).
TICKET_TIMEOUT = 5 * SECONDS
#: Host name in the default certificate; the handshake clients send it as SNI.
SERVER_NAME = "bench.test"
#: How a handshake's end is recognised when the server sends a ticket right away (see probe_ticket).
TICKET_END = "server's first session ticket"
#: Latency samples a client process returns at most (evenly thinned beyond that).
MAX_SAMPLES = 50_000
#: The phases, in the order they run (idle first: its process RSS is the untouched server's).
PHASES = ("idle", "handshakes", "mtls", "resumption", "keepalive", "websocket")
#: The text message each WebSocket round trip sends and gets back.
WS_MESSAGE = "x" * 32
#: What wrk loads instead of the system OpenSSL configuration: TLS 1.3 or nothing.
OPENSSL_TLS13_ONLY = """\
openssl_conf = bench_init
[bench_init]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_tls13
[bench_tls13]
MinProtocol = TLSv1.3
"""


# --- figures (pure) --------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank, 0 < p <= 100) of ``ordered`` (sorted); NaN when empty."""
    if not ordered:
        return float("nan")
    rank = math.ceil(len(ordered) * p / 100)
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def latency_figures(samples: Iterable[float], prefix: str = "latency") -> dict[str, Any]:
    """p50/p99 (ms) of latency samples from any number of clients."""
    ordered = sorted(samples)
    return {f"{prefix}_p50_ms": percentile(ordered, 50), f"{prefix}_p99_ms": percentile(ordered, 99),
            f"{prefix}_samples": len(ordered)}


def thin(values: list[float], cap: int = MAX_SAMPLES) -> list[float]:
    """At most ``cap`` of ``values``, evenly spaced (keeps the distribution, bounds the JSON)."""
    if len(values) <= cap:
        return values
    step = len(values) / cap
    return [values[int(i * step)] for i in range(cap)]


def per_cpu(count: float, cpu_s: float) -> float:
    """``count`` per server CPU-second; NaN when no CPU time was measured."""
    return count / cpu_s if cpu_s > 0 else float("nan")


def rate_figures(count: int, elapsed_s: float, cpu_s: float) -> dict[str, Any]:
    """The figures every rate phase reports: per wall-second and per server CPU-second."""
    return {"count": count, "elapsed_s": elapsed_s, "server_cpu_s": cpu_s,
            "per_s": count / elapsed_s if elapsed_s > 0 else float("nan"), "per_cpu_s": per_cpu(count, cpu_s)}


def median_run(runs: list[dict[str, Any]], key: str = "per_s") -> dict[str, Any]:
    """The run with the median ``key`` (a real run, so its other figures belong together), plus all samples.

    NaN sorts first, so a failed run is never chosen over a measured one.
    """
    if not runs:
        raise ValueError("no run to choose from")
    ordered = sorted(runs, key=lambda r: -math.inf if math.isnan(r[key]) else r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["runs"] = [r[key] for r in runs]
    return chosen


def ratio(a: Any, b: Any) -> float | None:
    """``a / b`` when both are finite numbers and ``b`` is not zero."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) or not b:
        return None
    return float(a) / float(b)


def resumption_figures(children: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Resumed vs full handshakes over the reconnect clients.

    Each client's first connection has no session to offer; every later one
    offers the session of the connection before it (when that one got a
    ticket).  ``resumed_fraction`` is over the connections that could resume.
    """
    could = sum(c["could_resume"] for c in children)
    resumed = sum(c["resumed"] for c in children)
    return {"could_resume": could, "resumed": resumed, "not_resumed": could - resumed,
            "offered": sum(c["offered"] for c in children),
            "resumed_fraction": resumed / could if could else float("nan")}


def select_known_settings(settings: dict[str, Any], known: set[str] | None) -> tuple[dict[str, Any], list[str]]:
    """The settings a gateway knows (``known``: names it lists; None: all), and the names left out."""
    if known is None:
        return dict(settings), []
    kept = {k: v for k, v in settings.items() if k in known}
    return kept, [k for k in settings if k not in known]


def parse_duration_ms(text: str) -> float:
    """wrk's durations (``812.00us``, ``1.20ms``, ``2.00s``, ``1.00m``) in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests, elapsed time, p50/p99 and errors from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if total is None:
        raise ValueError(f"cannot read wrk's output:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non2xx.group(1)) if non2xx else 0
    detail = ", ".join(x for x in (socket_errors.group(0) if socket_errors else "",
                                   non2xx.group(0) if non2xx else "") if x)
    return {"requests": int(total.group(1)), "elapsed_s": parse_duration_ms(total.group(2)) / 1000,
            "latency_p50_ms": parse_duration_ms(latency["50"]) if "50" in latency else float("nan"),
            "latency_p99_ms": parse_duration_ms(latency["99"]) if "99" in latency else float("nan"),
            "errors": errors, "first_error": detail or None}


@dataclass(frozen=True)
class Row:
    """One line of the final table: ``results[server][phase][key]``, shown with ``fmt``."""

    label: str
    phase: str
    key: str
    fmt: str = "{:.0f}"
    scale: float = 1.0
    show_ratio: bool = True


TABLE: tuple[Row, ...] = (
    Row("idle: process RSS (MiB)", "idle", "process_rss_kib", "{:.1f}", 1 / 1024),
    Row("idle: RSS per TLS connection (KiB)", "idle", "kib_per_connection", "{:.1f}"),
    Row("idle: connections opened/s", "idle", "per_s"),
    Row("  per server CPU-second", "idle", "per_cpu_s"),
    Row("  open+request p50 (ms)", "idle", "latency_p50_ms", "{:.2f}"),
    Row("  open+request p99 (ms)", "idle", "latency_p99_ms", "{:.2f}"),
    Row("  failed", "idle", "errors", show_ratio=False),
    Row("handshakes: full TLS 1.3/s", "handshakes", "per_s"),
    Row("  per server CPU-second", "handshakes", "per_cpu_s"),
    Row("  handshake p50 (ms)", "handshakes", "latency_p50_ms", "{:.2f}"),
    Row("  handshake p99 (ms)", "handshakes", "latency_p99_ms", "{:.2f}"),
    Row("  errors", "handshakes", "errors", show_ratio=False),
    Row("mtls: full mTLS handshakes/s", "mtls", "per_s"),
    Row("  per server CPU-second", "mtls", "per_cpu_s"),
    Row("  handshake p50 (ms)", "mtls", "latency_p50_ms", "{:.2f}"),
    Row("  handshake p99 (ms)", "mtls", "latency_p99_ms", "{:.2f}"),
    Row("  errors", "mtls", "errors", show_ratio=False),
    Row("resumption: reconnects/s", "resumption", "per_s"),
    Row("  per server CPU-second", "resumption", "per_cpu_s"),
    Row("  connection p50 (ms)", "resumption", "latency_p50_ms", "{:.2f}"),
    Row("  connection p99 (ms)", "resumption", "latency_p99_ms", "{:.2f}"),
    Row("  resumed (%)", "resumption", "resumed_fraction", "{:.1f}", 100),
    Row("  errors", "resumption", "errors", show_ratio=False),
    Row("keepalive: HTTPS requests/s", "keepalive", "per_s"),
    Row("  per server CPU-second", "keepalive", "per_cpu_s"),
    Row("  request p50 (ms)", "keepalive", "latency_p50_ms", "{:.2f}"),
    Row("  request p99 (ms)", "keepalive", "latency_p99_ms", "{:.2f}"),
    Row("  errors", "keepalive", "errors", show_ratio=False),
    Row("websocket: messages echoed/s", "websocket", "per_s"),
    Row("  per server CPU-second", "websocket", "per_cpu_s"),
    Row("  round trip p50 (ms)", "websocket", "latency_p50_ms", "{:.2f}"),
    Row("  round trip p99 (ms)", "websocket", "latency_p99_ms", "{:.2f}"),
    Row("  errors", "websocket", "errors", show_ratio=False),
)


def notes(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the table cannot show: skipped phases, how handshakes were timed, probes, errors, stray resumptions."""
    out = []
    for name, phases in results.items():
        for phase, fig in phases.items():
            where = f"{name} {phase}"
            if fig.get("skipped"):
                out.append(f"{where}: skipped, {fig.get('reason', '?')}")
                continue
            if fig.get("handshake_end", TICKET_END) != TICKET_END:
                out.append(f"{where}: no session ticket right after a handshake, so handshakes were timed to the "
                           "client's side only (not comparable with a server that sends one)")
            probe = fig.get("probe")
            if probe is not None and not probe["ok"]:
                out.append(f"{where}: probe NOT as expected: with the certificate {probe['with_certificate']}, "
                           f"without {probe['without_certificate']}")
            if fig.get("errors"):
                out.append(f"{where}: {fig['errors']} errors, first: {fig.get('first_error')}")
            if phase in ("handshakes", "mtls") and fig.get("resumed"):
                out.append(f"{where}: {fig['resumed']} handshakes were resumed (these should all be full)")
            if phase == "resumption" and not fig.get("resumed_fraction", 0) >= 0.99:
                out.append(f"{where}: only {fig.get('resumed_fraction', 0) * 100:.1f} % of the reconnects resumed "
                           f"({fig.get('resumed')} of {fig.get('could_resume')}; sessions with a ticket offered: "
                           f"{fig.get('offered')})")
    return out


def table(results: dict[str, dict[str, Any]], rows: Sequence[Row] = TABLE) -> str:
    """Side by side: one column per server, then the ratio of each to the last (nginx) when there are several.

    A row whose phase no server ran is left out; a server that skipped a phase
    shows ``skipped``.
    """
    names = list(results)
    compared = names[:-1] if len(names) > 1 else []
    ratio_labels = ["ratio"] if len(names) == 2 else [f"{n[:9]}/{names[-1][:5]}" for n in compared]
    header = f"{'':36}" + "".join(f"{n:>14}" for n in names) + "".join(f"{label:>16}" for label in ratio_labels)
    lines = [header, "-" * len(header)]
    for row in rows:
        phases = [results[n].get(row.phase) for n in names]
        if all(p is None for p in phases):
            continue
        values = [None if p is None or p.get("skipped") else p.get(row.key) for p in phases]
        cells = []
        for phase, value in zip(phases, values):
            if phase is not None and phase.get("skipped"):
                cells.append("skipped")
            elif isinstance(value, (int, float)):
                cells.append(row.fmt.format(value * row.scale))
            else:
                cells.append("-")
        line = f"{row.label:36}" + "".join(f"{c:>14}" for c in cells)
        if row.show_ratio:
            ratios = [ratio(values[i], values[-1]) for i in range(len(compared))]
            if any(r is not None for r in ratios):
                line += "".join(f"{'-' if r is None else f'{r:.2f}x':>16}" for r in ratios)
        lines.append(line)
    return "\n".join(lines)


# --- process handling ------------------------------------------------------------------


def _raise_fd_limit() -> None:
    """Raise RLIMIT_NOFILE to the hard limit (idle-connection phase needs thousands of fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Child:
    """A process this tool started; :meth:`stop` is always called (ExitStack)."""

    name: str
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10 * SECONDS) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def spawn(stack: ExitStack, name: str, cmd: Sequence[str], *, stdout: Any = subprocess.DEVNULL,
          stdin: Any = subprocess.DEVNULL, log: Path | None = None, sig: int = signal.SIGTERM,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
    """Start ``cmd`` and register its stop on ``stack``."""
    stderr: Any = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        popen = subprocess.Popen(list(cmd), stdout=stdout, stdin=stdin, stderr=stderr,  # inherits our fd limit
                                 env=env, cwd=cwd)
    finally:
        if log is not None:
            stderr.close()
    child = Child(name, popen)
    stack.callback(child.stop, sig)
    return child


def free_port() -> int:
    """A free loopback port (for nginx, which cannot listen on port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_for_port(port: int, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not listen on {port} within {timeout:.0f} s")


def rss_kib(pids: Sequence[int]) -> int:
    """Sum of VmRSS (KiB) of ``pids``."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time (seconds) consumed so far by ``pids`` (``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / ticks


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx master + workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out.extend(process_tree(int(child)))
    return out


def python_child(mode: str, config: dict[str, Any] | None = None, *args: str) -> list[str]:
    """The command to run one of this file's hidden child modes (its configuration as one JSON argument)."""
    return [sys.executable, str(Path(__file__).resolve()), mode, json.dumps(config or {}), *args]


# --- PKI -------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    client_cert_pem: Path
    client_key_pem: Path
    extra: list[tuple[str, str, str]] = field(default_factory=list)  # (sni, cert pem, key pem)


def make_pki(tmp: Path, extra_certificates: int) -> Pki:
    """A throw-away ECDSA P-256 CA, server and client certificates (+ extra certificates with one SNI each)."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert(SERVER_NAME, "localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    client = ca.issue_cert(f"client.{SERVER_NAME}", key_type=trustme.KeyType.ECDSA)
    pki = Pki(tmp / "ca.pem", tmp / "server.pem", tmp / "server.key", tmp / "client.pem", tmp / "client.key")
    ca.cert_pem.write_to_path(str(pki.ca_pem))
    pki.cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(pki.key_pem))
    pki.client_cert_pem.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(pki.client_key_pem))
    for i in range(extra_certificates):
        name = f"cert-{i}.{SERVER_NAME}"
        issued = ca.issue_cert(name, key_type=trustme.KeyType.ECDSA)
        pki.extra.append((name, issued.cert_chain_pems[0].bytes().decode(), issued.private_key_pem.bytes().decode()))
    return pki


# --- upstreams -------------------------------------------------------------------------


def start_echo(stack: ExitStack, tmp: Path) -> int:
    """The built-in echo upstream (this checkout's) in its own process; returns its port."""
    return _start_server_child(stack, tmp, "echo upstream", "_echo", "echo")


def _start_server_child(stack: ExitStack, tmp: Path, what: str, mode: str, stem: str) -> int:
    """A child process serving on 127.0.0.1:0 that writes its port to ``tmp/STEM.port``; that port."""
    port_file = tmp / f"{stem}.port"
    child = spawn(stack, what, python_child(mode, {"port_file": str(port_file)}), log=tmp / f"{stem}.log")
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if child.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the {what} did not start (see {tmp / f'{stem}.log'})")
        time.sleep(0.05)
    return int(port_file.read_text())


def _serve_echo(port_file: str) -> None:
    import trio

    from trio_gw.runtime.echo import EchoServer, open_echo_listeners

    async def main() -> None:
        server = EchoServer(keep_requests=16)  # a benchmark makes millions of requests
        listeners = await open_echo_listeners("127.0.0.1", 0)
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(listeners[0].socket.getsockname()[1]))
        tmp.replace(port_file)
        await server.serve(listeners)

    trio.run(main)


def start_ws_echo(stack: ExitStack, tmp: Path) -> int:
    """The WebSocket echo upstream of the tests (``trio_gw.testing.websocket``, wsproto) in its own process."""
    return _start_server_child(stack, tmp, "websocket upstream", "_ws_echo", "ws-echo")


def _serve_ws_echo(port_file: str) -> None:
    import trio

    from trio_gw.testing.websocket import WebSocketEcho

    async def main() -> None:
        server = WebSocketEcho(messages=_Discard())  # a benchmark echoes millions of messages: keep none
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(listeners[0].socket.getsockname()[1]))
        tmp.replace(port_file)
        await server.serve(listeners)

    trio.run(main)


class _Discard(list):  # type: ignore[type-arg]
    """A list that keeps nothing appended to it."""

    def append(self, item: Any) -> None:
        pass


NGINX_COMMON = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx-{name}.pid;
worker_rlimit_nofile 40000;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-{name}-body;
    proxy_temp_path {tmp}/nginx-{name}-proxy;
    fastcgi_temp_path {tmp}/nginx-{name}-fastcgi;
    uwsgi_temp_path {tmp}/nginx-{name}-uwsgi;
    scgi_temp_path {tmp}/nginx-{name}-scgi;
    keepalive_requests 10000;
    keepalive_timeout 60s;
{body}
}}
"""

NGINX_STATIC = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "xx"; }}
    }}
"""

# Tickets are on by default (nginx and trio-gw alike); no shared session cache on either side.
NGINX_PROXY = """\
    upstream echo {{
        server 127.0.0.1:{upstream_port};
        keepalive 512;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
{ws_location}    }}
    server {{
        listen 127.0.0.1:{mtls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate {ca};
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


# Kong's nginx template passes the client's Upgrade on (its $upstream_upgrade map); a WebSocket
# location does the same with the directives nginx documents for it.
NGINX_WS_LOCATION = """\
        location /ws {{
            proxy_pass http://127.0.0.1:{ws_port}/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }}
"""


def start_nginx(stack: ExitStack, tmp: Path, name: str, body: str, *, wrap: Sequence[str] = (),
                single_process: bool = False) -> Child:
    """nginx with one worker and the given ``http {}`` body; returns the master process.

    ``wrap`` runs nginx under a command (``tools/icount.py``: valgrind); ``single_process``
    (``master_process off``) makes the process started the one that serves.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(("master_process off;\n" if single_process else "")
                    + NGINX_COMMON.format(tmp=tmp, name=name, body=body))
    cmd = [*wrap, nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / f"nginx-{name}.error.log")]
    return spawn(stack, f"nginx ({name})", cmd, log=tmp / f"nginx-{name}.log", sig=signal.SIGQUIT)


def start_static_upstream(stack: ExitStack, tmp: Path) -> int:
    port = free_port()
    child = start_nginx(stack, tmp, "static", NGINX_STATIC.format(port=port))
    wait_for_port(port, child, 10)
    return port


def start_nginx_proxy(stack: ExitStack, tmp: Path, pki: Pki, upstream_port: int, *, wrap: Sequence[str] = (),
                      single_process: bool = False, timeout: float = 10,
                      ws_port: int | None = None) -> tuple[Child, int, int]:
    """nginx as a TLS reverse proxy: (master, port, mTLS port) — both ports served by the same worker;
    with ``ws_port``, ``/ws`` goes to that WebSocket upstream."""
    port, mtls_port = free_port(), free_port()
    ws_location = NGINX_WS_LOCATION.format(ws_port=ws_port) if ws_port is not None else ""
    body = NGINX_PROXY.format(port=port, mtls_port=mtls_port, upstream_port=upstream_port, cert=pki.cert_pem,
                              key=pki.key_pem, ca=pki.ca_pem, ws_location=ws_location)
    child = start_nginx(stack, tmp, "proxy", body, wrap=wrap, single_process=single_process)
    wait_for_port(port, child, timeout)
    wait_for_port(mtls_port, child, timeout)
    return child, port, mtls_port


# --- the gateway -----------------------------------------------------------------------


class UnknownSettings(Exception):
    """The gateway under test does not know a setting a phase needs (an older commit): the phase is skipped."""


@dataclass
class Gateway:
    """How to run the gateway: this checkout's, or ``--gateway-src DIR`` with this venv's Python."""

    src: Path | None
    known_settings: set[str] | None = None
    #: Another interpreter to run it with (a venv's ``python`` with the lock installed); None: this one.
    python: Path | None = None

    def command(self) -> list[str]:
        if self.python is not None:
            return [str(self.python), "-m", "trio_gw"]
        script = Path(sys.executable).parent / "trio-gw"
        if self.src is None and script.exists():
            return [str(script)]
        return [sys.executable, "-m", "trio_gw"]

    def env(self) -> dict[str, str] | None:
        if self.src is None:
            return None
        # The first entry wins over this venv's (editable) trio_gw, whose finder comes after sys.path.
        return {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(self.src), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def describe(self) -> str:
        src = self.src or ROOT
        commit = subprocess.run(["git", "-C", str(src), "log", "-1", "--format=%h %s"], capture_output=True,
                                text=True, check=False).stdout.strip()
        python = str(self.python or sys.executable)
        how = " ".join(self.command()) if self.src is None else f"PYTHONPATH={self.src} {python} -m trio_gw"
        version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True, check=False).stdout.strip()
        return f"{src} ({commit[:72] or 'not a git checkout'}), run as {how} (Python {version or '?'})"

    def load_known_settings(self, cwd: Path) -> None:
        """The setting names this gateway knows: the keys of ``trio-gw settings`` (resolved defaults, JSON)."""
        done = subprocess.run([*self.command(), "settings"], capture_output=True, text=True, env=self.env(),
                              cwd=cwd, timeout=GRACE, check=False)
        try:
            self.known_settings = set(json.loads(done.stdout))
        except ValueError:
            say(f"note: `trio-gw settings` gave no JSON ({done.stderr.strip()[-200:]!r}); "
                "every setting is passed as written")
            self.known_settings = None

    def check_settings(self, settings: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
        """``settings`` without the names this gateway does not know (said so).

        Raises:
            UnknownSettings: a ``required`` setting is unknown to this gateway.
        """
        kept, dropped = select_known_settings(settings, self.known_settings)
        missing = [k for k in required if k in dropped]
        if missing:
            raise UnknownSettings(f"this gateway does not know the setting(s) {', '.join(missing)}")
        if dropped:
            say(f"    note: this gateway does not know {', '.join(dropped)}; left out of its settings")
        return kept


def start_gateway(stack: ExitStack, tmp: Path, name: str, pki: Pki, upstream_port: int, gateway: Gateway, *,
                  certificates: int, timeout: float, extra: dict[str, Any] | None = None,
                  required: Sequence[str] = (), ws_port: int | None = None) -> tuple[Child, int]:
    """``trio-gw run`` with an ssl listener, a route to the upstream and ``certificates`` extra certificates
    (and, with ``ws_port``, the route ``/ws`` to that WebSocket upstream).

    ``extra`` settings are added; settings ``gateway`` does not know are left
    out (and said), unless they are ``required``.

    Raises:
        UnknownSettings: one of the ``required`` settings is unknown to ``gateway``.
    """
    prefix = tmp / f"gw-{name}"
    prefix.mkdir()
    declarative: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [{"name": "upstream", "url": f"http://127.0.0.1:{upstream_port}",
                      "routes": [{"name": "all", "paths": ["/"]}]}],
    }
    if ws_port is not None:
        declarative["services"].append({"name": "ws", "url": f"http://127.0.0.1:{ws_port}",
                                        "routes": [{"name": "ws", "paths": ["/ws"]}]})
    if certificates:
        declarative["certificates"] = [{"cert": cert, "key": key, "snis": [sni]}
                                       for sni, cert, key in pki.extra[:certificates]]
    (prefix / "kong.json").write_text(json.dumps(declarative))  # JSON is YAML, and faster to write
    settings = gateway.check_settings({
        "prefix": str(prefix),
        "proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl",
        "admin_listen": "off",
        "status_listen": "off",
        "database": "off",
        "declarative_config": str(prefix / "kong.json"),
        "ssl_cert": [str(pki.cert_pem)],
        "ssl_cert_key": [str(pki.key_pem)],
        "proxy_access_log": "off",
        "log_level": "error",
        **(extra or {}),
    }, required=["prefix", "proxy_listen", "declarative_config", "ssl_cert", "ssl_cert_key", *required])
    (prefix / "settings.yaml").write_text(json.dumps(settings, indent=1))
    child = spawn(stack, f"trio-gw ({name})", [*gateway.command(), "run", "-c", str(prefix / "settings.yaml")],
                  log=prefix / "stderr.log", env=gateway.env(), cwd=prefix)
    ready = prefix / "trio-gw.ready.json"
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if child.popen.poll() is not None:
            raise RuntimeError(f"trio-gw exited with {child.popen.returncode}:\n"
                               + (prefix / "stderr.log").read_text()[-3000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"trio-gw was not ready within {timeout:.0f} s (see {prefix / 'stderr.log'})")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    port = next(li["port"] for li in info["listeners"]["proxy"] if li["ssl"])
    if info["pid"] != child.pid:
        raise RuntimeError(f"ready file pid {info['pid']} is not the process started ({child.pid})")
    return child, port


# --- load generators (parent side) -----------------------------------------------------


def run_wrk(port: int, path: str, *, connections: int, duration: float, threads: int,
            openssl_conf: Path) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", "5s", f"https://127.0.0.1:{port}{path}"]
    env = {**os.environ, "OPENSSL_CONF": str(openssl_conf)}  # TLS 1.3 or no connection
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + GRACE, check=True, env=env).stdout
    parsed = parse_wrk(out)
    return {"tool": f"wrk ({threads} thread{'s' if threads > 1 else ''}, TLS 1.3 only)", **parsed}


def run_python_load(port: int, path: str, *, connections: int, duration: float, processes: int,
                    ca: Path) -> dict[str, Any]:
    """The built-in keep-alive load generator, in ``processes`` separate processes."""
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    cmds = [python_child("_load", {"port": port, "path": path, "connections": n, "duration": duration,
                                   "ca": str(ca)}) for n in per if n]
    results = _run_children(cmds, duration)
    return {
        "tool": f"python asyncio ({processes} process{'es' if processes > 1 else ''})",
        "requests": sum(r["requests"] for r in results), "elapsed_s": max(r["elapsed"] for r in results),
        **latency_figures(x for r in results for x in r["latencies_ms"]),
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
    }


def _run_children(cmds: list[list[str]], duration: float) -> list[dict[str, Any]]:
    """Run the child commands in parallel; each prints one JSON object."""
    with ExitStack() as stack:
        children = [spawn(stack, "load", cmd, stdout=subprocess.PIPE) for cmd in cmds]
        results = []
        for child in children:
            out, _ = child.popen.communicate(timeout=duration + GRACE)
            if child.popen.returncode != 0:
                raise RuntimeError(f"a load process failed ({child.popen.returncode})")
            results.append(json.loads(out))
        return results


def _client_phase(cmds: list[list[str]], budget_s: float,
                  server_pids: Callable[[], list[int]]) -> tuple[list[dict[str, Any]], float]:
    """Run client processes and return their results with the server CPU-seconds spent meanwhile."""
    cpu = cpu_seconds(server_pids())
    results = _run_children(cmds, budget_s)
    return results, cpu_seconds(server_pids()) - cpu


def _common_client_figures(results: list[dict[str, Any]], count_key: str, cpu: float) -> dict[str, Any]:
    count = sum(r[count_key] for r in results)
    return {**rate_figures(count, max(r["elapsed"] for r in results), cpu),
            "errors": sum(r["errors"] for r in results),
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
            "tls": next((r["tls"] for r in results if r.get("tls")), None)}


def run_handshakes(port: int, names: Sequence[str], *, duration: float, processes: int, ca: Path,
                   tmp: Path, server_pids: Callable[[], list[int]], once: bool = False,
                   client_cert: tuple[Path, Path] | None = None, confirm: bool = True) -> dict[str, Any]:
    """Full TLS handshakes/s (no resumption) from ``processes`` client processes, with p50/p99.

    With ``once`` every name is used exactly once (split between the processes)
    and the run ends then: the "first touch" rate, including any lazy work.
    With ``client_cert`` (chain, key) every client presents that certificate.
    With ``confirm`` a handshake ends when the server's first session ticket
    has arrived (see :func:`probe_ticket`), else when the client's side is done.
    """
    names_file = tmp / "sni-names.txt"
    names_file.write_text("\n".join(names))
    base = {"port": port, "names_file": str(names_file), "duration": duration, "ca": str(ca), "of": processes,
            "mode": "once" if once else "loop", "client_cert": [str(p) for p in client_cert] if client_cert else None,
            "confirm": confirm}
    cmds = [python_child("_handshakes", {**base, "index": i}) for i in range(processes)]
    results, cpu = _client_phase(cmds, duration if not once else max(duration, len(names) / 50), server_pids)
    return {**_common_client_figures(results, "handshakes", cpu),
            "handshake_end": TICKET_END if confirm else "client's Finished sent",
            "resumed": sum(r["resumed"] for r in results),  # must stay 0: these are full handshakes
            **latency_figures(x for r in results for x in r["latencies_ms"])}


def run_reconnects(port: int, path: str, *, duration: float, processes: int, ca: Path,
                   server_pids: Callable[[], list[int]]) -> dict[str, Any]:
    """Reconnects that resume the previous session, one ``Connection: close`` request each."""
    base = {"port": port, "path": path, "duration": duration, "ca": str(ca)}
    results, cpu = _client_phase([python_child("_resume", base) for _ in range(processes)], duration, server_pids)
    return {**_common_client_figures(results, "connections", cpu), **resumption_figures(results),
            "statuses": _merge_counts(r["statuses"] for r in results),
            **latency_figures(x for r in results for x in r["latencies_ms"]),
            **latency_figures((x for r in results for x in r["handshake_ms"]), "handshake")}


def _merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            merged[k] = merged.get(k, 0) + v
    return merged


def _rate_line(fig: dict[str, Any], unit: str) -> str:
    extra = f", resumed {fig['resumed_fraction'] * 100:.1f} %" if "resumed_fraction" in fig else ""
    error = f" first: {fig['first_error']}" if fig.get("first_error") else ""
    return (f"    {fig['per_s']:.0f} {unit}/s, p50 {fig['latency_p50_ms']:.2f} ms, p99 {fig['latency_p99_ms']:.2f} ms, "
            f"server CPU {fig['server_cpu_s']:.2f} s = {fig['per_cpu_s']:.0f} per CPU-second{extra} "
            f"(errors: {fig['errors']}{error})")


def probe_ticket(port: int, ca: Path, client_cert: tuple[Path, Path] | None = None) -> tuple[bool, str]:
    """Does the server send a session ticket right after a handshake (before any request)?

    OpenSSL-based servers do (nginx, trio-gw since its own TLS stream); older
    trio-gw commits (trio's ``SSLStream``) send it only with their first
    response.  When it does, the handshake clients time each handshake up to
    that ticket — the server's acceptance, after it has verified any client
    certificate; otherwise only up to the client's side of the handshake.
    """
    ctx = _client_context(str(ca), [str(p) for p in client_cert] if client_cert else None)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as sock:
            _wait_for_ticket(sock, TICKET_TIMEOUT)
    except TimeoutError:
        return False, f"no session ticket within {TICKET_TIMEOUT:.0f} s of a handshake: handshakes end when the " \
                      "client's side is done (the server's verdict is not waited for)"
    except (OSError, ssl.SSLError) as exc:
        return False, f"ticket probe failed ({exc!r}): handshakes end when the client's side is done"
    return True, "handshakes end at the server's first session ticket (sent once it has accepted the handshake)"


def probe_mtls(port: int, pki: Pki, path: str) -> dict[str, Any]:
    """One request with the client certificate (expect 200) and one without (expect a refusal)."""
    out: dict[str, Any] = {}
    for key, cert in (("with_certificate", (str(pki.client_cert_pem), str(pki.client_key_pem))),
                      ("without_certificate", None)):
        ctx = _client_context(str(pki.ca_pem), cert)
        try:
            out[key] = f"HTTP {_https_get_close(ctx, port, path, None).status}"
        except (OSError, ssl.SSLError, ValueError) as exc:
            out[key] = f"refused: {exc!r}"
    accepted = out["with_certificate"] == "HTTP 200"
    refused = not out["without_certificate"].startswith("HTTP 2")
    out["ok"] = accepted and refused
    return out


def measure_idle(port: int, pids_of: Callable[[], list[int]], *, connections: int, ca: Path, path: str,
                 stack: ExitStack) -> dict[str, Any]:
    """The server's RSS before any connection, and its growth per idle keep-alive TLS connection.

    ``process_rss_kib`` is read first, on the server as started (nothing has
    connected yet: this phase runs first).  Twenty warm-up connections then pay
    the one-time allocations (buffers, caches) before the per-connection
    baseline.  Opening the N connections (handshake + one request each, one
    after the other) is timed, with the server's CPU time.
    """
    time.sleep(0.5)  # let start-up work (threads, pre-warmed contexts) settle
    process_rss = rss_kib(pids_of())
    subprocess.run(python_child("_idle", {"port": port, "ca": str(ca), "n": 20, "path": path, "wait": False}),
                   capture_output=True, timeout=GRACE * 2, check=True)
    time.sleep(0.5)
    before = rss_kib(pids_of())
    cpu = cpu_seconds(pids_of())
    child = spawn(stack, "idle clients",
                  python_child("_idle", {"port": port, "ca": str(ca), "n": connections, "path": path, "wait": True}),
                  stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    assert child.popen.stdout is not None and child.popen.stdin is not None
    line = child.popen.stdout.readline().decode()
    if not line.startswith("ready "):
        raise RuntimeError(f"idle clients failed: {line!r}")
    cpu = cpu_seconds(pids_of()) - cpu
    opened = json.loads(line.split(" ", 1)[1])
    time.sleep(1.0)
    after = rss_kib(pids_of())
    child.popen.stdin.write(b"close\n")
    child.popen.stdin.flush()
    child.popen.wait(GRACE)
    n = opened["opened"]
    return {"process_rss_kib": process_rss, "connections": n, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (after - before) / n if n else float("nan"),
            **rate_figures(n, opened["elapsed"], cpu), "errors": opened["failed"],
            "first_error": opened["first_error"], **latency_figures(opened["latencies_ms"])}


# --- child modes (run in separate processes) -------------------------------------------


def _client_context(ca: str, client_cert: Sequence[str] | None = None) -> ssl.SSLContext:
    """TLS 1.3 only, server certificate verified; presents ``client_cert`` (chain, key) when given."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    if client_cert:
        ctx.load_cert_chain(client_cert[0], client_cert[1])
    return ctx


def _tls_of(sock: ssl.SSLSocket) -> str:
    cipher = sock.cipher()
    return f"{sock.version()} {cipher[0] if cipher else '?'}"


def _wait_for_ticket(sock: ssl.SSLSocket, timeout: float) -> None:
    """Read until the server's first TLS 1.3 session ticket has arrived.

    The server sends it only once it has processed the client's Finished —
    and so verified the client's certificate: it is the earliest sign that
    the handshake was accepted (a refusal arrives as an alert instead).
    """
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = sock.recv(1)
        except ssl.SSLWantReadError:
            data = None
        session = sock.session
        if session is not None and session.has_ticket:
            return
        if data is not None:
            raise ConnectionError("closed before a session ticket" if not data else "data before a session ticket")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no session ticket within {timeout:.0f} s")
        select.select([sock], [], [], remaining)


def _read_response(sock: ssl.SSLSocket) -> int:
    """Read one HTTP/1.1 response with a Content-Length; returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match is None:
        raise ValueError(f"HTTP {status} without Content-Length")
    while len(body) < int(match.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status


@dataclass
class Exchange:
    """What one :func:`_https_get_close` connection learnt, read before the socket closed."""

    status: int
    session: ssl.SSLSession | None  # with the ticket that arrived before the response, if any
    reused: bool  # the session offered was accepted (an abbreviated handshake)
    tls: str
    handshake_ms: float


def _https_get_close(ctx: ssl.SSLContext, port: int, path: str, session: ssl.SSLSession | None) -> Exchange:
    """One TCP + TLS connection offering ``session``, one ``Connection: close`` request."""
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session) as sock:
        handshake_ms = (time.perf_counter() - started) * 1000
        sock.sendall(request)
        status = _read_response(sock)
        new_session = sock.session
        return Exchange(status, new_session if new_session is not None and new_session.has_ticket else None,
                        bool(sock.session_reused), _tls_of(sock), handshake_ms)


def _child_load(port: int, path: str, connections: int, duration: float, ca: str) -> None:
    """Keep-alive HTTPS load: ``connections`` asyncio connections for ``duration`` seconds."""
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode()
    latencies: list[float] = []
    counters: dict[str, Any] = {"requests": 0, "errors": 0, "first_error": None}

    def failed(exc: BaseException | str) -> None:
        counters["errors"] += 1
        counters["first_error"] = counters["first_error"] or repr(exc)

    async def one(ctx: ssl.SSLContext, stop: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME)
        except OSError as exc:
            failed(exc)
            return
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if match is None:
                    failed("response without Content-Length")
                    return
                await reader.readexactly(int(match.group(1)))
                latencies.append((time.perf_counter() - started) * 1000)
                counters["requests"] += 1
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            failed(exc)
        finally:
            writer.close()

    async def main() -> float:
        ctx = _client_context(ca)
        started = time.monotonic()
        await asyncio.gather(*(one(ctx, started + duration) for _ in range(connections)))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    print(json.dumps({**counters, "elapsed": elapsed, "latencies_ms": thin(latencies)}))


def _child_handshakes(port: int, names_file: str, duration: float, ca: str, index: int, of: int,
                      mode: str, client_cert: Sequence[str] | None, confirm: bool) -> None:
    """Full handshakes in a loop (a fresh SSLSocket each time, no session offered), each timed.

    A handshake is timed from the TCP connect to the server's first session
    ticket (see :func:`_wait_for_ticket`) with ``confirm``, else to the end of
    the client's side of the handshake.
    """
    names = [n for n in Path(names_file).read_text().split("\n") if n]
    mine = names[index::of] if mode == "once" else names[index % len(names):] + names[: index % len(names)]
    ctx = _client_context(ca, client_cert)
    count = errors = resumed = 0
    first_error = tls = None
    latencies: list[float] = []
    started = time.monotonic()
    stop = started + duration
    i = 0
    while (i < len(mine)) if mode == "once" else (time.monotonic() < stop):
        name = mine[i % len(mine)]
        i += 1
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=name) as sock:
                if confirm:
                    _wait_for_ticket(sock, TICKET_TIMEOUT)
                latencies.append((time.perf_counter() - t0) * 1000)
                count += 1
                resumed += bool(sock.session_reused)
                tls = tls or _tls_of(sock)
        except (OSError, ssl.SSLError) as exc:  # TimeoutError and ConnectionError are OSErrors
            errors += 1
            first_error = first_error or repr(exc)
    print(json.dumps({"handshakes": count, "errors": errors, "resumed": resumed, "elapsed": time.monotonic() - started,
                      "first_error": first_error, "tls": tls, "latencies_ms": thin(latencies)}))


def _child_resume(port: int, path: str, duration: float, ca: str) -> None:
    """Reconnect in a loop, each connection offering the session (ticket) of the one before."""
    ctx = _client_context(ca)
    session: ssl.SSLSession | None = None
    counts = {"connections": 0, "errors": 0, "offered": 0, "resumed": 0, "could_resume": 0}
    statuses: dict[str, int] = {}
    first_error = tls = None
    latencies: list[float] = []
    handshakes: list[float] = []
    succeeded_once = False
    started = time.monotonic()
    while time.monotonic() < started + duration:
        t0 = time.perf_counter()
        offered = session is not None
        try:
            done = _https_get_close(ctx, port, path, session)
        except (OSError, ssl.SSLError, ValueError) as exc:
            counts["errors"] += 1
            first_error = first_error or repr(exc)
            session = None
            continue
        statuses[str(done.status)] = statuses.get(str(done.status), 0) + 1
        session = done.session
        if not 200 <= done.status < 300:  # the TLS part worked, the exchange did not: not a reconnect served
            counts["errors"] += 1
            first_error = first_error or f"HTTP {done.status}"
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        handshakes.append(done.handshake_ms)
        counts["connections"] += 1
        counts["could_resume"] += succeeded_once
        counts["offered"] += offered
        counts["resumed"] += done.reused
        succeeded_once = True
        tls = tls or done.tls
    print(json.dumps({**counts, "elapsed": time.monotonic() - started, "first_error": first_error, "tls": tls,
                      "statuses": statuses, "latencies_ms": thin(latencies), "handshake_ms": thin(handshakes)}))


def _child_idle(port: int, ca: str, n: int, path: str, wait: bool) -> None:
    """Open ``n`` TLS connections, one keep-alive request each; hold them until told to close."""
    _raise_fd_limit()
    ctx = _client_context(ca)
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode()
    held = []
    failed = 0
    first_error = None
    latencies: list[float] = []
    started = time.monotonic()
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                   server_hostname=SERVER_NAME)
            held.append(sock)
            sock.sendall(request)
            _read_response(sock)
            latencies.append((time.perf_counter() - t0) * 1000)
        except (OSError, ssl.SSLError, ValueError) as exc:
            failed += 1
            first_error = first_error or repr(exc)
    elapsed = time.monotonic() - started
    print("ready " + json.dumps({"opened": len(latencies), "failed": failed, "elapsed": elapsed,
                                 "first_error": first_error, "latencies_ms": latencies}), flush=True)
    if wait:
        sys.stdin.readline()
    for sock in held:
        sock.close()


CHILD_MODES = {"_echo", "_load", "_handshakes", "_resume", "_idle", "_ws_echo", "_ws"}


def _child_websocket(port: int, connections: int, duration: float, ca: str) -> None:
    """WebSocket round trips: ``connections`` wss:// connections to ``/ws``, each sending a short text
    message and waiting for its echo, again and again, for ``duration`` seconds."""
    import trio

    from trio_gw.testing.websocket import WebSocketClient

    latencies: list[float] = []
    counters: dict[str, Any] = {"messages": 0, "errors": 0, "first_error": None}

    async def one(ctx: ssl.SSLContext, stop: float) -> None:
        try:
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            client = await WebSocketClient.connect(trio.SSLStream(tcp, ctx, server_hostname=SERVER_NAME),
                                                   SERVER_NAME, "/ws")
            while time.monotonic() < stop:
                started = time.perf_counter()
                await client.send(WS_MESSAGE)
                if await client.receive() != WS_MESSAGE:
                    raise RuntimeError("the echo did not match")
                latencies.append((time.perf_counter() - started) * 1000)
                counters["messages"] += 1
        except Exception as exc:  # counted and reported, like the other load generators' failures
            counters["errors"] += 1
            counters["first_error"] = counters["first_error"] or repr(exc)

    async def main() -> float:
        ctx = _client_context(ca)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one, ctx, started + duration)
        return time.monotonic() - started

    elapsed = trio.run(main)
    print(json.dumps({**counters, "elapsed": elapsed, "latencies_ms": thin(latencies)}))


def run_websocket(port: int, *, duration: float, processes: int, connections: int, ca: Path,
                  server_pids: Callable[[], list[int]]) -> dict[str, Any]:
    """WebSocket echo round trips from ``processes`` client processes, the server's CPU time read around them."""
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    cmds = [python_child("_ws", {"port": port, "connections": n, "duration": duration, "ca": str(ca)})
            for n in per if n]
    cpu = cpu_seconds(server_pids())
    results = _run_children(cmds, duration)
    cpu = cpu_seconds(server_pids()) - cpu
    count = sum(r["messages"] for r in results)
    return {
        "messages": count, **rate_figures(count, max(r["elapsed"] for r in results), cpu),
        **latency_figures(x for r in results for x in r["latencies_ms"]),
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
    }


def child_main(argv: list[str]) -> None:
    mode, config = argv[0], json.loads(argv[1])
    if mode == "_echo":
        _serve_echo(config["port_file"])
    elif mode == "_load":
        _child_load(config["port"], config["path"], config["connections"], config["duration"], config["ca"])
    elif mode == "_handshakes":
        _child_handshakes(config["port"], config["names_file"], config["duration"], config["ca"], config["index"],
                          config["of"], config["mode"], config["client_cert"], config["confirm"])
    elif mode == "_resume":
        _child_resume(config["port"], config["path"], config["duration"], config["ca"])
    elif mode == "_idle":
        _child_idle(config["port"], config["ca"], config["n"], config["path"], config["wait"])
    elif mode == "_ws_echo":
        _serve_ws_echo(config["port_file"])
    elif mode == "_ws":
        _child_websocket(config["port"], config["connections"], config["duration"], config["ca"])
    else:
        raise RuntimeError(f"Unexpected child mode: {mode!r}")


# --- the benchmark ---------------------------------------------------------------------


@dataclass
class Endpoint:
    """A TLS port and the processes serving it (whose RSS and CPU time are read)."""

    port: int
    pids: Callable[[], list[int]]


@dataclass
class Target:
    """One proxy under test; ``open_mtls`` gives its mTLS endpoint (started on the stack), or why it cannot."""

    name: str
    main: Endpoint
    open_mtls: Callable[[ExitStack], Endpoint | str]


#: The unit each rate phase counts, for the progress lines.
UNITS = {"handshakes": "handshakes", "mtls": "handshakes", "resumption": "reconnects", "keepalive": "requests",
         "websocket": "messages"}


def measure(targets: Sequence[Target], args: argparse.Namespace, pki: Pki, tmp: Path) -> dict[str, dict[str, Any]]:
    """Every phase of every proxy, phase by phase, the proxies taking turns; results per proxy name.

    Every phase reads the server's CPU time before and after, so ``per_cpu_s``
    says what one fully used core would do.  The rate phases are measured
    ``--repeat`` times per proxy and the median run is reported (with every
    run's rate).  The proxies are measured in alternating rounds — A B, then
    B A, ... — rather than one after the other, so that a shared machine's
    slow drifts (whole phases 15-25 % faster or slower a few minutes apart)
    fall on all of them alike and their ratios stay comparable.
    """
    results: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    clients = f"{args.handshake_clients} client processes, {args.repeat} x {args.duration:g} s"
    if "idle" in args.phases:
        for target in targets:
            say(f"[{target.name}] idle: process RSS, then RSS per idle TLS connection ({args.idle_connections})")
            with ExitStack() as idle_stack:
                idle = results[target.name]["idle"] = measure_idle(
                    target.main.port, target.main.pids, connections=args.idle_connections, ca=pki.ca_pem,
                    path=args.path, stack=idle_stack)
            say(f"    process {idle['process_rss_kib'] / 1024:.1f} MiB before any connection; "
                f"{idle['kib_per_connection']:.1f} KiB per connection")
            say(_rate_line(idle, "connections opened"))
    what = {
        "handshakes": f"full TLS 1.3, {clients}",
        "mtls": f"full TLS 1.3 handshakes with a required, verified client certificate, {clients}",
        "resumption": f"reconnects resuming the previous session, one request each, {clients}",
        "keepalive": f"HTTPS, {args.connections} connections, {args.repeat} x {args.duration:g} s",
        "websocket": f"wss:// echo round trips of {len(WS_MESSAGE)}-byte text messages, {args.ws_connections} "
                     f"connections from {args.handshake_clients} client processes, {args.repeat} x {args.duration:g} s",
    }
    for phase in PHASES[1:]:
        if phase not in args.phases:
            continue
        with ExitStack() as phase_stack:
            rounds: dict[str, Callable[[], dict[str, Any]]] = {}
            extra: dict[str, dict[str, Any]] = {}
            for target in targets:
                say(f"[{target.name}] {phase}: {what[phase]}")
                prepared = _prepare(phase, target, args, pki, tmp, phase_stack)
                if isinstance(prepared, dict):  # skipped, and why
                    results[target.name][phase] = prepared
                else:
                    rounds[target.name], extra[target.name] = prepared
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rounds}
            for turn in range(args.repeat):
                for name in (list(rounds) if turn % 2 == 0 else list(reversed(rounds))):
                    runs[name].append(rounds[name]())
                    say(f"[{name}] {phase} {turn + 1}/{args.repeat}:" + _rate_line(runs[name][-1], UNITS[phase])[3:])
            for name, done in runs.items():
                results[name][phase] = {**median_run(done), **extra[name]}
    return results


def _prepare(phase: str, target: Target, args: argparse.Namespace, pki: Pki, tmp: Path, stack: ExitStack
             ) -> tuple[Callable[[], dict[str, Any]], dict[str, Any]] | dict[str, Any]:
    """One round of ``phase`` on ``target`` as a call, and figures to report with its median;
    or, when the phase cannot run on this target, the skip record saying why."""
    port, pids = target.main.port, target.main.pids
    if phase == "handshakes":
        confirm, note = probe_ticket(port, pki.ca_pem)
        say(f"    {note}")
        return (lambda: run_handshakes(port, [SERVER_NAME], duration=args.duration, processes=args.handshake_clients,
                                       ca=pki.ca_pem, tmp=tmp, server_pids=pids, confirm=confirm)), {}
    if phase == "mtls":
        endpoint = target.open_mtls(stack)
        if isinstance(endpoint, str):
            say(f"    skipped: {endpoint}")
            return {"skipped": True, "reason": endpoint}
        probe = probe_mtls(endpoint.port, pki, args.path)
        say(f"    probe: with the client certificate {probe['with_certificate']}; without: "
            f"{probe['without_certificate']}{'' if probe['ok'] else '  <-- NOT AS EXPECTED'}")
        client_cert = (pki.client_cert_pem, pki.client_key_pem)
        confirm, note = probe_ticket(endpoint.port, pki.ca_pem, client_cert)
        say(f"    {note}")
        return (lambda: run_handshakes(endpoint.port, [SERVER_NAME], duration=args.duration,
                                       processes=args.handshake_clients, ca=pki.ca_pem, tmp=tmp,
                                       server_pids=endpoint.pids, client_cert=client_cert, confirm=confirm)
                ), {"probe": probe}
    if phase == "resumption":
        return (lambda: run_reconnects(port, args.path, duration=args.duration, processes=args.handshake_clients,
                                       ca=pki.ca_pem, server_pids=pids)), {}
    if phase == "keepalive":
        _keepalive(port, args, pki, tmp, args.warmup)  # warm-up: pools, caches
        return (lambda: _measured_keepalive(port, pids, args, pki, tmp)), {}
    if phase == "websocket":
        probe = run_websocket(port, duration=1, processes=1, connections=1, ca=pki.ca_pem, server_pids=pids)
        if not probe["messages"]:
            reason = f"no WebSocket round trip went through ({probe['first_error']})"
            say(f"    skipped: {reason}")
            return {"skipped": True, "reason": reason}
        return (lambda: run_websocket(port, duration=args.duration, processes=args.handshake_clients,
                                      connections=args.ws_connections, ca=pki.ca_pem, server_pids=pids)), {}
    raise ValueError(f"unknown phase {phase!r}")


def _measured_keepalive(port: int, pids: Callable[[], list[int]], args: argparse.Namespace, pki: Pki,
                        tmp: Path) -> dict[str, Any]:
    cpu = cpu_seconds(pids())
    load = _keepalive(port, args, pki, tmp, args.duration)
    return {**load, **rate_figures(load["requests"], load["elapsed_s"], cpu_seconds(pids()) - cpu)}


def _keepalive(port: int, args: argparse.Namespace, pki: Pki, tmp: Path, duration: float) -> dict[str, Any]:
    if shutil.which("wrk") and not args.python_load:
        conf = tmp / "openssl-tls13.cnf"
        conf.write_text(OPENSSL_TLS13_ONLY)
        return run_wrk(port, args.path, connections=args.connections, duration=duration, threads=args.wrk_threads,
                       openssl_conf=conf)
    return run_python_load(port, args.path, connections=args.connections, duration=duration,
                           processes=args.load_processes, ca=pki.ca_pem)


def gateway_target(stack: ExitStack, args: argparse.Namespace, pki: Pki, tmp: Path, upstream_port: int,
                   gateway: Gateway, *, workers: int = 1, name: str = "trio-gw",
                   ws_port: int | None = None) -> tuple[Child, Target]:
    """The gateway under test (with ``workers`` worker processes), and a way to start its mTLS twin.

    With workers, every process of the node counts (the supervisor and its workers: RSS, CPU time).
    """
    cluster: dict[str, Any] = {}
    if workers != 1:
        cluster["workers"] = workers
    if args.reuseport:
        cluster["proxy_listen"] = "127.0.0.1:0, 127.0.0.1:0 ssl reuseport"
    gw, port = start_gateway(stack, tmp, f"{name}-main-{workers}", pki, upstream_port, gateway, certificates=0,
                             timeout=args.start_timeout, extra=cluster, required=list(cluster), ws_port=ws_port)

    def open_mtls(mtls_stack: ExitStack) -> Endpoint | str:
        try:
            twin = start_gateway(mtls_stack, tmp, f"{name}-mtls-{workers}", pki, upstream_port, gateway, certificates=0,
                                 timeout=args.start_timeout,
                                 required=["ssl_verify_client", "ssl_client_certificate", *cluster],
                                 extra={"ssl_verify_client": "on", "ssl_client_certificate": [str(pki.ca_pem)],
                                        **cluster})
        except UnknownSettings as exc:
            return str(exc)
        say(f"    second gateway with ssl_verify_client on: pid {twin[0].pid}, https on 127.0.0.1:{twin[1]}")
        return Endpoint(twin[1], lambda: process_tree(twin[0].pid))

    return gw, Target(name, Endpoint(port, lambda: process_tree(gw.pid)), open_mtls)


def measure_certificates(args: argparse.Namespace, pki: Pki, tmp: Path, upstream_port: int,
                         gateway: Gateway) -> dict[str, Any]:
    """Handshakes/s with ``--certificates`` extra certificates+SNIs vs one certificate.

    Two fresh gateways run side by side (one certificate; N more certificates
    with one SNI each) and are measured alternately ``--repeat`` times, so slow
    drifts of a shared machine hit both.  With N certificates the clients cycle
    over all N SNIs (every handshake selects another certificate), after one
    pass that uses each certificate once: contexts beyond the gateway's
    pre-warmed ones are built on first use, and that pass is reported as
    ``first_touch``.  The medians are compared, by rate and by server CPU.
    """
    n = args.certificates
    names = [sni for sni, _, _ in pki.extra[:n]]
    out: dict[str, Any] = {"certificates": n}
    with ExitStack() as stack:
        say("[trio-gw, 1 certificate] starting")
        one_gw, one_port = start_gateway(stack, tmp, "certs1", pki, upstream_port, gateway, certificates=0,
                                         timeout=args.start_timeout)
        say(f"[trio-gw, {n} certificates] starting")
        started = time.monotonic()
        many_gw, many_port = start_gateway(stack, tmp, f"certs{n}", pki, upstream_port, gateway, certificates=n,
                                           timeout=args.start_timeout + n * 0.05)
        out["startup_s"] = time.monotonic() - started
        out["rss_kib_at_start"] = rss_kib([many_gw.pid])
        say(f"    ready in {out['startup_s']:.1f} s, RSS {out['rss_kib_at_start'] / 1024:.0f} MiB")
        confirm, note = probe_ticket(one_port, pki.ca_pem)
        say(f"    {note}")
        common = {"duration": args.duration, "processes": args.handshake_clients, "ca": pki.ca_pem, "tmp": tmp,
                  "confirm": confirm}
        say(f"[trio-gw, {n} certificates] first use of every certificate (one pass over the {n} SNIs)")
        out["first_touch"] = run_handshakes(many_port, names, once=True, server_pids=lambda: [many_gw.pid],
                                            **common)
        say(_rate_line(out["first_touch"], "handshakes"))
        one_runs, cycling_runs = [], []
        for _ in range(args.repeat):
            say(f"[trio-gw, 1 certificate] handshakes, {args.duration:g} s")
            one_runs.append(run_handshakes(one_port, [SERVER_NAME], server_pids=lambda: [one_gw.pid], **common))
            say(_rate_line(one_runs[-1], "handshakes"))
            say(f"[trio-gw, {n} certificates] handshakes cycling over all {n} SNIs, {args.duration:g} s")
            cycling_runs.append(run_handshakes(many_port, names, server_pids=lambda: [many_gw.pid], **common))
            say(_rate_line(cycling_runs[-1], "handshakes"))
        out["rss_kib_after"] = rss_kib([many_gw.pid])
    one_fig, cycling = median_run(one_runs), median_run(cycling_runs)
    out.update(one_certificate=one_fig, cycling=cycling,
               ratio_cycling_vs_one=ratio(cycling["per_s"], one_fig["per_s"]),
               ratio_cpu_cycling_vs_one=ratio(cycling["per_cpu_s"], one_fig["per_cpu_s"]))
    return out


def say(text: str) -> None:
    print(text, flush=True)


def workers_summary(results: dict[str, dict[str, Any]], counts: list[int]) -> str:
    """N workers against the first count, keep-alive: requests per server CPU-second (no coordination cost)
    and requests per second (what the machine allows the load generator)."""
    base = results[f"trio-gw x{counts[0]}"].get("keepalive")
    lines = []
    for n in counts[1:]:
        run = results[f"trio-gw x{n}"].get("keepalive")
        if not base or not run or base.get("skipped") or run.get("skipped"):
            continue
        lines.append(f"{n} workers vs {counts[0]} (keep-alive): {run['per_cpu_s'] / base['per_cpu_s']:.2f}x the "
                     f"requests per server CPU-second, {run['per_s'] / base['per_s']:.2f}x the requests per second")
    return "\n".join(lines)


def certificates_table(certs: dict[str, Any]) -> str:
    """The --certificates comparison: handshakes with N extra certificates vs one."""
    n = certs["certificates"]

    def line(label: str, fig: dict[str, Any]) -> str:
        return (f"{label:44}{fig['per_s']:>9.0f}{fig['per_cpu_s']:>11.0f}{fig['latency_p50_ms']:>9.2f}"
                f"{fig['latency_p99_ms']:>9.2f}{fig['errors']:>8}")

    def fmt_ratio(r: float | None) -> str:
        return "-" if r is None else f"{r:.2f}x"

    return "\n".join([
        f"trio-gw, full TLS 1.3 handshakes with {n} extra certificates vs one:",
        f"{'':44}{'per s':>9}{'per CPU-s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
        line("  one certificate", certs["one_certificate"]),
        line(f"  {n} certificates, SNI cycling over all", certs["cycling"]),
        f"{'  ratio':44}{fmt_ratio(certs['ratio_cycling_vs_one']):>9}{fmt_ratio(certs['ratio_cpu_cycling_vs_one']):>11}",
        line(f"  {n} certificates, first use of each", certs["first_touch"]),
        f"  start-up with {n} certificates: {certs['startup_s']:.1f} s; "
        + f"RSS {certs['rss_kib_at_start'] / 1024:.0f} MiB at start, {certs['rss_kib_after'] / 1024:.0f} MiB after",
    ])


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str | None:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        text = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return text[0].split(" [")[0] if text else None  # "nginx version: nginx/1.22.1", "wrk debian/4.1.0-3"

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION, "kernel": platform.release(),
            "nginx": version(["nginx", "-v"]) if shutil.which("nginx") else None,
            "wrk": version(["wrk", "-v"]) if shutil.which("wrk") else None}


def header(report: dict[str, Any], args: argparse.Namespace, gateway: Gateway) -> str:
    """Load generators, durations, machine and gateway source, in a few lines."""
    m = report["machine"]
    keepalive = (f"{m['wrk']} ({args.wrk_threads} thread(s), TLS 1.3 only via OPENSSL_CONF)"
                 if m["wrk"] and not args.python_load else f"python asyncio ({args.load_processes} process(es))")
    return "\n".join([
        f"load generators: keepalive {keepalive}, {args.connections} connections; handshakes/mtls/resumption "
        f"{args.handshake_clients} Python ssl client processes (TLS 1.3 only); idle {args.idle_connections} "
        "connections",
        f"durations: {args.duration:g} s per measurement x {args.repeat} (median run), keep-alive warm-up "
        f"{args.warmup:g} s; phases: {','.join(args.phases) or '-'}; upstream: {args.upstream}, path {args.path}",
        f"machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, {m['openssl']}"
        + (f", {m['nginx']}" if m["nginx"] else ""),
        f"gateway: {gateway.describe()}",
        "PKI: ECDSA P-256 server and client certificates from a throw-away trustme CA",
    ])


@contextmanager
def temporary_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="trio-gw-bench-"))
    try:
        yield path
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each rate phase this many times, report the median run (idle is measured once: "
                        "memory freed by closed connections stays in the process, a second pass would measure reuse)")
    p.add_argument("--phases", type=lambda v: [x for x in v.split(",") if x], default=list(PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)} (default all; empty: only --certificates)")
    p.add_argument("--warmup", type=float, default=2, help="keep-alive warm-up seconds (default 2)")
    p.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    p.add_argument("--ws-connections", type=int, default=20,
                   help="WebSocket connections, shared by the --handshake-clients processes (default 20)")
    p.add_argument("--idle-connections", type=int, default=1000, help="idle TLS connections for RSS (default 1000)")
    p.add_argument("--handshake-clients", type=int, default=2,
                   help="client processes for handshakes, mtls and resumption (default 2)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--load-processes", type=int, default=1, help="python load generator processes (default 1)")
    p.add_argument("--python-load", action="store_true", help="use the built-in load generator even if wrk exists")
    p.add_argument("--path", default="/bytes/2", help="request path (default /bytes/2: a 2-byte body)")
    p.add_argument("--upstream", choices=("echo", "static"), default="echo",
                   help="echo: the built-in Python echo upstream; static: nginx returning 2 bytes (needs nginx)")
    p.add_argument("--with-nginx", action="store_true", help="also measure nginx (1 worker) as a TLS reverse proxy")
    p.add_argument("--certificates", type=int, default=0, metavar="N",
                   help="also measure handshakes/s with N extra certificates+SNIs in the gateway")
    p.add_argument("--baseline-src", type=Path, metavar="DIR",
                   help="also measure the gateway from DIR's source tree (a worktree of an older commit) as "
                        "'baseline', taking turns with the others in every phase: before and after in one run")
    p.add_argument("--gateway-src", type=Path, metavar="DIR",
                   help="run the gateway from DIR's source tree (PYTHONPATH=DIR python -m trio_gw), e.g. a "
                        "`git worktree add DIR <commit>`; the echo upstream and the clients stay this checkout's")
    p.add_argument("--python", type=Path, metavar="PYTHON",
                   help="run the gateway with this interpreter (a venv's python with the lock installed), e.g. "
                        "to compare builds of CPython")
    p.add_argument("--baseline-python", type=Path, metavar="PYTHON",
                   help="run the baseline with this interpreter; without --baseline-src the baseline is this "
                        "checkout's gateway on that interpreter")
    p.add_argument("--start-timeout", type=float, default=60, help="seconds the gateway may take to start")
    p.add_argument("--install", action="store_true", help="install wrk and nginx first (tools/install-system-tools.sh)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",") if x], default=[1],
                   help="comma-separated worker counts to measure trio-gw with (default 1), e.g. 1,2: each is "
                        "started in turn and compared per server CPU-second (supervisor and workers counted)")
    p.add_argument("--reuseport", action="store_true",
                   help="with several workers, a SO_REUSEPORT socket per worker instead of one shared socket")
    return p.parse_args(argv)


def _check_args(args: argparse.Namespace) -> str | None:
    """Why these arguments cannot run, or None."""
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        return f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}"
    if (args.with_nginx or args.upstream == "static") and not shutil.which("nginx"):
        return "nginx is not installed: run with --install, or drop --with-nginx / --upstream static"
    if args.gateway_src is not None:
        args.gateway_src = args.gateway_src.resolve()
        if not (args.gateway_src / "trio_gw" / "__init__.py").is_file():
            return f"--gateway-src {args.gateway_src}: no trio_gw/__init__.py there"
    if args.baseline_src is not None:
        args.baseline_src = args.baseline_src.resolve()
        if not (args.baseline_src / "trio_gw" / "__init__.py").is_file():
            return f"--baseline-src {args.baseline_src}: no trio_gw/__init__.py there"
    for flag, python in (("--python", args.python), ("--baseline-python", args.baseline_python)):
        if python is not None and not os.access(python, os.X_OK):
            return f"{flag} {python}: not an executable"
    if args.repeat < 1 or args.handshake_clients < 1:
        return "--repeat and --handshake-clients must be at least 1"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install:
        subprocess.run(["sh", str(ROOT / "tools" / "install-system-tools.sh"), "wrk", "nginx"], check=True)
    problem = _check_args(args)
    if problem:
        say(problem)
        return 2
    _raise_fd_limit()
    if "websocket" in args.phases and importlib.util.find_spec("wsproto") is None:
        say("note: the websocket phase needs wsproto (the test extras: make install-test); left out")
        args.phases.remove("websocket")
    gateway = Gateway(args.gateway_src, python=args.python)
    report: dict[str, Any] = {"machine": machine(), "options": {k: str(v) if isinstance(v, Path) else v
                                                                 for k, v in vars(args).items()}, "results": {}}
    with temporary_directory(args.keep_temp) as tmp, ExitStack() as stack:
        gateway.load_known_settings(tmp)
        report["gateway"] = gateway.describe()
        say(header(report, args, gateway))
        pki = make_pki(tmp, args.certificates)
        upstream_port = start_echo(stack, tmp) if args.upstream == "echo" else start_static_upstream(stack, tmp)
        say(f"upstream: {args.upstream} on 127.0.0.1:{upstream_port}")
        ws_port = start_ws_echo(stack, tmp) if "websocket" in args.phases else None
        if ws_port is not None:
            say(f"websocket upstream: the tests' wsproto echo on 127.0.0.1:{ws_port}")
        targets: list[Target] = []
        for workers in args.workers if args.phases else ():
            name = "trio-gw" if args.workers == [1] else f"trio-gw x{workers}"
            gw, target = gateway_target(stack, args, pki, tmp, upstream_port, gateway, workers=workers, name=name,
                                        ws_port=ws_port)
            say(f"{name}: pid {gw.pid}, {workers} worker process(es), https on 127.0.0.1:{target.main.port}")
            targets.append(target)
        if (args.baseline_src is not None or args.baseline_python is not None) and args.phases:
            baseline = Gateway(args.baseline_src, python=args.baseline_python)
            baseline.load_known_settings(tmp)
            say(f"baseline: {baseline.describe()}")
            gw, target = gateway_target(stack, args, pki, tmp, upstream_port, baseline, workers=args.workers[0],
                                        name="baseline", ws_port=ws_port)
            say(f"baseline: pid {gw.pid}, https on 127.0.0.1:{target.main.port}")
            targets.append(target)
        if args.with_nginx and args.phases:
            ngx, ngx_port, mtls_port = start_nginx_proxy(stack, tmp, pki, upstream_port, ws_port=ws_port)
            say(f"nginx: master pid {ngx.pid}, https on 127.0.0.1:{ngx_port}, mTLS on 127.0.0.1:{mtls_port}")
            pids = lambda: process_tree(ngx.pid)  # noqa: E731 - master + worker
            targets.append(Target("nginx", Endpoint(ngx_port, pids), lambda _stack: Endpoint(mtls_port, pids)))
        if targets:
            report["results"] = measure(targets, args, pki, tmp)
        certs = None
        if args.certificates:
            certs = measure_certificates(args, pki, tmp, upstream_port, gateway)
            report["certificates"] = certs
    say("")
    say(header(report, args, gateway))
    if report["results"]:
        say(table(report["results"]))
        if len(args.workers) > 1:
            say(workers_summary(report["results"], args.workers))
        for line in notes(report["results"]):
            say(f"note: {line}")
    if certs is not None:
        say(certificates_table(certs))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILD_MODES:
        child_main(sys.argv[1:])
    else:
        sys.exit(main())
