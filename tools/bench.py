#!/usr/bin/env python3
"""Benchmark trio-gw as a TLS reverse proxy, optionally side by side with nginx.

    python tools/bench.py                          trio-gw only, 10 s per measurement
    python tools/bench.py --with-nginx             the same for nginx (1 worker), plus ratios
    python tools/bench.py --certificates 10000     handshakes/s with 10,000 extra certificates vs one
    python tools/bench.py --install --with-nginx   first install wrk and nginx (Debian packages)
    python tools/bench.py --upstream static        upstream = nginx returning 2 bytes (measures the proxy alone)
    python tools/bench.py --repeat 3               each rate measured 3 times, the median run reported
    python tools/bench.py --phases handshakes      only some of: idle, handshakes, keepalive
    python tools/bench.py --json bench.json        also write every figure as JSON
    python tools/bench.py --workers 1,2            trio-gw with 1 worker process, then 2 (``workers``), compared

What runs (everything on 127.0.0.1, every process stopped at the end):

* the built-in echo upstream (``trio_gw.runtime.echo.EchoServer``) in its own
  process — or, with ``--upstream static``, an nginx ``return 200 "xx"`` server,
  so that the upstream is not the bottleneck;
* ``trio-gw run -c settings.yaml`` with a TLS listener serving an ECDSA P-256
  certificate from a throw-away trustme CA (nothing is written outside a
  temporary directory);
* with ``--with-nginx``: nginx with one worker, configured as a TLS reverse
  proxy to the same upstream with upstream keep-alive, on free ports found by
  binding and closing (nginx cannot listen on port 0).

What is measured, for each proxy:

* keep-alive HTTPS requests/s and latency p50/p99: ``wrk`` when installed,
  else a built-in asyncio load generator in a separate process;
* new TLS handshakes/s: full handshakes (no session resumption; TLS 1.3,
  certificate verified), Python ``ssl`` clients in separate processes;
* RSS per idle TLS connection: the server's VmRSS (``/proc/<pid>/status``,
  all processes of the server) before and after opening N TLS connections
  that each served one keep-alive request and then stay idle.

On a 2-core machine the load generator, the upstream and the proxy share the
cores, so the figures are for comparing, not absolute.  Nothing here is a test:
no figure is ever asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1.0
#: How long a child process may take beyond its planned duration before it is killed.
GRACE = 30 * SECONDS
#: Host name in the default certificate; the handshake clients send it as SNI.
SERVER_NAME = "bench.test"


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
          stdin: Any = subprocess.DEVNULL, log: Path | None = None, sig: int = signal.SIGTERM) -> Child:
    """Start ``cmd`` and register its stop on ``stack``."""
    stderr: Any = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        popen = subprocess.Popen(list(cmd), stdout=stdout, stdin=stdin, stderr=stderr)  # inherits our raised fd limit
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


def python_child(*args: str) -> list[str]:
    """The command to run one of this file's hidden child modes."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


# --- PKI -------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    extra: list[tuple[str, str, str]] = field(default_factory=list)  # (sni, cert pem, key pem)


def make_pki(tmp: Path, extra_certificates: int) -> Pki:
    """A throw-away ECDSA P-256 CA and server certificate (+ extra certificates with one SNI each)."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert(SERVER_NAME, "localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    pki = Pki(tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    ca.cert_pem.write_to_path(str(pki.ca_pem))
    pki.cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(pki.key_pem))
    for i in range(extra_certificates):
        name = f"cert-{i}.{SERVER_NAME}"
        issued = ca.issue_cert(name, key_type=trustme.KeyType.ECDSA)
        pki.extra.append((name, issued.cert_chain_pems[0].bytes().decode(), issued.private_key_pem.bytes().decode()))
    return pki


# --- upstreams -------------------------------------------------------------------------


def start_echo(stack: ExitStack, tmp: Path) -> int:
    """The built-in echo upstream in its own process; returns its port."""
    port_file = tmp / "echo.port"
    child = spawn(stack, "echo upstream", python_child("_echo", str(port_file)), log=tmp / "echo.log")
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if child.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the echo upstream did not start (see {tmp / 'echo.log'})")
        time.sleep(0.05)
    return int(port_file.read_text())


def _serve_echo(port_file: str) -> None:
    import collections

    import trio

    from trio_gw.runtime.echo import EchoServer, open_echo_listeners

    async def main() -> None:
        server = EchoServer()
        # EchoServer keeps every request it saw (for tests); a benchmark makes millions.
        server.requests = collections.deque(maxlen=16)  # type: ignore[assignment]
        listeners = await open_echo_listeners("127.0.0.1", 0)
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(listeners[0].socket.getsockname()[1]))
        tmp.replace(port_file)
        await server.serve(listeners)

    trio.run(main)


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
    }}
"""


