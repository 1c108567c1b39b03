"""Run one step: a real client (curl, openssl, a raw socket) or a gateway command.

Theory of operation: every step kind is a function ``(step, env) -> Outcome``
found in :data:`RUNNERS`.  Arguments are rendered with the scenario's
placeholders just before the step runs (the proxy ports exist only once the
gateway is up).  Every subprocess runs in its own process group with a
deadline — on expiry the group is killed and the outcome says so — and every
socket has a timeout, so no step can hang the run.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec.harness.gateway import READY_FILE, Gateway, clean_environ, gateway_command
from spec.harness.outcome import (
    Outcome,
    parse_curl_tls,
    parse_heads,
    parse_openssl_tls,
    parse_raw_response,
)
from spec.harness.placeholders import Context
from spec.harness.upstreams import Upstream

DEFAULT_STEP_TIMEOUT = 10.0
DEFAULT_RAW_READ_TIMEOUT = 3.0


class StepError(Exception):
    """The step could not be carried out as written (not an expectation failure)."""


@dataclass
class StepEnv:
    """What a step can reach."""

    context: Context
    directory: Path
    settings_path: Path
    prefix: Path
    gateway: Gateway | None
    upstreams: dict[str, Upstream]
    gateway_args: list[str] = field(default_factory=list)
    gateway_env: dict[str, str] = field(default_factory=dict)
    index: int = 0  # the step's number, for file names
    verbose: Callable[[str], None] = lambda _message: None
    #: The scenario's private PostgreSQL (``private_postgres``), a ``trio_gw.testing.postgres.PostgresServer``.
    postgres: Any = None
    #: Starts the gateway (or the step's node) again; the runner's, as the runner owns the processes.
    start_gateway: Callable[[dict[str, Any]], Outcome] | None = None


def run_process(command: Sequence[str], timeout: float, stdin: bytes = b"", cwd: Path | None = None,
                env: dict[str, str] | None = None) -> Outcome:
    """Run a command with a deadline; a timeout kills its process group and sets exit code -9."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=cwd, env={**clean_environ(), **(env or {})}, start_new_session=True,
    )
    note = ""
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=5)
        note = f"killed after the step timeout of {timeout:g}s"
    return Outcome(
        command=list(command), exit_code=proc.returncode, stdout=out, stderr=err.decode(errors="replace"),
        body=out, duration=time.monotonic() - started, note=note,
    )


def _args(step: dict[str, Any], env: StepEnv) -> list[str]:
    return [env.context.render(a) for a in step.get("args", [])]


def _env(step: dict[str, Any], env: StepEnv) -> dict[str, str]:
    return {k: env.context.render(v) for k, v in step.get("env", {}).items()}


def _stdin(step: dict[str, Any], env: StepEnv) -> bytes:
    return env.context.render(step.get("stdin", "")).encode()


def _timeout(step: dict[str, Any]) -> float:
    return float(step.get("timeout", DEFAULT_STEP_TIMEOUT))


def run_curl(step: dict[str, Any], env: StepEnv) -> Outcome:
    """``curl -sS --max-time T -D <dump> ARGS``: status and headers come from the dump."""
    dump = env.directory / f"step{env.index}.headers"
    timeout = _timeout(step)
    command = ["curl", "-sS", "--max-time", f"{timeout:g}", "-D", str(dump), *_args(step, env)]
    outcome = run_process(command, timeout + 2, _stdin(step, env), env.directory, _env(step, env))
    text = dump.read_text(errors="replace") if dump.exists() else ""
    outcome.responses, outcome.interim = parse_heads(text)
    outcome.tls = parse_curl_tls(outcome.stderr)
    return outcome


def run_openssl(step: dict[str, Any], env: StepEnv) -> Outcome:
    """``openssl ARGS`` with the step's stdin (closed after it, so s_client exits)."""
    command = ["openssl", *_args(step, env)]
    outcome = run_process(command, _timeout(step), _stdin(step, env), env.directory, _env(step, env))
    outcome.tls = parse_openssl_tls(outcome.stdout_text)
    return outcome


def run_cli(step: dict[str, Any], env: StepEnv) -> Outcome:
    """``trio-gw ARGS``."""
    command = [*gateway_command(), *_args(step, env)]
    return run_process(command, _timeout(step), _stdin(step, env), env.directory, _env(step, env))


