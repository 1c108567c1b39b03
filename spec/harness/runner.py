"""Run one scenario from temporary directory to verdict, cleaning up on every path.

Theory of operation, in the order things happen:

1. ``skip`` → SKIPPED; a missing tool (curl, openssl) → SKIPPED, or FAILED when
   ``CI=true`` (a CI machine must have every tool);
2. a fresh temporary directory ``{{dir}}`` with the gateway's ``{{prefix}}`` in it;
3. ``files`` (deterministic data), ``pki`` (trustme) and ``upstreams`` (threads),
   each defining placeholders;
4. the declarative file ``{{declarative}}`` and the settings file
   ``{{settings}}``: the scenario's ``settings`` over :data:`BASE_SETTINGS`;
5. a gateway, if any step talks to one (``curl``, ``openssl``, ``raw``,
   ``gateway_stop``), started and waited for through its ready file; its
   listeners define ``proxy.http.port`` and friends;
6. the steps in order; the first step with a failed expectation ends the
   scenario (later steps build on earlier ones);
7. always: the gateway gets SIGTERM and must exit 0 (the contract's graceful
   stop), upstreams stop, the directory is removed (kept with ``--keep``).

Results: PASSED, FAILED, ERROR (the harness or the scenario itself is broken),
SKIPPED, XFAIL (failed with an ``expected_failure`` reason) and XPASS (passed
despite one — counted as a failure, so stale reasons get noticed).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spec.harness.clients import RUNNERS, StepEnv, StepError
from spec.harness.expect import check_expect
from spec.harness.gateway import STOP_TIMEOUT, Gateway, GatewayError
from spec.harness.loader import Scenario
from spec.harness.outcome import Outcome
from spec.harness.pki import CrlServer, PkiError, generate_pki
from spec.harness.placeholders import Context, PlaceholderError
from spec.harness.upstreams import Upstream, start_upstreams

#: Settings every scenario starts from: loopback, ephemeral ports, nothing but the proxy.
BASE_SETTINGS: dict[str, Any] = {
    "proxy_listen": "127.0.0.1:0",
    "admin_listen": "off",
    "status_listen": "off",
    "database": "off",
}
DEFAULT_SCENARIO_TIMEOUT = 60.0

PASSED, FAILED, ERROR, SKIPPED, XFAIL, XPASS = "PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"
FAILING = frozenset({FAILED, ERROR, XPASS})


@dataclass
class Result:
    """The verdict on one scenario."""

    scenario: Scenario
    result: str
    duration: float = 0.0
    reason: str = ""  # skip / expected-failure reason, or the first problem
    details: list[str] = field(default_factory=list)  # failure report lines
    directory: str = ""  # kept temporary directory (``--keep``)


@dataclass(frozen=True)
class Options:
    """How to run."""

    verbose: bool = False
    keep: bool = False
    ci: bool = False
    log: Callable[[str], None] = print


def run_scenario(scenario: Scenario, options: Options) -> Result:
    """Run one scenario; never raises (harness errors become ERROR results)."""
    data = scenario.data
    if "skip" in data:
        return Result(scenario, SKIPPED, reason=data["skip"])
    missing = [tool for tool in scenario.tools if shutil.which(tool) is None]
    if missing:
        reason = f"missing tool(s): {', '.join(missing)}"
        return Result(scenario, FAILED if options.ci else SKIPPED, reason=reason + (" (CI=true)" if options.ci else ""))
    started = time.monotonic()
    slug = re.sub(r"[^a-z0-9]+", "-", scenario.id)
    directory = Path(tempfile.mkdtemp(prefix=f"spec-{slug}-"))
    run = _Run(scenario, directory, options)
    try:
        result = run.execute()
    finally:
        run.cleanup()
        if options.keep:
            result_dir = str(directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            result_dir = ""
    result.duration = time.monotonic() - started
    result.directory = result_dir
    if "expected_failure" in data:
        if result.result in (FAILED, ERROR):
            result.details = [f"(expected failure: {data['expected_failure']})", *result.details]
            result.result, result.reason = XFAIL, data["expected_failure"]
        elif result.result == PASSED:
            result.result, result.reason = XPASS, f"passed, but is marked expected_failure: {data['expected_failure']}"
    return result


class _Run:
    """The state of one scenario run, so cleanup can find everything it started."""

    def __init__(self, scenario: Scenario, directory: Path, options: Options) -> None:
        self.scenario = scenario
        self.data = scenario.data
        self.directory = directory
        self.options = options
        self.context = Context({"dir": str(directory), "prefix": str(directory / "prefix")})
        self.gateway: Gateway | None = None
        self.upstreams: dict[str, Upstream] = {}
        self.crl_server: CrlServer | None = None
        self.details: list[str] = []
        self.deadline = time.monotonic() + float(self.data.get("timeout", DEFAULT_SCENARIO_TIMEOUT))

    def say(self, message: str) -> None:
        """Print in verbose mode."""
        if self.options.verbose:
            self.options.log(f"    {message}")

    def execute(self) -> Result:
        """Set up, run the steps, return the verdict (cleanup is separate)."""
        try:
            self._prepare()
            if self.scenario.needs_gateway:
                self._start_gateway()
            for index, step in enumerate(self.scenario.steps):
                problems = self._step(index, step)
                if problems:
                    return Result(self.scenario, FAILED, reason=problems[0], details=self.details)
            problems = self._stop_gateway()
            if problems:
                return Result(self.scenario, FAILED, reason=problems[0], details=self.details)
            return Result(self.scenario, PASSED)
        except GatewayError as exc:
            self.details.append(f"gateway: {exc}")
            return Result(self.scenario, FAILED, reason=str(exc).splitlines()[0], details=self.details)
        except (PlaceholderError, PkiError, StepError) as exc:
            self.details.append(f"scenario error: {exc}")
            return Result(self.scenario, ERROR, reason=str(exc), details=self.details)
        except Exception as exc:  # noqa: BLE001 - any harness bug becomes an ERROR result, with its traceback
            self.details += ["harness error:", *traceback.format_exc().splitlines()]
            return Result(self.scenario, ERROR, reason=f"{type(exc).__name__}: {exc}", details=self.details)

    def _prepare(self) -> None:
        (self.directory / "prefix").mkdir()
        self._make_files()
        if any(entry.get("crl") for entry in self.data.get("pki", {}).values()):
            self.crl_server = CrlServer()
        pki = generate_pki(self.data.get("pki", {}), self.directory / "pki", self.context, self.crl_server)
        self.upstreams = {u.name: u for u in start_upstreams(
            self.data.get("upstreams", {}), pki, str(self.directory), self.context)}
        settings = dict(BASE_SETTINGS, prefix=str(self.directory / "prefix"))
        if "declarative" in self.data:
            path = self.directory / "kong.yaml"
            path.write_text(self._render_yaml(self.data["declarative"]))
            self.context.set("declarative", str(path))
            settings["declarative_config"] = str(path)
        path = self.directory / "settings.yaml"
        self.context.set("settings", str(path))
        path.write_text(self._settings_text(settings))
        self.say(f"settings: {path.read_text()!r}")

    def _make_files(self) -> None:
        for name, entry in self.data.get("files", {}).items():
            path = self.directory / "files" / name
            path.parent.mkdir(exist_ok=True)
            if "text" in entry:
                content = self.context.render(entry["text"]).encode()
            else:
                content = random.Random(entry.get("seed", 0)).randbytes(entry.get("size", 0))
            path.write_bytes(content)
            self.context.set(f"file.{name}", str(path))
            self.context.set(f"file.{name}.size", len(content))
            self.context.set(f"file.{name}.sha256", hashlib.sha256(content).hexdigest())

    def _render_yaml(self, value: str | dict[str, Any]) -> str:
        if isinstance(value, str):
            return self.context.render_yaml_text(value)
        return yaml.safe_dump(self.context.render_value(value), sort_keys=False)

    def _settings_text(self, base: dict[str, Any]) -> str:
        given = self.data.get("settings", {})
        if isinstance(given, str):
            text = self.context.render_yaml_text(given)
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, dict):
                return text  # deliberately broken settings: written as given, without the base
            given = parsed
        else:
            given = self.context.render_value(given)
        return yaml.safe_dump({**base, **given}, sort_keys=False)

    def _start_gateway(self) -> None:
        self.gateway = Gateway(self.directory, self.directory / "settings.yaml",
                               [self.context.render(a) for a in self.data.get("gateway_args", [])],
                               self.data.get("gateway_env", {}))
        self.say(f"$ {' '.join(self.gateway.command)}")
        self.gateway.spawn()
        self.gateway.wait_ready(self.directory / "prefix", timeout=max(1.0, min(20.0, self._left())))
        self.gateway.define_placeholders(self.context)
        self.say(f"gateway ready: {self.gateway.listeners}")

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _step(self, index: int, step: dict[str, Any]) -> list[str]:
        label = f"step {index + 1} ({step['kind']}{': ' + step['name'] if 'name' in step else ''})"
        if self._left() <= 0:
            self.details.append(f"{label}: scenario timeout reached before it ran")
            return [f"{label}: scenario timeout"]
        for name, upstream in self.upstreams.items():
            self.context.set(f"_upstream_seen.{name}", len(upstream.observed.snapshot()))
        env = StepEnv(self.context, self.directory, self.directory / "settings.yaml", self.directory / "prefix",
                      self.gateway, self.upstreams, [self.context.render(a) for a in self.data.get("gateway_args", [])],
                      dict(self.data.get("gateway_env", {})), index + 1, self.say)
        step = dict(step)
        step["timeout"] = min(float(step.get("timeout", 10)), max(self._left(), 0.5))
        outcome = RUNNERS[step["kind"]](step, env)
        self.say(f"{label}: $ {_shell(outcome.command)} → exit {outcome.exit_code}, {outcome.duration * 1000:.0f} ms")
        expect = dict(step.get("expect", {}))
        if step["kind"] == "gateway_start_fails":
            expect.setdefault("exit_code", "nonzero")
        problems = check_expect(expect, outcome, env)
        if self.options.verbose or problems:
            self._describe(label, outcome, problems)
        return [f"{label}: {p}" for p in problems]

    def _describe(self, label: str, outcome: Outcome, problems: list[str]) -> None:
        lines = [f"{label}: $ {_shell(outcome.command)}"]
        lines += [f"  ✗ {p}" for p in problems]
        if outcome.note:
            lines.append(f"  note: {outcome.note}")
        lines.append(f"  exit code: {outcome.exit_code}; {outcome.duration * 1000:.0f} ms")
        if outcome.responses or outcome.interim:
            lines.append(f"  responses: {[r.status for r in outcome.interim + outcome.responses]}")
        if outcome.stdout:
            lines.append(f"  stdout: {_clip(outcome.stdout_text)}")
        if outcome.stderr:
            lines.append(f"  stderr: {_clip(outcome.stderr)}")
        if self.gateway is not None and problems and not self.gateway.is_running():
            lines.append(f"  the gateway process has exited (code {self.gateway.process.returncode if self.gateway.process else None})")
        if self.gateway is not None and problems:
            lines.append(f"  gateway stderr (tail): {_clip(self.gateway.stderr_tail(15))}")
        self.details += lines
        if self.options.verbose:
            for line in lines:
                self.say(line)

    def _stop_gateway(self) -> list[str]:
        if self.gateway is None or self.gateway.process is None or self.gateway.exit_code is not None:
            return []
        if not self.gateway.is_running():
            code = self.gateway.process.returncode
            message = f"the gateway died during the scenario (exit code {code})"
            self.details += [message, f"  gateway stderr (tail): {_clip(self.gateway.stderr_tail(15))}"]
            return [message]
        code = self.gateway.stop()
        if code != 0:
            message = f"the gateway exited with {code} on SIGTERM, expected a graceful exit 0"
            self.details += [message, f"  gateway stderr (tail): {_clip(self.gateway.stderr_tail(15))}"]
            return [message]
        return []

    def cleanup(self) -> None:
        """Stop everything this run started; safe after any failure."""
        if self.gateway is not None and self.gateway.is_running():
            code = self.gateway.stop()
            if code != 0:
                self.details.append(f"cleanup: the gateway exited with {code} on SIGTERM "
                                    f"(-9: it was killed after {STOP_TIMEOUT:g}s)")
        for upstream in self.upstreams.values():
            upstream.stop()
        if self.crl_server is not None:
            self.crl_server.stop()


def _shell(command: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)


def _clip(text: str, limit: int = 1500) -> str:
    text = text.strip()
    if len(text) > limit:
        text = text[: limit // 2] + f"\n      ... ({len(text) - limit} chars) ...\n" + text[-limit // 2:]
    return text.replace("\n", "\n      ")


def is_ci() -> bool:
    """Whether ``CI`` is set to a true value."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