def start_nginx(stack: ExitStack, tmp: Path, name: str, body: str) -> Child:
    """nginx with one worker and the given ``http {}`` body; returns the master process."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(NGINX_COMMON.format(tmp=tmp, name=name, body=body))
    cmd = [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / f"nginx-{name}.error.log")]
    return spawn(stack, f"nginx ({name})", cmd, log=tmp / f"nginx-{name}.log", sig=signal.SIGQUIT)


def start_static_upstream(stack: ExitStack, tmp: Path) -> int:
    port = free_port()
    child = start_nginx(stack, tmp, "static", NGINX_STATIC.format(port=port))
    wait_for_port(port, child, 10)
    return port


def start_nginx_proxy(stack: ExitStack, tmp: Path, pki: Pki, upstream_port: int) -> tuple[Child, int]:
    port = free_port()
    body = NGINX_PROXY.format(port=port, upstream_port=upstream_port, cert=pki.cert_pem, key=pki.key_pem)
    child = start_nginx(stack, tmp, "proxy", body)
    wait_for_port(port, child, 10)
    return child, port


# --- the gateway -----------------------------------------------------------------------


def gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "trio-gw"
    return [str(script)] if script.exists() else [sys.executable, "-m", "trio_gw"]


def start_gateway(stack: ExitStack, tmp: Path, name: str, pki: Pki, upstream_port: int, *,
                  certificates: int, timeout: float, workers: int = 1, reuseport: bool = False) -> tuple[Child, int]:
    """``trio-gw run`` with an ssl listener, a route to the upstream and ``certificates`` extra certificates."""
    prefix = tmp / f"gw-{name}"
    prefix.mkdir()
    declarative: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [{"name": "upstream", "url": f"http://127.0.0.1:{upstream_port}",
                      "routes": [{"name": "all", "paths": ["/"]}]}],
    }
    if certificates:
        declarative["certificates"] = [{"cert": cert, "key": key, "snis": [sni]}
                                       for sni, cert, key in pki.extra[:certificates]]
    (prefix / "kong.json").write_text(json.dumps(declarative))  # JSON is YAML, and faster to write
    settings = {
        "prefix": str(prefix),
        "proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl" + (" reuseport" if reuseport else ""),
        "admin_listen": "off",
        "status_listen": "off",
        "workers": workers,
        "database": "off",
        "declarative_config": str(prefix / "kong.json"),
        "ssl_cert": [str(pki.cert_pem)],
        "ssl_cert_key": [str(pki.key_pem)],
        "proxy_access_log": "off",
        "log_level": "error",
    }
    (prefix / "settings.yaml").write_text(json.dumps(settings, indent=1))
    child = spawn(stack, f"trio-gw ({name})", [*gateway_command(), "run", "-c", str(prefix / "settings.yaml")],
                  log=prefix / "stderr.log")
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


def parse_duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, path: str, *, connections: int, duration: float, threads: int) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", "5s", f"https://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + GRACE, check=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    elapsed = parse_duration_ms(total.group(2)) / 1000
    rps = int(total.group(1)) / elapsed
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "tool": f"wrk ({threads} thread{'s' if threads > 1 else ''})", "requests_per_s": rps, "elapsed_s": elapsed,
        "latency_p50_ms": parse_duration_ms(latency["50"]), "latency_p99_ms": parse_duration_ms(latency["99"]),
        "errors": (errors.group(1) if errors else "") + (f" non-2xx: {non2xx.group(1)}" if non2xx else ""),
    }


def run_python_load(port: int, path: str, *, connections: int, duration: float, processes: int,
                    ca: Path) -> dict[str, Any]:
    """The built-in keep-alive load generator, in ``processes`` separate processes."""
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    cmds = [python_child("_load", str(port), path, str(n), str(duration), str(ca)) for n in per if n]
    results = _run_children(cmds, duration)
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    requests = sum(r["requests"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "tool": f"python asyncio ({processes} process{'es' if processes > 1 else ''})",
        "requests_per_s": requests / elapsed, "elapsed_s": elapsed,
        "latency_p50_ms": _percentile(latencies, 50), "latency_p99_ms": _percentile(latencies, 99),
        "errors": str(sum(r["errors"] for r in results)),
    }


def _percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


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


def run_handshakes(port: int, names: Sequence[str], *, duration: float, processes: int, ca: Path,
                   tmp: Path, server_pids: Callable[[], list[int]], once: bool = False) -> dict[str, Any]:
    """Full TLS handshakes/s (no resumption) from ``processes`` client processes.

    With ``once`` every name is used exactly once (split between the processes)
    and the run ends then: the "first touch" rate, including any lazy work.
    The server's CPU time over the run gives ``handshakes_per_cpu_s``.
    """
    names_file = tmp / "sni-names.txt"
    names_file.write_text("\n".join(names))
    cmds = [python_child("_handshakes", str(port), str(names_file), str(duration), str(ca), str(i),
                         str(processes), "once" if once else "loop") for i in range(processes)]
    cpu = cpu_seconds(server_pids())
    results = _run_children(cmds, duration if not once else max(duration, len(names) / 50))
    cpu = cpu_seconds(server_pids()) - cpu
    count = sum(r["handshakes"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    errors = sum(r["errors"] for r in results)
    return {"handshakes_per_s": count / elapsed, "handshakes": count, "errors": errors,
            "server_cpu_s": cpu, "handshakes_per_cpu_s": count / cpu if cpu else float("nan"),
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None)}


def _hs_line(hs: dict[str, Any]) -> str:
    return (f"    {hs['handshakes_per_s']:.0f} handshakes/s, server CPU {hs['server_cpu_s']:.1f} s = "
            f"{hs['handshakes_per_cpu_s']:.0f} per CPU-second (errors: {hs['errors']})")


def measure_idle_rss(port: int, pids_of: Any, *, connections: int, ca: Path, path: str,
                     stack: ExitStack) -> dict[str, Any]:
    """RSS growth of the server per idle keep-alive TLS connection."""
    # warm-up: the first connections pay for one-time allocations (buffers, caches)
    subprocess.run(python_child("_idle", str(port), str(ca), "20", path, "--no-wait"),
                   capture_output=True, timeout=GRACE * 2, check=True)
    time.sleep(0.5)
    before = rss_kib(pids_of())
    child = spawn(stack, "idle clients", python_child("_idle", str(port), str(ca), str(connections), path),
                  stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    assert child.popen.stdout is not None and child.popen.stdin is not None
    line = child.popen.stdout.readline().decode().split()
    if not line or line[0] != "ready":
        raise RuntimeError(f"idle clients failed: {line}")
    opened, failed = int(line[1]), int(line[2])
    time.sleep(1.0)
    after = rss_kib(pids_of())
    child.popen.stdin.write(b"close\n")
    child.popen.stdin.flush()
    child.popen.wait(GRACE)
    return {"connections": opened, "failed": failed, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (after - before) / opened if opened else float("nan")}


# --- child modes (run in separate processes) -------------------------------------------


def _client_context(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _child_load(port: int, path: str, connections: int, duration: float, ca: str) -> None:
    """Keep-alive HTTPS load: ``connections`` asyncio connections for ``duration`` seconds."""
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode()
    latencies: list[float] = []
    counters = {"requests": 0, "errors": 0}

    async def one(ctx: ssl.SSLContext, stop: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME)
        except OSError:
            counters["errors"] += 1
            return
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if match is None:
                    counters["errors"] += 1
                    return
                await reader.readexactly(int(match.group(1)))
                latencies.append((time.perf_counter() - started) * 1000)
                counters["requests"] += 1
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            counters["errors"] += 1
        finally:
            writer.close()

    async def main() -> float:
        ctx = _client_context(ca)
        started = time.monotonic()
        await asyncio.gather(*(one(ctx, started + duration) for _ in range(connections)))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    print(json.dumps({**counters, "elapsed": elapsed, "latencies_ms": latencies[::max(1, len(latencies) // 20000)]}))


def _child_handshakes(port: int, names_file: str, duration: float, ca: str, index: int, of: int,
                      mode: str) -> None:
    """Full handshakes in a loop (a fresh SSLSocket each time, no session reuse)."""
    names = [n for n in Path(names_file).read_text().split("\n") if n]
    mine = names[index::of] if mode == "once" else names[index % len(names):] + names[: index % len(names)]
    ctx = _client_context(ca)
    count = errors = 0
    first_error = None
    started = time.monotonic()
    stop = started + duration
    i = 0
    while (i < len(mine)) if mode == "once" else (time.monotonic() < stop):
        name = mine[i % len(mine)]
        i += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
                    ctx.wrap_socket(sock, server_hostname=name):
                count += 1
        except (OSError, ssl.SSLError) as exc:
            errors += 1
            first_error = first_error or repr(exc)
    print(json.dumps({"handshakes": count, "errors": errors, "elapsed": time.monotonic() - started,
                      "first_error": first_error}))


def _child_idle(port: int, ca: str, n: int, path: str, wait: bool) -> None:
    """Open ``n`` TLS connections, one keep-alive request each; hold them until told to close."""
    _raise_fd_limit()
    ctx = _client_context(ca)
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode()
    held = []
    failed = 0
    for _ in range(n):
        try:
            sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                   server_hostname=SERVER_NAME)
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                body += sock.recv(65536)
            held.append(sock)
        except (OSError, ssl.SSLError, AttributeError):
            failed += 1
    print(f"ready {len(held)} {failed}", flush=True)
    if wait:
        sys.stdin.readline()
    for sock in held:
        sock.close()


CHILD_MODES = {"_echo", "_load", "_handshakes", "_idle"}


def child_main(argv: list[str]) -> None:
    mode, *rest = argv
    if mode == "_echo":
        _serve_echo(rest[0])
    elif mode == "_load":
        _child_load(int(rest[0]), rest[1], int(rest[2]), float(rest[3]), rest[4])
    elif mode == "_handshakes":
        _child_handshakes(int(rest[0]), rest[1], float(rest[2]), rest[3], int(rest[4]), int(rest[5]), rest[6])
    elif mode == "_idle":
        _child_idle(int(rest[0]), rest[1], int(rest[2]), rest[3], wait="--no-wait" not in rest)
    else:
        raise RuntimeError(f"Unexpected child mode: {mode!r}")


# --- the benchmark ---------------------------------------------------------------------


@dataclass
class Target:
    """One proxy under test."""

    name: str
    port: int
    pids: Any  # () -> list[int]


PHASES = ("idle", "handshakes", "keepalive")


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (a real run, so its other figures belong together), plus all samples."""
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["samples"] = [r[key] for r in runs]
    return chosen


