"""Check a step's ``expect`` table against its :class:`Outcome`.

Theory of operation: each expectation key has one checker; :func:`check_expect`
runs the checker of every key present (after rendering placeholders in the
expected values) and collects one message per mismatch, naming the key, what
was expected and what was seen.  Every key of the schema's ``EXPECT`` table
must have a checker here — ``python -m spec --self-test`` verifies it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from spec.harness.clients import StepEnv
from spec.harness.outcome import Outcome, normalise_dn

#: Seconds to wait for an expected line to appear in the gateway's output (logs are async).
LOG_WAIT = 2.0
EXCERPT = 400


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return repr(text if len(text) <= EXCERPT else text[:EXCERPT] + f"... ({len(text)} chars)")


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _contains(what: str, text: str, wanted: str | list[str], negate: bool = False) -> list[str]:
    out = []
    for needle in _as_list(wanted):
        if (needle in text) == negate:
            verb = "contains" if negate else "does not contain"
            out.append(f"{what} {verb} {needle!r}: {_excerpt(text)}")
    return out


def _regex(what: str, text: str, patterns: str | list[str]) -> list[str]:
    return [f"{what} does not match /{p}/: {_excerpt(text)}" for p in _as_list(patterns)
            if not re.search(p, text, re.MULTILINE)]


def _exit_code(expected: Any, o: Outcome, env: StepEnv) -> list[str]:
    if expected == "nonzero":
        ok = o.exit_code is not None and o.exit_code != 0
    else:
        ok = o.exit_code == expected
    return [] if ok else [f"exit code {o.exit_code}, expected {expected}"]


def _status(expected: int, o: Outcome, env: StepEnv) -> list[str]:
    got = o.last.status if o.last else None
    return [] if got == expected else [f"status {got}, expected {expected}"]


def _statuses(expected: list[int], o: Outcome, env: StepEnv) -> list[str]:
    got = [r.status for r in o.responses]
    return [] if got == expected else [f"statuses {got}, expected {expected}"]


def _interim(expected: list[int], o: Outcome, env: StepEnv) -> list[str]:
    got = [r.status for r in o.interim]
    return [] if got == expected else [f"interim (1xx) statuses {got}, expected {expected}"]


def lookup(data: Any, dotted: str) -> Any:
    """``a.b.0.c`` into nested dicts and lists; raises ``KeyError`` when absent."""
    for part in dotted.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(dotted)
    return data


def _json(expected: dict[str, Any], o: Outcome, env: StepEnv) -> list[str]:
    try:
        data = json.loads(o.body)
    except ValueError:
        return [f"body is not JSON: {_excerpt(o.body)}"]
    out = []
    for path, want in expected.items():
        try:
            got = lookup(data, path)
        except KeyError:
            out.append(f"json {path} missing in {_excerpt(json.dumps(data))}")
            continue
        if got != want:
            out.append(f"json {path} = {got!r}, expected {want!r}")
    return out


def _body_equals(expected: str, o: Outcome, env: StepEnv) -> list[str]:
    return [] if o.body == expected.encode() else [f"body {_excerpt(o.body)}, expected {expected!r}"]


def _body_sha256(expected: str, o: Outcome, env: StepEnv) -> list[str]:
    got = hashlib.sha256(o.body).hexdigest()
    return [] if got == expected else [f"body sha256 {got} (length {len(o.body)}), expected {expected}"]


def _body_length(expected: int, o: Outcome, env: StepEnv) -> list[str]:
    return [] if len(o.body) == expected else [f"body length {len(o.body)}, expected {expected}"]


def _headers(expected: dict[str, str], o: Outcome, env: StepEnv) -> list[str]:
    if o.last is None:
        return ["no response to read headers from"]
    return [f"header {k}: {o.last.header(k)!r}, expected {v!r}"
            for k, v in expected.items() if o.last.header(k) != v]


def _headers_contain(expected: dict[str, str], o: Outcome, env: StepEnv) -> list[str]:
    if o.last is None:
        return ["no response to read headers from"]
    return [f"header {k}: {o.last.header(k)!r} does not contain {v!r}"
            for k, v in expected.items() if v not in (o.last.header(k) or "")]


def _headers_present(expected: list[str], o: Outcome, env: StepEnv) -> list[str]:
    if o.last is None:
        return ["no response to read headers from"]
    return [f"header {k} absent" for k in expected if o.last.header(k) is None]


def _headers_absent(expected: list[str], o: Outcome, env: StepEnv) -> list[str]:
    if o.last is None:
        return ["no response to read headers from"]
    return [f"header {k} present: {o.last.header(k)!r}" for k in expected if o.last.header(k) is not None]


def _tls(expected: dict[str, Any], o: Outcome, env: StepEnv) -> list[str]:
    facts = o.tls
    out = []
    for key, want in expected.items():
        if key == "cipher_contains":
            if want not in (facts.cipher or ""):
                out.append(f"tls cipher {facts.cipher!r} does not contain {want!r}")
        elif key in ("subject_contains", "issuer_contains"):
            got = getattr(facts, key.removesuffix("_contains"))
            if normalise_dn(want) not in (got or ""):
                out.append(f"tls {key.removesuffix('_contains')} {got!r} does not contain {want!r}")
        elif getattr(facts, key) != want:
            out.append(f"tls {key} {getattr(facts, key)!r}, expected {want!r}")
    return out


def _closed(expected: bool, o: Outcome, env: StepEnv) -> list[str]:
    if o.closed == expected:
        return []
    return [f"connection {'closed' if o.closed else 'left open'}, expected {'closed' if expected else 'open'}"
            + (f" ({o.note})" if o.note else "")]


def _upstream(expected: dict[str, Any], o: Outcome, env: StepEnv) -> list[str]:
    name = expected["name"]
    upstream = env.upstreams.get(name)
    if upstream is None:
        return [f"upstream {name!r} is not one of this scenario's upstreams"]
    seen = upstream.observed.snapshot()[env.context.get(f"_upstream_seen.{name}"):]
    out = []
    if "requests" in expected and len(seen) != expected["requests"]:
        out.append(f"upstream {name} received {len(seen)} request(s) in this step, expected {expected['requests']}")
    checks = {k: v for k, v in expected.items() if k not in ("name", "requests")}
    if not checks:
        return out
    if not seen:
        return out + [f"upstream {name} received no request in this step"]
    out += _record(name, seen[-1], checks)
    return out


def _record(name: str, record: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    out = []
    headers: dict[str, str] = record["headers"]
    for key, want in checks.items():
        if key == "headers":
            out += [f"upstream {name} header {k}: {headers.get(k.lower())!r}, expected {v!r}"
                    for k, v in want.items() if headers.get(k.lower()) != v]
        elif key == "headers_contain":
            out += [f"upstream {name} header {k}: {headers.get(k.lower())!r} does not contain {v!r}"
                    for k, v in want.items() if v not in headers.get(k.lower(), "")]
        elif key == "headers_present":
            out += [f"upstream {name} header {k} absent" for k in want if k.lower() not in headers]
        elif key == "headers_absent":
            out += [f"upstream {name} header {k} present: {headers[k.lower()]!r}"
                    for k in want if k.lower() in headers]
        elif key == "client_cert_subject":
            got = record["client_cert_subject"]
            if (want == "" and got) or want not in got:
                out.append(f"upstream {name} client certificate {got!r}, expected {want!r}")
        elif record.get(key) != want:
            out.append(f"upstream {name} {key} {record.get(key)!r}, expected {want!r}")
    return out


def _duration(bound: str) -> Callable[[int, Outcome, StepEnv], list[str]]:
    def check(ms: int, o: Outcome, env: StepEnv) -> list[str]:
        got = round(o.duration * 1000)
        ok = got <= ms if bound == "max" else got >= ms
        return [] if ok else [f"took {got} ms, expected {'at most' if bound == 'max' else 'at least'} {ms} ms"]

    return check


def _gateway_log(mode: str) -> Callable[[Any, Outcome, StepEnv], list[str]]:
    def check(wanted: str | list[str], o: Outcome, env: StepEnv) -> list[str]:
        if env.gateway is None:
            return ["no gateway output to search (no gateway was started)"]
        deadline = time.monotonic() + (LOG_WAIT if mode != "not_contains" else 0)
        while True:
            text = "".join(env.gateway.output())
            if mode == "contains":
                problems = _contains("gateway output", text, wanted)
            elif mode == "not_contains":
                problems = _contains("gateway output", text, wanted, negate=True)
            else:
                problems = _regex("gateway output", text, wanted)
            if not problems or time.monotonic() >= deadline:
                return problems
            time.sleep(0.1)

    return check


def _gateway_running(expected: bool, o: Outcome, env: StepEnv) -> list[str]:
    got = env.gateway is not None and env.gateway.is_running()
    return [] if got == expected else [f"gateway {'running' if got else 'not running'}, expected the opposite"]


def _text(field: str, mode: str) -> Callable[[Any, Outcome, StepEnv], list[str]]:
    def check(wanted: str | list[str], o: Outcome, env: StepEnv) -> list[str]:
        text = {
            "stdout": o.stdout_text,
            "stderr": o.stderr,
            "output": o.stdout_text + "\n" + o.stderr,
            "body": o.body.decode(errors="replace"),
        }[field]
        if mode == "regex":
            return _regex(field, text, wanted)
        return _contains(field, text, wanted, negate=(mode == "not_contains"))

    return check


CHECKERS: dict[str, Callable[[Any, Outcome, StepEnv], list[str]]] = {
    "exit_code": _exit_code,
    "status": _status,
    "statuses": _statuses,
    "interim_statuses": _interim,
    "json": _json,
    "body_equals": _body_equals,
    "body_sha256": _body_sha256,
    "body_length": _body_length,
    "headers": _headers,
    "headers_contain": _headers_contain,
    "headers_present": _headers_present,
    "headers_absent": _headers_absent,
    "tls": _tls,
    "closed": _closed,
    "upstream": _upstream,
    "upstreams": lambda expected, o, env: [p for one in expected for p in _upstream(one, o, env)],
    "duration_ms_max": _duration("max"),
    "duration_ms_min": _duration("min"),
    "gateway_log_contains": _gateway_log("contains"),
    "gateway_log_not_contains": _gateway_log("not_contains"),
    "gateway_log_regex": _gateway_log("regex"),
    "gateway_running": _gateway_running,
    **{f"{f}_{m}": _text(f, m) for f in ("stdout", "stderr", "output", "body")
       for m in ("contains", "not_contains", "regex")},
}


def check_expect(expect: dict[str, Any], outcome: Outcome, env: StepEnv) -> list[str]:
    """Every mismatch between ``expect`` (placeholders rendered here) and ``outcome``."""
    problems: list[str] = []
    for key, expected in expect.items():
        rendered = _render(expected, env)
        problems += [p for p in CHECKERS[key](rendered, outcome, env) if p not in problems]
    return problems


def _render(value: Any, env: StepEnv) -> Any:
    if isinstance(value, str):
        return env.context.render(value)
    if isinstance(value, list):
        return [_render(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, env) for k, v in value.items()}
    return value
