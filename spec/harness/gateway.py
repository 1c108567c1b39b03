"""Start, watch and stop a real ``trio-gw`` process for one scenario.

Theory of operation: the gateway runs as ``trio-gw run -c <settings.yaml>`` in
its own process group, with a fresh prefix directory and port-0 listeners.  It
is ready when ``<prefix>/trio-gw.ready.json`` appears (written once every
listener is bound); the harness polls for that file with a deadline and fails
fast if the process exits first.  Output goes to files (never pipes, which a
chatty gateway could fill and block on) that steps may read at any time.
:meth:`Gateway.stop` sends SIGTERM, waits for the graceful exit, and kills the
process group if it does not come; it is safe to call more than once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec.harness.placeholders import Context

READY_FILE = "trio-gw.ready.json"
#: Seconds for the gateway to bind its listeners (a cold Python import is ~1 s).
DEFAULT_READY_TIMEOUT = 20.0
#: Seconds between SIGTERM and SIGKILL (the gateway's own graceful_shutdown_timeout is 10 s,
#: scenarios have nothing in flight when they stop it).
STOP_TIMEOUT = 8.0
POLL = 0.05


class GatewayError(Exception):
    """The gateway did not become ready (exited, timed out, bad ready file)."""


def clean_environ() -> dict[str, str]:
    """This process's environment without ``TRIO_GW_*`` settings, so only the scenario's apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIO_GW_")}


def gateway_command() -> list[str]:
    """How to run ``trio-gw``: ``$SPEC_GATEWAY`` (split on spaces), the console script
    next to this interpreter, or ``python -m trio_gw``."""
    override = os.environ.get("SPEC_GATEWAY")
    if override:
        return override.split()
    script = Path(sys.executable).parent / "trio-gw"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "trio_gw"]


@dataclass(frozen=True)
class Listener:
    """One bound listener from the ready file."""

    host: str
    port: int
    ssl: bool


class Gateway:
    """One gateway process."""

    def __init__(self, directory: Path, settings_path: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, name: str = "gateway") -> None:
        self.directory = directory
        self.settings_path = settings_path
        self.args = list(args)
        self.env = dict(env or {})
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.listeners: dict[str, list[Listener]] = {}
        self.exit_code: int | None = None

    @property
    def command(self) -> list[str]:
        """The full command line."""
        return [*gateway_command(), "run", "-c", str(self.settings_path), *self.args]

    def spawn(self) -> None:
        """Start the process (does not wait for readiness)."""
        env = {**clean_environ(), **self.env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=env, start_new_session=True,
            )

    def wait_ready(self, prefix: Path, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Poll for the ready file.

        Raises:
            GatewayError: the process exited, the deadline passed, or the file is malformed.
        """
        assert self.process is not None
        ready = prefix / READY_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.exit_code = code
                raise GatewayError(f"gateway exited with {code} before it was ready:\n{self.stderr_tail()}")
            if ready.exists():
                try:
                    self.listeners = _parse_ready(json.loads(ready.read_text()))
                    return
                except json.JSONDecodeError:
                    pass  # written but not complete yet; poll again
                except (KeyError, TypeError, ValueError) as exc:
                    raise GatewayError(f"malformed {READY_FILE}: {exc!r}") from exc
            time.sleep(POLL)
        raise GatewayError(f"gateway not ready after {timeout:.0f}s (no {ready}):\n{self.stderr_tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to exit by itself; ``None`` if it is still running."""
        assert self.process is not None
        try:
            self.exit_code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def is_running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, then SIGKILL the group; returns the exit code (negative: signal)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=5)
                self.exit_code = self.process.returncode
                return self.exit_code  # killed: the caller reports it
        self.exit_code = self.process.returncode
        self._reap_group()
        return self.exit_code

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass  # already gone

    def _reap_group(self) -> None:
        """Kill worker processes the gateway left behind in its group (it should leave none)."""
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is empty: the normal case

    def output(self) -> tuple[str, str]:
        """Stdout and stderr so far."""
        return (_read(self.stdout_path), _read(self.stderr_path))

    def stderr_tail(self, lines: int = 30) -> str:
        """The last lines of stderr, for failure messages."""
        return "\n".join(_read(self.stderr_path).splitlines()[-lines:])

    def define_placeholders(self, context: Context, prefix: str = "") -> None:
        """``proxy.http.*``/``proxy.https.*`` (first plain/TLS listener) and ``proxy.http.N.*``.

        Each gets ``.port``, ``.host``, ``.address`` and ``.url``; the same for ``admin``
        and ``status``.  ``prefix`` names another node's (``node.b.``: ``node.b.proxy.http.port``,
        and ``node.b.pid`` instead of ``gateway.pid``).
        """
        for role, listeners in self.listeners.items():
            by_scheme: dict[str, list[Listener]] = {"http": [], "https": []}
            for listener in listeners:
                by_scheme["https" if listener.ssl else "http"].append(listener)
            for scheme, group in by_scheme.items():
                for i, listener in enumerate(group):
                    names = [f"{prefix}{role}.{scheme}.{i}"] + ([f"{prefix}{role}.{scheme}"] if i == 0 else [])
                    for name in names:
                        context.set(f"{name}.port", listener.port)
                        context.set(f"{name}.host", listener.host)
                        context.set(f"{name}.address", f"{listener.host}:{listener.port}")
                        context.set(f"{name}.url", f"{scheme}://{listener.host}:{listener.port}")
        context.set(f"{prefix}pid" if prefix else "gateway.pid", self.process.pid if self.process else 0)


def _parse_ready(data: Any) -> dict[str, list[Listener]]:
    out: dict[str, list[Listener]] = {}
    for role, listeners in data["listeners"].items():
        out[role] = [Listener(str(x["host"]), int(x["port"]), bool(x.get("ssl", False))) for x in listeners]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""