def measure(target: Target, args: argparse.Namespace, pki: Pki, tmp: Path, stack: ExitStack) -> dict[str, Any]:
    """Every measurement of one proxy, each bounded and reported as it completes.

    Besides the rates, the server's own CPU time during each phase is recorded,
    so ``*_per_cpu_s`` says what one fully used core would do: on a small
    machine the clients and the upstream compete with the server for the cores.
    Rates are measured ``--repeat`` times and the median run is reported.
    """
    result: dict[str, Any] = {}
    if "idle" in args.phases:
        say(f"[{target.name}] RSS per idle TLS connection ({args.idle_connections} connections)")
        result["idle"] = measure_idle_rss(target.port, target.pids, connections=args.idle_connections,
                                          ca=pki.ca_pem, path=args.path, stack=stack)
        say(f"    {result['idle']['kib_per_connection']:.1f} KiB per connection")
    if "handshakes" in args.phases:
        say(f"[{target.name}] new TLS handshakes, {args.handshake_clients} client processes, "
            f"{args.repeat} x {args.duration:.0f} s")
        runs = []
        for _ in range(args.repeat):
            hs = run_handshakes(target.port, [SERVER_NAME], duration=args.duration,
                                processes=args.handshake_clients, ca=pki.ca_pem, tmp=tmp, server_pids=target.pids)
            say(_hs_line(hs))
            runs.append(hs)
        result["handshakes"] = _median_run(runs, "handshakes_per_s")
    if "keepalive" in args.phases:
        say(f"[{target.name}] keep-alive HTTPS, {args.connections} connections, {args.repeat} x {args.duration:.0f} s")
        _keepalive(target.port, args, pki, args.warmup)  # warm-up: pools, caches
        runs = []
        for _ in range(args.repeat):
            cpu = cpu_seconds(target.pids())
            load = _keepalive(target.port, args, pki, args.duration)
            load["server_cpu_s"] = cpu_seconds(target.pids()) - cpu
            load["requests_per_cpu_s"] = (load["requests_per_s"] * load["elapsed_s"] / load["server_cpu_s"]
                                          if load["server_cpu_s"] else float("nan"))
            say(f"    {load['requests_per_s']:.0f} req/s, p50 {load['latency_p50_ms']:.2f} ms, "
                f"p99 {load['latency_p99_ms']:.2f} ms, server CPU {load['server_cpu_s']:.1f} s = "
                f"{load['requests_per_cpu_s']:.0f} req per CPU-second ({load['tool']}, errors: {load['errors'] or 0})")
            runs.append(load)
        result["keepalive"] = _median_run(runs, "requests_per_s")
    return result


