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
   listeners define ``proxy.http.port`` and friends; then the scenario's other
   ``nodes`` (same settings but their own prefix, plus their overrides), whose
   listeners define ``node.NAME.proxy.http.port`` and friends;
6. the steps in order; the first step with a failed expectation ends the
   scenario (later steps build on earlier ones); a step with ``retry_ms`` runs
   again until its expectations hold or that time has passed; ``capture``
   defines ``capture.NAME`` from the step's output;
7. always: every node and the gateway get SIGTERM and must exit 0 (the
   contract's graceful stop), upstreams stop, a ``postgres`` scenario's schema
   is dropped, the directory is removed (kept with ``--keep``).

A ``postgres`` scenario needs the PostgreSQL of ``SPEC_PG_HOST``/``_PORT``/
``_DATABASE``/``_USER`` (default 127.0.0.1:5432, ``test``, ``postgres``): when
nothing listens there it is SKIPPED, or FAILED when ``CI=true``.  A
``private_postgres`` scenario starts a server of its own instead
(``trio_gw.testing.postgres``, standard library only: the one module of the
package the harness uses), which its ``postgres_stop``/``_kill``/``_start``
steps control, and removes it at the end; without PostgreSQL's server
programs it is SKIPPED, or FAILED when ``CI=true``.

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
import socket
import subprocess
import tempfile
import time
import traceback
import uuid
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
from spec.harness.pki import CrlServer, OcspServers, PkiError, generate_pki
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
#: Seconds between two runs of a step with ``retry_ms``.
RETRY_INTERVAL = 0.1

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
    reasons = [f"missing tool(s): {', '.join(missing)}"] if missing else []
    if data.get("postgres") and not postgres_reachable():
        pg = postgres_settings("")
        reasons.append(f"no PostgreSQL at {pg['pg_host']}:{pg['pg_port']} (SPEC_PG_HOST, SPEC_PG_PORT)")
    if "private_postgres" in data:
        missing_pg = private_postgres_missing()
        if missing_pg:
            reasons.append(missing_pg)
    if reasons:
        reason = "; ".join(reasons)
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
        self.context = Context({"dir": str(directory), "prefix": str(directory / "prefix"),
                                "run_id": uuid.uuid4().hex[:12]})
        self.gateway: Gateway | None = None
        self.nodes: dict[str, Gateway] = {}
        self.pg_schema: str | None = None
        self.postgres: Any = None  # trio_gw.testing.postgres.PostgresServer, for private_postgres
        self.upstreams: dict[str, Upstream] = {}
        self.crl_server: CrlServer | None = None
        self.ocsp_servers = OcspServers()
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
                self._start_nodes()
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
        if any(entry.get("crl") for entry in self.data.get("pki", {}).values()):
            self.crl_server = CrlServer()
        pki = generate_pki(self.data.get("pki", {}), self.directory / "pki", self.context, self.crl_server,
                           self.ocsp_servers)
        self.upstreams = {u.name: u for u in start_upstreams(
            self.data.get("upstreams", {}), pki, str(self.directory), self.context)}
        self._make_files()  # after pki and upstreams: a text file may name them (a second decK file)
        settings = dict(BASE_SETTINGS, prefix=str(self.directory / "prefix"))
        if "private_postgres" in self.data:
            settings.update(self._start_private_postgres(self.data["private_postgres"]))
            for key in ("host", "port", "database", "user", "schema"):
                self.context.set(f"pg.{key}", settings[f"pg_{key}"])
        if self.data.get("postgres"):
            self.pg_schema = f"spec_{self.context.get('run_id')}"
            pg = postgres_settings(self.pg_schema)
            settings.update(pg)
            for key in ("host", "port", "database", "user", "schema"):
                self.context.set(f"pg.{key}", pg[f"pg_{key}"])
        for name in self.data.get("nodes", {}):
            self.context.set(f"node.{name}.prefix", str(self.directory / f"prefix-{name}"))
            self.context.set(f"node.{name}.settings", str(self.directory / f"settings-{name}.yaml"))
        if "declarative" in self.data:
            path = self.directory / "kong.yaml"
            path.write_text(self._render_yaml(self.data["declarative"]))
            self.context.set("declarative", str(path))
            settings["declarative_config"] = str(path)
        path = self.directory / "settings.yaml"
        self.context.set("settings", str(path))
        merged = self._settings(settings, self.data.get("settings", {}))
        path.write_text(merged if isinstance(merged, str) else yaml.safe_dump(merged, sort_keys=False))
        self.say(f"settings: {path.read_text()!r}")
        for name, node in self.data.get("nodes", {}).items():
            if isinstance(merged, str):
                raise StepError("nodes need the scenario's settings to be a mapping")
            base = {**merged, "prefix": str(self.directory / f"prefix-{name}")}
            text = self._settings(base, node.get("settings", {}))
            node_path = self.directory / f"settings-{name}.yaml"
            node_path.write_text(text if isinstance(text, str) else yaml.safe_dump(text, sort_keys=False))
            (self.directory / f"prefix-{name}").mkdir()
            self.say(f"node {name} settings: {node_path.read_text()!r}")

    def _start_private_postgres(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The scenario's own PostgreSQL, started before the gateway; the settings that reach it."""
        from trio_gw.testing.postgres import DEFAULT_HBA, PostgresServer, ServerTls  # standard library only

        tls = None
        if "tls" in entry:
            ca = entry.get("client_ca")
            tls = ServerTls(Path(self.context.get(f"pki.{entry['tls']}.chain")),
                            Path(self.context.get(f"pki.{entry['tls']}.key")),
                            ca_file=Path(self.context.get(f"pki.{ca}.cert")) if ca else None)
        self.postgres = PostgresServer(tls=tls, hba=tuple(entry.get("hba", DEFAULT_HBA))).start()
        self.say(f"private PostgreSQL on 127.0.0.1:{self.postgres.port} ({self.postgres.directory})")
        return {"database": "postgres", "pg_host": self.postgres.host, "pg_port": self.postgres.port,
                "pg_user": self.postgres.user, "pg_database": self.postgres.database,
                "pg_schema": f"spec_{self.context.get('run_id')}"}

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

    def _settings(self, base: dict[str, Any], given: str | dict[str, Any]) -> str | dict[str, Any]:
        """``given`` over ``base``; text that is not a YAML mapping is returned as is (broken on purpose).

        With a datastore (``database`` other than ``off``) the declarative file is not named
        in the settings unless ``given`` names it: the gateway refuses ``declarative_config``
        then, and the file is loaded with ``trio-gw config load {{declarative}}`` instead.
        """
        if isinstance(given, str):
            text = self.context.render_yaml_text(given)
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, dict):
                return text  # deliberately broken settings: written as given, without the base
            mapping: dict[str, Any] = parsed
        else:
            mapping = self.context.render_value(given)
        merged = {**base, **mapping}
        if str(merged.get("database", "off")) != "off" and "declarative_config" not in mapping:
            merged.pop("declarative_config", None)
        return merged

    def _start_gateway(self) -> None:
        self.gateway = Gateway(self.directory, self.directory / "settings.yaml",
                               [self.context.render(a) for a in self.data.get("gateway_args", [])],
                               self._render_env(self.data.get("gateway_env", {})))
        self.say(f"$ {' '.join(self.gateway.command)}")
        self.gateway.spawn()
        self.gateway.wait_ready(self.directory / "prefix", timeout=max(1.0, min(20.0, self._left())))
        self.gateway.define_placeholders(self.context)
        self.say(f"gateway ready: {self.gateway.listeners}")

    def _start_nodes(self) -> None:
        """Start every node with ``start`` (all at once), then wait for each to be ready."""
        for name, node in self.data.get("nodes", {}).items():
            if not node.get("start", True):
                continue
            args, env = self._node_args(name)
            gateway = Gateway(self.directory, self.directory / f"settings-{name}.yaml", args, env, name=f"node-{name}")
            self.say(f"node {name}: $ {' '.join(gateway.command)}")
            gateway.spawn()
            self.nodes[name] = gateway
        for name, gateway in self.nodes.items():
            try:
                gateway.wait_ready(self.directory / f"prefix-{name}", timeout=max(1.0, min(20.0, self._left())))
            except GatewayError as exc:
                raise GatewayError(f"node {name}: {exc}") from exc
            gateway.define_placeholders(self.context, prefix=f"node.{name}.")
            self.say(f"node {name} ready: {gateway.listeners}")

    def _start_again(self, step: dict[str, Any]) -> Outcome:
        """``gateway_start``: start the scenario's gateway (or ``node``) after a ``gateway_stop``, or a node with
        ``start = false``, with the same settings and prefix; wait until it is ready, define its placeholders."""
        name = step.get("node")
        current = self.gateway if name is None else self.nodes.get(name)
        if current is not None and current.is_running():
            raise StepError(f"{'the gateway' if name is None else 'node ' + name} is running: stop it first")
        if name is None:
            gateway = Gateway(self.directory, self.directory / "settings.yaml",
                              [self.context.render(a) for a in self.data.get("gateway_args", [])],
                              self._render_env(self.data.get("gateway_env", {})), name="gateway-again")
            prefix, placeholders = self.directory / "prefix", ""
        else:
            args, env = self._node_args(name)
            gateway = Gateway(self.directory, self.directory / f"settings-{name}.yaml", args, env,
                              name=f"node-{name}-again")
            prefix, placeholders = self.directory / f"prefix-{name}", f"node.{name}."
        started = time.monotonic()
        gateway.spawn()
        if name is None:
            self.gateway = gateway
        else:
            self.nodes[name] = gateway
        outcome = Outcome(command=gateway.command)
        try:
            gateway.wait_ready(prefix, timeout=max(1.0, min(float(step.get("timeout", 20)), self._left())))
            gateway.define_placeholders(self.context, prefix=placeholders)
            outcome.exit_code = 0
        except GatewayError as exc:
            outcome.exit_code, outcome.note = gateway.exit_code if gateway.exit_code is not None else 1, str(exc)
        outcome.duration = time.monotonic() - started
        out, err = gateway.output()
        outcome.stdout, outcome.body, outcome.stderr = out.encode(), out.encode(), err
        return outcome

    def _node_args(self, name: str) -> tuple[list[str], dict[str, str]]:
        node = self.data.get("nodes", {})[name]
        args = [self.context.render(a) for a in [*self.data.get("gateway_args", []), *node.get("gateway_args", [])]]
        env = self._render_env({**self.data.get("gateway_env", {}), **node.get("gateway_env", {})})
        return args, env

    def _render_env(self, env: dict[str, str]) -> dict[str, str]:
        """Environment values may hold placeholders (``{{pki.NAME.cert}}`` for ``TRIO_GW_*`` paths)."""
        return {k: self.context.render(v) for k, v in env.items()}

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _step(self, index: int, step: dict[str, Any]) -> list[str]:
        label = f"step {index + 1} ({step['kind']}{': ' + step['name'] if 'name' in step else ''})"
        if self._left() <= 0:
            self.details.append(f"{label}: scenario timeout reached before it ran")
            return [f"{label}: scenario timeout"]
        env = self._step_env(index, step)
        step = dict(step)
        step["timeout"] = min(float(step.get("timeout", 10)), max(self._left(), 0.5))
        expect = dict(step.get("expect", {}))
        if step["kind"] == "gateway_start_fails":
            expect.setdefault("exit_code", "nonzero")
        retry_until = time.monotonic() + min(step.get("retry_ms", 0) / 1000, max(self._left(), 0.0))
        attempt = 0
        while True:
            attempt += 1
            for name, upstream in self.upstreams.items():
                self.context.set(f"_upstream_seen.{name}", len(upstream.observed.snapshot()))
            outcome = RUNNERS[step["kind"]](step, env)
            if step["kind"] == "gateway_start":
                env = self._step_env(index, step)  # the expectations read the process just started
            self.say(f"{label}: $ {_shell(outcome.command)} → exit {outcome.exit_code}, "
                     f"{outcome.duration * 1000:.0f} ms" + (f" (attempt {attempt})" if attempt > 1 else ""))
            problems = check_expect(expect, outcome, env)
            if not problems:
                problems = self._capture(step.get("capture", {}), outcome)
            if not problems or time.monotonic() + RETRY_INTERVAL >= retry_until:
                break
            time.sleep(RETRY_INTERVAL)
        if attempt > 1:
            outcome.note = (outcome.note + "; " if outcome.note else "") + (
                f"{attempt} attempts over {step['retry_ms']} ms" if problems else f"held at attempt {attempt}")
        if self.options.verbose or problems:
            self._describe(label, outcome, problems)
        return [f"{label}: {p}" for p in problems]

    def _step_env(self, index: int, step: dict[str, Any]) -> StepEnv:
        """What the step reaches: the scenario's gateway, or the node it names (``node``)."""
        node = step.get("node")
        if node is None:
            return StepEnv(self.context, self.directory, self.directory / "settings.yaml", self.directory / "prefix",
                           self.gateway, self.upstreams,
                           [self.context.render(a) for a in self.data.get("gateway_args", [])],
                           self._render_env(self.data.get("gateway_env", {})), index + 1, self.say, self.postgres, self._start_again)
        args, env = self._node_args(node)
        return StepEnv(self.context, self.directory, self.directory / f"settings-{node}.yaml",
                       self.directory / f"prefix-{node}", self.nodes.get(node), self.upstreams, args, env,
                       index + 1, self.say, self.postgres, self._start_again)

    def _capture(self, captures: dict[str, str], outcome: Outcome) -> list[str]:
        """Define ``capture.NAME`` from the first match in stdout (curl: the body), then stderr."""
        problems = []
        for name, pattern in captures.items():
            for text in (outcome.stdout_text, outcome.stderr):
                m = re.search(pattern, text, re.MULTILINE)
                if m:
                    value = m.group(1) if m.re.groups else m.group(0)
                    self.context.set(f"capture.{name}", value)
                    self.say(f"capture.{name} = {value!r}")
                    break
            else:
                problems.append(f"capture {name}: /{pattern}/ matches nothing in the output")
        return problems

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
        problems = []
        for name, node in self.nodes.items():
            problems += self._stop_one(node, f"node {name}")
        if self.gateway is not None:
            problems += self._stop_one(self.gateway, "the gateway")
        return problems

    def _stop_one(self, gateway: Gateway, what: str) -> list[str]:
        if gateway.process is None or gateway.exit_code is not None:
            return []
        if not gateway.is_running():
            code = gateway.process.returncode
            message = f"{what} died during the scenario (exit code {code})"
            self.details += [message, f"  {what} stderr (tail): {_clip(gateway.stderr_tail(15))}"]
            return [message]
        code = gateway.stop()
        if code != 0:
            message = f"{what} exited with {code} on SIGTERM, expected a graceful exit 0"
            self.details += [message, f"  {what} stderr (tail): {_clip(gateway.stderr_tail(15))}"]
            return [message]
        return []

    def cleanup(self) -> None:
        """Stop everything this run started; safe after any failure."""
        for name, node in [*self.nodes.items(), ("gateway", self.gateway)]:
            if node is not None and node.is_running():
                code = node.stop()
                if code != 0:
                    self.details.append(f"cleanup: {'the gateway' if name == 'gateway' else 'node ' + name} exited "
                                        f"with {code} on SIGTERM (-9: it was killed after {STOP_TIMEOUT:g}s)")
        if self.pg_schema is not None:
            drop_postgres_schema(self.pg_schema)
        if self.postgres is not None:
            self.postgres.close()  # stops it and removes its directory
        for upstream in self.upstreams.values():
            upstream.stop()
        if self.crl_server is not None:
            self.crl_server.stop()
        self.ocsp_servers.stop()


def _shell(command: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)


def _clip(text: str, limit: int = 1500) -> str:
    text = text.strip()
    if len(text) > limit:
        text = text[: limit // 2] + f"\n      ... ({len(text) - limit} chars) ...\n" + text[-limit // 2:]
    return text.replace("\n", "\n      ")


def postgres_settings(schema: str) -> dict[str, Any]:
    """The ``pg_*`` settings of a ``postgres`` scenario (``SPEC_PG_*`` or the local defaults)."""
    return {
        "database": "postgres",
        "pg_host": os.environ.get("SPEC_PG_HOST", "127.0.0.1"),
        "pg_port": int(os.environ.get("SPEC_PG_PORT", "5432")),
        "pg_database": os.environ.get("SPEC_PG_DATABASE", "test"),
        "pg_user": os.environ.get("SPEC_PG_USER", "postgres"),
        "pg_schema": schema,
    }


def private_postgres_missing() -> str | None:
    """Why a ``private_postgres`` scenario cannot run here (PostgreSQL's server programs are missing), or None."""
    from trio_gw.testing.postgres import PostgresUnavailable, find_pg_bin  # standard library only

    try:
        find_pg_bin()
    except PostgresUnavailable as exc:
        return f"private_postgres: {exc}"
    return None


def postgres_reachable(timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections where the PostgreSQL of the scenarios should be."""
    pg = postgres_settings("")
    try:
        socket.create_connection((pg["pg_host"], pg["pg_port"]), timeout=timeout).close()
    except OSError:
        return False
    return True


def drop_postgres_schema(schema: str) -> None:
    """Drop a scenario's schema with ``psql`` (best effort: without psql the schema stays)."""
    if shutil.which("psql") is None or not re.fullmatch(r"spec_[0-9a-f]+", schema):
        return
    pg = postgres_settings(schema)
    command = ["psql", "-h", pg["pg_host"], "-p", str(pg["pg_port"]), "-U", pg["pg_user"], "-d", pg["pg_database"],
               "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE']
    try:
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10, env={**os.environ, "PGCONNECT_TIMEOUT": "3"}, check=False)
    except subprocess.TimeoutExpired:
        pass


def is_ci() -> bool:
    """Whether ``CI`` is set to a true value."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
