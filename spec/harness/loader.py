"""Load ``spec/cases/*.toml`` into scenarios, checking form and cross-references.

Theory of operation: a file is parsed with ``tomllib`` and checked against the
schema (:mod:`spec.harness.schema`).  Each scenario is then merged over the
file's ``[defaults]`` — ``pki``, ``files``, ``upstreams`` and ``gateway_env``
merge by entry name, ``settings`` merges key by key when both are tables, every
other key of the scenario replaces the default — and checked for what the
schema cannot see: issuers and upstream certificates that exist, upstreams
named by expectations that exist, steps that carry what their kind needs,
feature ids listed in ``spec/features.toml``, ids unique across every file.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec.harness.placeholders import PLACEHOLDER
from spec.harness.schema import (
    FEATURES_FILE,
    FILE,
    GATEWAY_STEP_KINDS,
    STEP_TOOLS,
    check_table,
)

SPEC_DIR = Path(__file__).resolve().parent.parent
CASES_DIR = SPEC_DIR / "cases"
FEATURES_PATH = SPEC_DIR / "features.toml"

_MERGE_BY_NAME = ("pki", "files", "upstreams", "gateway_env", "nodes")
#: A node's name, as it appears in placeholders (``{{node.b.proxy.https.port}}``).
NODE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


@dataclass(frozen=True)
class Scenario:
    """One scenario, merged with its file's defaults and checked."""

    id: str
    title: str
    features: tuple[str, ...]
    source: str  # "spec/cases/proxy.toml"
    data: Mapping[str, Any]  # the merged table, as in the file

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps, in order."""
        return list(self.data["steps"])

    @property
    def needs_gateway(self) -> bool:
        """Whether the runner starts a gateway before the first step."""
        if "gateway" in self.data:
            return bool(self.data["gateway"])
        if any(node.get("start", True) for node in self.data.get("nodes", {}).values()):
            return True
        return any(step["kind"] in GATEWAY_STEP_KINDS for step in self.steps)

    @property
    def tools(self) -> list[str]:
        """External programs the scenario needs."""
        tools = {STEP_TOOLS[s["kind"]] for s in self.steps if s["kind"] in STEP_TOOLS}
        if any("openssl" in entry for entry in self.data.get("pki", {}).values()):
            tools.add("openssl")  # pki entries made by the openssl command line
        if any(entry["kind"] == "pebble" for entry in self.data.get("upstreams", {}).values()):
            tools.add("pebble")  # Debian's ACME test server (make system-tools)
        return sorted(tools | set(self.data.get("requires", [])))


class SpecFormatError(Exception):
    """One or more files do not follow the format; ``problems`` lists ``file: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_features(path: Path = FEATURES_PATH) -> dict[str, dict[str, str]]:
    """The feature registry ``spec/features.toml``.

    Raises:
        SpecFormatError: the file is missing, not TOML, or malformed.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecFormatError([f"{path.name}: {exc}"]) from exc
    problems = [f"{path.name}: {p}" for p in check_table(data, FEATURES_FILE)]
    if problems:
        raise SpecFormatError(problems)
    return data


def _merge(defaults: Mapping[str, Any], scenario: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(defaults))
    for key, value in scenario.items():
        value = copy.deepcopy(value)
        if key in _MERGE_BY_NAME and isinstance(merged.get(key), dict) or key == "settings" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_references(s: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    pki = s.get("pki", {})
    for name, entry in pki.items():
        issuer = entry.get("issuer")
        if entry["kind"] == "leaf" and "openssl" not in entry and (issuer is None) != bool(entry.get("self_signed")):
            problems.append(f"{where}.pki.{name}.issuer: required for a leaf, unless self_signed (then none)")
        if "openssl" in entry and issuer is not None:
            problems.append(f"{where}.pki.{name}.issuer: an openssl-made entry is whatever its commands make")
        if ("cert_file" in entry or "key_file" in entry) and "openssl" not in entry:
            problems.append(f"{where}.pki.{name}: cert_file/key_file name what the `openssl` commands make")
        if (entry.get("crl") == "https") != ("crl_tls" in entry):
            problems.append(f"{where}.pki.{name}.crl_tls: required with crl = \"https\" (and only then)")
        elif "crl_tls" in entry and pki.get(entry["crl_tls"], {}).get("kind") != "leaf":
            problems.append(f"{where}.pki.{name}.crl_tls: {entry['crl_tls']!r} is not a leaf of this scenario")
        if entry.get("crl") and entry["kind"] != "ca":
            problems.append(f"{where}.pki.{name}.crl: only a CA publishes a CRL")
        if entry.get("revoked") and not pki.get(issuer or "", {}).get("crl"):
            problems.append(f"{where}.pki.{name}.revoked: the issuer must be a CA with crl = true")
        if issuer is not None and pki.get(issuer, {}).get("kind") != "ca":
            problems.append(f"{where}.pki.{name}.issuer: {issuer!r} is not a CA of this scenario")
        if entry.get("ocsp") and entry["kind"] != "ca":
            problems.append(f"{where}.pki.{name}.ocsp: only a CA runs an OCSP responder")
        if "ocsp_status" in entry and not pki.get(issuer or "", {}).get("ocsp"):
            problems.append(f"{where}.pki.{name}.ocsp_status: the issuer must be a CA with ocsp")
        if entry.get("must_staple") and (entry["kind"] != "leaf" or "openssl" in entry or entry.get("self_signed")):
            problems.append(f"{where}.pki.{name}.must_staple: only an issued leaf")
    upstreams = s.get("upstreams", {})
    for name, entry in upstreams.items():
        for key, kind in (("tls", "leaf"), ("client_ca", "ca")):
            ref = entry.get(key)
            if ref is not None and pki.get(ref, {}).get("kind") != kind:
                problems.append(f"{where}.upstreams.{name}.{key}: {ref!r} is not a {kind} of this scenario's pki")
        if entry["kind"] in ("closed", "pebble") and set(entry) - {"kind"}:
            problems.append(f"{where}.upstreams.{name}: a {entry['kind']} upstream takes no options")
        if entry["kind"] == "h2" and ("tls" not in entry or set(entry) - {"kind", "tls", "alpn"}):
            problems.append(f"{where}.upstreams.{name}: an h2 upstream needs tls and takes only alpn besides")
        if "alpn" in entry and entry["kind"] != "h2":
            problems.append(f"{where}.upstreams.{name}.alpn: only for an h2 upstream")
    private = s.get("private_postgres")
    if private is not None:
        if s.get("postgres"):
            problems.append(f"{where}.private_postgres: a scenario uses the shared PostgreSQL (postgres = true) "
                            "or a private one, not both")
        for key, kind in (("tls", "leaf"), ("client_ca", "ca")):
            ref = private.get(key)
            if ref is not None and pki.get(ref, {}).get("kind") != kind:
                problems.append(f"{where}.private_postgres.{key}: {ref!r} is not a {kind} of this scenario's pki")
    elif any(step["kind"].startswith("postgres_") for step in s["steps"]):
        problems.append(f"{where}: postgres_stop/postgres_kill/postgres_start need private_postgres")
    nodes = s.get("nodes", {})
    for name, node in nodes.items():
        if not NODE_NAME.match(name):
            problems.append(f"{where}.nodes.{name}: a node name is lower-case letters, digits, '-' or '_'")
        if node.get("start", True) and s.get("gateway") is False:
            problems.append(f"{where}.nodes.{name}: nodes start after the scenario's gateway; gateway = false")
    for i, step in enumerate(s["steps"]):
        problems += _check_step(step, f"{where}.steps[{i}]", upstreams)
        node = step.get("node")
        if node is not None and node not in nodes:
            problems.append(f"{where}.steps[{i}].node: no node {node!r} in this scenario")
        elif node is not None and step["kind"] == "gateway_stop" and not nodes[node].get("start", True):
            problems.append(f"{where}.steps[{i}].node: node {node!r} is never started (start = false)")
        elif node is not None and step["kind"] == "gateway_start_fails" and nodes[node].get("start", True):
            problems.append(f"{where}.steps[{i}].node: node {node!r} is started with the scenario; "
                            "gateway_start_fails needs start = false")
    return problems


_STEP_NEEDS: dict[str, tuple[str, ...]] = {
    "curl": ("args",), "openssl": ("args",), "cli": ("args",), "sleep": ("ms",), "signal": ("pid", "signal"),
    "write_file": ("file", "text"),
}
_STEP_ALLOWS: dict[str, frozenset[str]] = {
    "curl": frozenset({"args", "stdin", "env"}),
    "openssl": frozenset({"args", "stdin", "env"}),
    "cli": frozenset({"args", "stdin", "env"}),
    "config_check": frozenset({"file", "args", "env"}),
    "gateway_start_fails": frozenset({"args", "env"}),
    "gateway_stop": frozenset(),
    "sleep": frozenset({"ms"}),
    "gateway_start": frozenset(),
    "signal": frozenset({"pid", "signal"}),
    "write_file": frozenset({"file", "text"}),
    "postgres_stop": frozenset(),
    "postgres_kill": frozenset(),
    "postgres_start": frozenset(),
    "raw": frozenset({"target", "send", "send_hex", "repeat", "repeat_part", "pause_ms", "half_close", "read_timeout",
                      "tls_server_name", "tls_ca"}),
}
_COMMON_STEP_KEYS = frozenset({"kind", "name", "timeout", "expect", "node", "capture"})
#: Steps whose effect cannot be repeated: no retry_ms.
_NO_RETRY = frozenset({"gateway_stop", "gateway_start_fails", "sleep", "postgres_stop", "postgres_kill",
                       "postgres_start", "gateway_start", "signal", "write_file"})


def _check_step(step: Mapping[str, Any], where: str, upstreams: Mapping[str, Any]) -> list[str]:
    kind = step["kind"]
    problems = [f"{where}.{key}: required for a {kind} step" for key in _STEP_NEEDS.get(kind, ())
                if key not in step]
    extra = set(step) - _COMMON_STEP_KEYS - _STEP_ALLOWS[kind] - ({"retry_ms"} if kind not in _NO_RETRY else set())
    problems += [f"{where}.{key}: not used by a {kind} step" for key in sorted(extra)]
    for name, pattern in step.get("capture", {}).items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            problems.append(f"{where}.capture.{name}: a capture name is letters, digits, '_' or '-'")
        try:
            if re.compile(pattern).groups > 1:
                problems.append(f"{where}.capture.{name}: at most one group (its text is the value)")
        except re.error as exc:
            problems.append(f"{where}.capture.{name}: not a regular expression ({exc})")
    if kind == "raw" and ("send" in step) == ("send_hex" in step):
        problems.append(f"{where}: a raw step needs exactly one of send, send_hex")
    target = step.get("target", "")
    if target.startswith("upstream.") and target.split(".", 1)[1] not in upstreams:
        problems.append(f"{where}.target: no upstream {target.split('.', 1)[1]!r}")
    upstream = step.get("expect", {}).get("upstream")
    if upstream is not None and upstream["name"] not in upstreams:
        problems.append(f"{where}.expect.upstream.name: no upstream {upstream['name']!r} in this scenario")
    return problems


#: What a ``pebble`` upstream defines beyond every upstream's placeholders (spec/harness/acme.py).
PEBBLE_PLACEHOLDERS = ("http_port", "tls_port", "ca", "root")
_PKI_ATTRS = ("cert", "key", "chain", "pem", "cert_pem", "chain_pem", "key_pem", "subject", "sha256",
              "der_base64", "pem_urlencoded")
_ENDPOINT = re.compile(r"^(node\.([a-z][a-z0-9_-]*)\.)?(proxy|admin|status)\.https?(\.\d+)?\.(port|host|address|url)$")
#: Defined when ``postgres = true`` or with ``private_postgres``.
_PG_ATTRS = ("schema", "host", "port", "database", "user")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _check_placeholders(s: Mapping[str, Any], where: str) -> list[str]:
    """Every ``{{name}}`` must name something the scenario defines (or the gateway will)."""
    known = {"dir", "prefix", "settings", "gateway.pid", "run_id"} | ({"declarative"} if "declarative" in s else set())
    if s.get("postgres") or "private_postgres" in s:
        known |= {f"pg.{attr}" for attr in _PG_ATTRS}
    nodes = s.get("nodes", {})
    for name in nodes:
        known |= {f"node.{name}.{attr}" for attr in ("settings", "prefix", "pid")}
    for step in s["steps"]:
        known |= {f"capture.{name}" for name in step.get("capture", {})}
    for name in s.get("pki", {}):
        known |= {f"pki.{name}.{attr}" for attr in _PKI_ATTRS}
        if s["pki"][name].get("crl"):
            known.add(f"pki.{name}.crl_url")
        if s["pki"][name].get("ocsp"):
            known.add(f"pki.{name}.ocsp_url")
        if s["pki"].get(s["pki"][name].get("issuer", ""), {}).get("ocsp"):
            known.add(f"pki.{name}.ocsp_response")
    for name, entry in s.get("upstreams", {}).items():
        known |= {f"upstream.{name}.{attr}" for attr in ("port", "host", "address", "url")}
        if entry["kind"] == "pebble":
            known |= {f"upstream.{name}.{attr}" for attr in PEBBLE_PLACEHOLDERS}
    for name in s.get("files", {}):
        known |= {f"file.{name}", f"file.{name}.size", f"file.{name}.sha256"}
    problems = []
    for text in _strings({k: v for k, v in s.items() if k not in ("title", "description", "skip")}):
        for m in PLACEHOLDER.finditer(text):
            name = m.group(1)
            endpoint = _ENDPOINT.match(name)
            if name not in known and not (endpoint and (endpoint.group(2) is None or endpoint.group(2) in nodes)):
                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
                hint = f" (did you mean {{{{{close[0]}}}}}?)" if close else ""
                problems.append(f"{where}: unknown placeholder {{{{{name}}}}}{hint}")
    return sorted(set(problems))


def load_file(path: Path, features: Mapping[str, Any]) -> list[Scenario]:
    """Parse, check and merge one file.

    Raises:
        SpecFormatError: listing every problem of the file.
    """
    rel = _relative(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecFormatError([f"{rel}: {exc}"]) from exc
    problems = check_table(data, FILE)
    if problems:
        raise SpecFormatError([f"{rel}: {p}" for p in problems])
    scenarios = []
    for i, raw in enumerate(data["scenario"]):
        merged = _merge(data.get("defaults", {}), raw)
        where = f"scenario[{i}]"
        problems += _check_references(merged, where)
        problems += _check_placeholders(merged, where)
        problems += [f"{where}.features: {f!r} is not in spec/features.toml" for f in merged["features"]
                     if f not in features]
        scenarios.append(Scenario(merged["id"], merged["title"], tuple(merged["features"]), rel, merged))
    if problems:
        raise SpecFormatError([f"{rel}: {p}" for p in problems])
    return scenarios


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(SPEC_DIR.parent))
    except ValueError:
        return str(path)


def load_all(paths: Iterable[Path] | None = None) -> list[Scenario]:
    """Every scenario of ``spec/cases/*.toml`` (or ``paths``), in file then file order.

    Raises:
        SpecFormatError: listing every problem in every file, and duplicate ids.
    """
    features = load_features()
    problems: list[str] = []
    scenarios: list[Scenario] = []
    for path in sorted(paths if paths is not None else CASES_DIR.glob("*.toml")):
        try:
            scenarios += load_file(path, features)
        except SpecFormatError as exc:
            problems += exc.problems
    seen: dict[str, str] = {}
    for s in scenarios:
        if s.id in seen:
            problems.append(f"{s.source}: duplicate scenario id {s.id!r} (also in {seen[s.id]})")
        seen[s.id] = s.source
    if problems:
        raise SpecFormatError(problems)
    return scenarios