def _keepalive(port: int, args: argparse.Namespace, pki: Pki, duration: float) -> dict[str, Any]:
    if shutil.which("wrk") and not args.python_load:
        return run_wrk(port, args.path, connections=args.connections, duration=duration, threads=args.wrk_threads)
    return run_python_load(port, args.path, connections=args.connections, duration=duration,
                           processes=args.load_processes, ca=pki.ca_pem)


def measure_certificates(args: argparse.Namespace, pki: Pki, tmp: Path, upstream_port: int) -> dict[str, Any]:
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
        one_gw, one_port = start_gateway(stack, tmp, "certs1", pki, upstream_port, certificates=0,
                                         timeout=args.start_timeout)
        say(f"[trio-gw, {n} certificates] starting")
        started = time.monotonic()
        many_gw, many_port = start_gateway(stack, tmp, f"certs{n}", pki, upstream_port, certificates=n,
                                           timeout=args.start_timeout + n * 0.05)
        out["startup_s"] = time.monotonic() - started
        out["rss_kib_at_start"] = rss_kib([many_gw.pid])
        say(f"    ready in {out['startup_s']:.1f} s, RSS {out['rss_kib_at_start'] / 1024:.0f} MiB")
        common = {"duration": args.duration, "processes": args.handshake_clients, "ca": pki.ca_pem, "tmp": tmp}
        say(f"[trio-gw, {n} certificates] first use of every certificate (one pass over the {n} SNIs)")
        out["first_touch"] = run_handshakes(many_port, names, once=True, server_pids=lambda: [many_gw.pid],
                                            **common)
        say(_hs_line(out["first_touch"]))
        one_runs, cycling_runs = [], []
        for _ in range(args.repeat):
            say(f"[trio-gw, 1 certificate] handshakes, {args.duration:.0f} s")
            one_runs.append(run_handshakes(one_port, [SERVER_NAME], server_pids=lambda: [one_gw.pid], **common))
            say(_hs_line(one_runs[-1]))
            say(f"[trio-gw, {n} certificates] handshakes cycling over all {n} SNIs, {args.duration:.0f} s")
            cycling_runs.append(run_handshakes(many_port, names, server_pids=lambda: [many_gw.pid], **common))
            say(_hs_line(cycling_runs[-1]))
        out["rss_kib_after"] = rss_kib([many_gw.pid])
    one = _median_run(one_runs, "handshakes_per_s")
    cycling = _median_run(cycling_runs, "handshakes_per_s")
    out.update(one_certificate=one, cycling=cycling,
               ratio_cycling_vs_one=cycling["handshakes_per_s"] / one["handshakes_per_s"],
               ratio_cpu_cycling_vs_one=cycling["handshakes_per_cpu_s"] / one["handshakes_per_cpu_s"])
    return out