def run_config_check(step: dict[str, Any], env: StepEnv) -> Outcome:
    """``trio-gw config check FILE`` (FILE defaults to the scenario's declarative file)."""
    path = env.context.render(step.get("file", "{{declarative}}"))
    command = [*gateway_command(), "config", "check", path, *_args(step, env)]
    return run_process(command, _timeout(step), b"", env.directory, _env(step, env))


def run_gateway_start_fails(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Start a gateway with the scenario's settings and wait for it to exit by itself.

    If it becomes ready instead (or is still running at the deadline) it is
    stopped, and the outcome's note says so; ``exit_code`` is then ``None``.
    """
    gateway = Gateway(env.directory, env.settings_path, [*env.gateway_args, *_args(step, env)],
                      {**env.gateway_env, **_env(step, env)}, name=f"step{env.index}-gateway")
    started = time.monotonic()
    deadline = started + _timeout(step)
    gateway.spawn()
    outcome = Outcome(command=gateway.command)
    try:
        while time.monotonic() < deadline:
            if gateway.wait_exit(0.05) is not None:
                break
            if (env.prefix / READY_FILE).exists():
                outcome.note = "the gateway started (wrote its ready file) instead of failing"
                break
        else:
            outcome.note = f"the gateway neither exited nor became ready within {_timeout(step):g}s"
    finally:
        if gateway.is_running():
            gateway.stop()
            outcome.exit_code = None
        else:
            outcome.exit_code = gateway.exit_code
    outcome.duration = time.monotonic() - started
    out, err = gateway.output()
    outcome.stdout, outcome.body, outcome.stderr = out.encode(), out.encode(), err
    return outcome


def run_gateway_stop(step: dict[str, Any], env: StepEnv) -> Outcome:
    """SIGTERM the scenario's gateway and wait for it; output is the gateway's whole output."""
    if env.gateway is None:
        raise StepError("no gateway is running")
    started = time.monotonic()
    code = env.gateway.stop(_timeout(step))
    out, err = env.gateway.output()
    pid = env.gateway.process.pid if env.gateway.process is not None else 0
    return Outcome(command=["kill", "-TERM", str(pid)], exit_code=code,
                   stdout=out.encode(), body=out.encode(), stderr=err, duration=time.monotonic() - started)


def run_sleep(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Wait ``ms`` milliseconds (capped by the step timeout)."""
    seconds = min(step.get("ms", 0) / 1000, _timeout(step))
    time.sleep(seconds)
    return Outcome(command=["sleep", f"{seconds:g}"], exit_code=0, duration=seconds)


def run_gateway_start(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Start the scenario's gateway (or ``node``) after a ``gateway_stop``, or a node with ``start = false``."""
    if env.start_gateway is None:
        raise StepError("gateway_start needs the scenario runner")
    return env.start_gateway(step)


def run_signal(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Send ``signal`` to ``pid`` (the gateway's, or a worker's captured from ``/status``)."""
    pid = int(env.context.render(step["pid"]))
    signum = getattr(signal, f"SIG{step['signal']}")
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return Outcome(command=["kill", f"-{step['signal']}", str(pid)], exit_code=1, stderr="no such process")
    return Outcome(command=["kill", f"-{step['signal']}", str(pid)], exit_code=0)


def run_write_file(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Write ``text`` (placeholders rendered) to ``file``, atomically: a reload reads the old or the new file."""
    path = Path(env.context.render(step["file"]))
    text = env.context.render_yaml_text(step["text"]) if path.suffix in (".yaml", ".yml") else \
        env.context.render(step["text"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return Outcome(command=["write", str(path)], exit_code=0)


def run_postgres(step: dict[str, Any], env: StepEnv) -> Outcome:
    """``postgres_stop`` (``pg_ctl stop -m fast``), ``postgres_kill`` (SIGKILL to its process group, as a
    machine crash), ``postgres_start`` (the same server, the same port): the scenario's private PostgreSQL."""
    if env.postgres is None:
        raise StepError("the scenario has no private_postgres")
    action = step["kind"].split("_", 1)[1]
    started = time.monotonic()
    try:
        getattr(env.postgres, action)()
    except Exception as exc:  # noqa: BLE001 - the helper's failure is the step's outcome
        return Outcome(command=["postgres", action], exit_code=1, stderr=f"{type(exc).__name__}: {exc}",
                       duration=time.monotonic() - started)
    return Outcome(command=["postgres", action, f"port {env.postgres.port}"], exit_code=0,
                   duration=time.monotonic() - started)


def _target(step: dict[str, Any], env: StepEnv) -> tuple[str, int, bool]:
    target = env.context.render(step.get("target", "proxy.http"))
    for prefix in ("proxy.", "admin.", "status.", "upstream.", "node."):
        if target.startswith(prefix):
            host = env.context.get(f"{target}.host")
            port = env.context.get(f"{target}.port")
            tls = target.endswith(".https") or (
                prefix == "upstream." and env.upstreams[target.split(".", 1)[1]].tls
            )
            return str(host), int(port), tls
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise StepError(f"raw target {target!r}: expected proxy.http, proxy.https, node.NAME.proxy.https, "
                        "upstream.NAME or host:port")
    return host, int(port), False


def _parts(step: dict[str, Any], env: StepEnv) -> list[bytes]:
    if "send_hex" in step:
        raw = step["send_hex"]
        parts = [bytes.fromhex(p) for p in ([raw] if isinstance(raw, str) else raw)]
    else:
        raw = step.get("send", "")
        parts = [env.context.render(p).encode("latin-1") for p in ([raw] if isinstance(raw, str) else raw)]
    if step.get("repeat", 1) > 1 and parts:
        index = step.get("repeat_part", -1)
        try:
            parts[index] = parts[index] * step["repeat"]
        except IndexError:
            raise StepError(f"repeat_part {index} is not a part of send (it has {len(parts)})") from None
    return parts


def run_raw(step: dict[str, Any], env: StepEnv) -> Outcome:
    """Send bytes on a socket (TLS for ``.https`` targets) and read until EOF or idle timeout.

    ``closed`` is true when the peer closed (EOF or reset) before ``read_timeout``
    seconds passed without data; the step's ``timeout`` bounds the whole read.
    """
    host, port, tls = _target(step, env)
    started = time.monotonic()
    deadline = started + _timeout(step)
    idle = float(step.get("read_timeout", DEFAULT_RAW_READ_TIMEOUT))
    outcome = Outcome(command=[f"raw {host}:{port}{' tls' if tls else ''}"])
    sock: socket.socket = socket.create_connection((host, port), timeout=_timeout(step))
    try:
        if tls:
            sock = _wrap(sock, step, env)
        data, closed, note = _exchange(sock, _parts(step, env), step, idle, deadline)
    finally:
        sock.close()
    outcome.duration = time.monotonic() - started
    outcome.stdout = data
    outcome.closed = closed
    outcome.note = note
    outcome.exit_code = 0
    outcome.responses, outcome.interim, outcome.body = parse_raw_response(data)
    return outcome


def _wrap(sock: socket.socket, step: dict[str, Any], env: StepEnv) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if "tls_ca" in step:
        ctx.load_verify_locations(env.context.render(step["tls_ca"]))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    name = env.context.render(step["tls_server_name"]) if "tls_server_name" in step else None
    return ctx.wrap_socket(sock, server_hostname=name)


def _exchange(sock: socket.socket, parts: list[bytes], step: dict[str, Any], idle: float,
              deadline: float) -> tuple[bytes, bool, str]:
    note = ""
    try:
        for i, part in enumerate(parts):
            if i and step.get("pause_ms"):
                time.sleep(step["pause_ms"] / 1000)
            sock.sendall(part)
        if step.get("half_close"):
            sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError) as exc:
        note = f"send failed: {exc!r}; "  # the gateway may answer and close before reading everything
    data = bytearray()
    closed = False
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline or now - last >= idle:
            note += "still open when the read stopped"
            break
        ready = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        if not ready:
            readable, _, _ = select.select([sock], [], [], min(0.1, deadline - now))
            if not readable:
                continue
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLWantReadError, TimeoutError):
            continue  # a partial TLS record: wait for the rest
        except ConnectionResetError:
            closed, note = True, note + "connection reset by the peer"
            break
        except ssl.SSLError as exc:
            closed, note = True, note + f"TLS error: {exc}"
            break
        if not chunk:
            closed = True
            break
        data += chunk
        last = time.monotonic()
    return bytes(data), closed, note


RUNNERS: dict[str, Callable[[dict[str, Any], StepEnv], Outcome]] = {
    "curl": run_curl,
    "openssl": run_openssl,
    "raw": run_raw,
    "cli": run_cli,
    "config_check": run_config_check,
    "gateway_start_fails": run_gateway_start_fails,
    "gateway_stop": run_gateway_stop,
    "sleep": run_sleep,
    "gateway_start": run_gateway_start,
    "signal": run_signal,
    "write_file": run_write_file,
    "postgres_stop": run_postgres,
    "postgres_kill": run_postgres,
    "postgres_start": run_postgres,
}