def say(text: str) -> None:
    print(text, flush=True)


def table(results: dict[str, dict[str, Any]], certs: dict[str, Any] | None) -> str:
    """Side-by-side figures (trio-gw, nginx, ratio trio-gw/nginx)."""
    rows: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
        ("keep-alive HTTPS req/s", lambda r: r["keepalive"]["requests_per_s"], "{:.0f}"),
        ("  per server CPU-second", lambda r: r["keepalive"]["requests_per_cpu_s"], "{:.0f}"),
        ("latency p50 (ms)", lambda r: r["keepalive"]["latency_p50_ms"], "{:.2f}"),
        ("latency p99 (ms)", lambda r: r["keepalive"]["latency_p99_ms"], "{:.2f}"),
        ("new TLS handshakes/s", lambda r: r["handshakes"]["handshakes_per_s"], "{:.0f}"),
        ("  per server CPU-second", lambda r: r["handshakes"]["handshakes_per_cpu_s"], "{:.0f}"),
        ("RSS per idle TLS conn (KiB)", lambda r: r["idle"]["kib_per_connection"], "{:.1f}"),
    ]
    names = list(results)
    if not names:
        return _certificates_table(certs) if certs is not None else ""
    header = f"{'':30}" + "".join(f"{n:>14}" for n in names) + (f"{'ratio':>10}" if len(names) == 2 else "")
    lines = [header, "-" * len(header)]
    for label, get, fmt in rows:
        try:
            values = [get(results[n]) for n in names]
        except KeyError:
            continue  # phase not run
        line = f"{label:30}" + "".join(f"{fmt.format(v):>14}" for v in values)
        if len(values) == 2 and values[1]:
            line += f"{values[0] / values[1]:>9.2f}x"
        lines.append(line)
    if certs is not None:
        lines += ["", _certificates_table(certs)]
    return "\n".join(lines)


def workers_summary(results: dict[str, dict[str, Any]], counts: list[int]) -> str:
    """N workers against the first count: requests per server CPU-second (no coordination cost) and in total."""
    base = results[f"trio-gw x{counts[0]}"]["keepalive"]
    lines = []
    for n in counts[1:]:
        run = results[f"trio-gw x{n}"]["keepalive"]
        lines.append(f"{n} workers vs {counts[0]}: {run['requests_per_cpu_s'] / base['requests_per_cpu_s']:.2f}x the "
                     f"requests per server CPU-second, {run['requests_per_s'] / base['requests_per_s']:.2f}x the "
                     f"requests per second")
    return "\n".join(lines)


def _certificates_table(certs: dict[str, Any]) -> str:
    """The --certificates comparison: handshakes/s with N extra certificates vs one."""
    n = certs["certificates"]
    one, cycling, first = certs["one_certificate"], certs["cycling"], certs["first_touch"]
    lines = [
        f"trio-gw, new TLS handshakes with {n} extra certificates vs one:   per s     per CPU-s",
        f"{'  one certificate':56}{one['handshakes_per_s']:>9.0f}{one['handshakes_per_cpu_s']:>12.0f}",
        f"{f'  {n} certificates, SNI cycling over all':56}{cycling['handshakes_per_s']:>9.0f}"
        + f"{cycling['handshakes_per_cpu_s']:>12.0f}",
        f"{'  ratio':56}{certs['ratio_cycling_vs_one']:>8.2f}x{certs['ratio_cpu_cycling_vs_one']:>11.2f}x",
        f"{f'  {n} certificates, first use of each':56}{first['handshakes_per_s']:>9.0f}"
        + f"{first['handshakes_per_cpu_s']:>12.0f}",
        f"  start-up with {n} certificates: {certs['startup_s']:.1f} s; "
        + f"RSS {certs['rss_kib_at_start'] / 1024:.0f} MiB at start, {certs['rss_kib_after'] / 1024:.0f} MiB after",
    ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stderr.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION, "kernel": platform.release(),
            "nginx": version(["nginx", "-v"]) if shutil.which("nginx") else None,
            "wrk": shutil.which("wrk")}


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
    p.add_argument("--repeat", type=int, default=1, help="measure each rate this many times, report the median")
    p.add_argument("--phases", type=lambda v: [x for x in v.split(",") if x], default=list(PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)} (default all; empty: only --certificates)")
    p.add_argument("--warmup", type=float, default=2, help="keep-alive warm-up seconds (default 2)")
    p.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    p.add_argument("--idle-connections", type=int, default=1000, help="idle TLS connections for RSS (default 1000)")
    p.add_argument("--handshake-clients", type=int, default=2, help="handshake client processes (default 2)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--load-processes", type=int, default=1, help="python load generator processes (default 1)")
    p.add_argument("--python-load", action="store_true", help="use the built-in load generator even if wrk exists")
    p.add_argument("--path", default="/bytes/2", help="request path (default /bytes/2: a 2-byte body)")
    p.add_argument("--upstream", choices=("echo", "static"), default="echo",
                   help="echo: the built-in Python echo upstream; static: nginx returning 2 bytes (needs nginx)")
    p.add_argument("--with-nginx", action="store_true", help="also measure nginx (1 worker) as a TLS reverse proxy")
    p.add_argument("--certificates", type=int, default=0, metavar="N",
                   help="also measure handshakes/s with N extra certificates+SNIs in the gateway")
    p.add_argument("--start-timeout", type=float, default=60, help="seconds the gateway may take to start")
    p.add_argument("--install", action="store_true", help="install wrk and nginx first (tools/install-system-tools.sh)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",") if x], default=[1],
                   help="comma-separated worker counts to measure trio-gw with (default 1); e.g. 1,2")
    p.add_argument("--reuseport", action="store_true",
                   help="with several workers, a SO_REUSEPORT socket per worker instead of one shared socket")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install:
        subprocess.run(["sh", str(ROOT / "tools" / "install-system-tools.sh"), "wrk", "nginx"], check=True)
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        say(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
        return 2
    if (args.with_nginx or args.upstream == "static") and not shutil.which("nginx"):
        say("nginx is not installed: run with --install, or drop --with-nginx / --upstream static")
        return 2
    _raise_fd_limit()
    report: dict[str, Any] = {"machine": machine(), "options": vars(args), "results": {}}
    with temporary_directory(args.keep_temp) as tmp, ExitStack() as stack:
        say(f"PKI: ECDSA P-256 (trustme){f', {args.certificates} extra certificates' if args.certificates else ''}")
        pki = make_pki(tmp, args.certificates)
        upstream_port = start_echo(stack, tmp) if args.upstream == "echo" else start_static_upstream(stack, tmp)
        say(f"upstream: {args.upstream} on 127.0.0.1:{upstream_port}")
        for workers in args.workers if args.phases else ():
            name = "trio-gw" if args.workers == [1] else f"trio-gw x{workers}"
            gw, gw_port = start_gateway(stack, tmp, f"w{workers}", pki, upstream_port, certificates=0,
                                        timeout=args.start_timeout, workers=workers, reuseport=args.reuseport)
            say(f"{name}: pid {gw.pid}, {workers} worker process(es), https on 127.0.0.1:{gw_port}")
            # every process of the node counts: the supervisor and its workers
            report["results"][name] = measure(Target(name, gw_port, lambda gw=gw: process_tree(gw.pid)), args, pki,
                                              tmp, stack)
            gw.stop()
        if args.with_nginx and args.phases:
            ngx, ngx_port = start_nginx_proxy(stack, tmp, pki, upstream_port)
            say(f"nginx: master pid {ngx.pid}, https on 127.0.0.1:{ngx_port}")
            report["results"]["nginx"] = measure(
                Target("nginx", ngx_port, lambda: process_tree(ngx.pid)), args, pki, tmp, stack)
            ngx.stop(signal.SIGQUIT)
        certs = None
        if args.certificates:
            certs = measure_certificates(args, pki, tmp, upstream_port)
            report["certificates"] = certs
    say("")
    say(f"machine: {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), Python "
        f"{report['machine']['python']}, {report['machine']['openssl']}; upstream: {args.upstream}, path {args.path}")
    if report["results"] or certs:
        say(table(report["results"], certs))
    if len(args.workers) > 1 and "keepalive" in args.phases:
        say(workers_summary(report["results"], args.workers))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILD_MODES:
        child_main(sys.argv[1:])
    else:
        sys.exit(main())
