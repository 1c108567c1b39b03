"""The scenario file format, as data, and its validator.

Theory of operation: every table of a ``spec/cases/*.toml`` file is described by
a :class:`Table` listing its keys and what each may hold.  :func:`check_file`
walks a parsed file against :data:`FILE` and returns every problem as a
``path: message`` string (``scenario[3].steps[1].expect.statuss: unknown key
(did you mean 'statuses'?)``).  Unknown keys are always an error: a typo in an
expectation must not turn into a check that silently never runs.

``python -m spec --self-test`` runs this over every file without starting
anything; the runner runs it too before executing a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``area::name`` — lower-case words joined by ``-``/``.`` (STYLE example 9).
SCENARIO_ID = re.compile(r"^[a-z0-9][a-z0-9-]*::[a-z0-9][a-z0-9.-]*$")
#: ``source:slug`` as listed in ``spec/features.toml``.
FEATURE_ID = re.compile(r"^[a-z0-9-]+:[a-z0-9-]+$")

STEP_KINDS = (
    "curl",
    "openssl",
    "raw",
    "cli",
    "config_check",
    "gateway_start_fails",
    "gateway_stop",
    "sleep",
    "postgres_stop",
    "postgres_kill",
    "postgres_start",
    "gateway_start",
    "signal",
    "write_file",
)
#: Step kinds that talk to a running gateway: a scenario with one of these gets
#: a gateway started before its first step.
GATEWAY_STEP_KINDS = frozenset({"curl", "openssl", "raw", "gateway_stop", "signal"})
#: External programs a step kind needs (missing → skipped, or failed when CI=true).
STEP_TOOLS = {"curl": "curl", "openssl": "openssl"}


Check = Callable[[Any], "str | None"]


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else "expected a string"


def _is_nonempty_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "expected a non-empty string"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "expected true or false"


def _is_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "expected an integer"


def _is_number(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    return None if ok else "expected a non-negative number"


def _is_str_list(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    return None if ok else "expected a list of strings"


def _is_str_or_list(v: Any) -> str | None:
    return None if isinstance(v, str) or _is_str_list(v) is None else "expected a string or a list of strings"


def _is_int_list(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return None if ok else "expected a list of integers"


def _is_str_map(v: Any) -> str | None:
    ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    return None if ok else "expected a table of strings"


def _is_table_or_text(v: Any) -> str | None:
    return None if isinstance(v, (dict, str)) else "expected a table, or YAML text in a string"


def _is_any_map(v: Any) -> str | None:
    return None if isinstance(v, dict) else "expected a table"


def _is_exit_code(v: Any) -> str | None:
    if v == "nonzero" or _is_int(v) is None:
        return None
    return 'expected an integer or "nonzero"'


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"expected one of {', '.join(map(repr, choices))}"

    return check


def _matches(pattern: re.Pattern[str], what: str) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not pattern.match(v):
            return f"expected {what} matching {pattern.pattern}"
        return None

    return check


def _features(v: Any) -> str | None:
    if not isinstance(v, list) or not v:
        return "expected a non-empty list of feature ids"
    bad = [x for x in v if not isinstance(x, str) or not FEATURE_ID.match(x)]
    return f"not feature ids (source:slug): {bad!r}" if bad else None


@dataclass(frozen=True)
class Key:
    """One allowed key: its check (or nested table) and whether it is required."""

    check: Check | None = None
    table: Table | None = None
    required: bool = False
    each: Table | None = None  # a table of tables (name → entry) or an array of tables
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """The keys a table may hold."""

    keys: Mapping[str, Key] = field(default_factory=dict)
    #: When set, the table's keys are free-form names whose values follow this key.
    values: Key | None = None


def _k(check: Check, doc: str = "", required: bool = False) -> Key:
    return Key(check=check, required=required, doc=doc)


_STR_OR_LIST = _k(_is_str_or_list)

UPSTREAM_EXPECT = Table({
    "name": _k(_is_nonempty_str, "which upstream (a key of `upstreams`)", required=True),
    "requests": _k(_is_int, "how many requests it received during this step"),
    "method": _k(_is_str),
    "path": _k(_is_str, "path as received, without the query"),
    "query": _k(_is_str),
    "http_version": _k(_is_str, '"1.1" or "1.0"'),
    "headers": _k(_is_str_map, "exact values, header names case-insensitive"),
    "headers_contain": _k(_is_str_map, "substring of the value"),
    "headers_present": _k(_is_str_list),
    "headers_absent": _k(_is_str_list),
    "body_sha256": _k(_is_str),
    "body_length": _k(_is_int),
    "client_cert_subject": _k(_is_str, "substring of the RFC 4514 subject; \"\" means none presented"),
    "tls_version": _k(_is_str, 'echo: the negotiated version, "TLSv1.2" or "TLSv1.3" ("" without TLS)'),
    "cipher": _k(_is_str, "echo: the negotiated suite, OpenSSL's name (ECDHE-ECDSA-AES128-GCM-SHA256, TLS_AES_128_GCM_SHA256)"),
    "tls": _k(_is_bool, "whether the request came over TLS"),
})

TLS_EXPECT = Table({
    "version": _k(_is_str, '"TLSv1.2" or "TLSv1.3"'),
    "cipher": _k(_is_str, "exact negotiated cipher name (OpenSSL's or IANA's, as the client prints it)"),
    "cipher_contains": _k(_is_str),
    "subject_contains": _k(_is_str, "of the server certificate the client received"),
    "issuer_contains": _k(_is_str),
    "verify_code": _k(_is_int, "openssl s_client's Verify return code"),
    "alpn": _k(_is_str),
})

EXPECT = Table({
    "exit_code": _k(_is_exit_code),
    "status": _k(_is_int, "the last final status code"),
    "statuses": _k(_is_int_list, "every final status code, in order (several URLs in one curl)"),
    "interim_statuses": _k(_is_int_list, "1xx responses seen (needs them in the header dump)"),
    "json": _k(_is_any_map, "dotted path into the JSON body → expected value"),
    "body_equals": _k(_is_str),
    "body_contains": _STR_OR_LIST,
    "body_not_contains": _STR_OR_LIST,
    "body_regex": _STR_OR_LIST,
    "body_sha256": _k(_is_str),
    "body_length": _k(_is_int),
    "headers": _k(_is_str_map, "exact value of the last response's header"),
    "headers_contain": _k(_is_str_map),
    "headers_present": _k(_is_str_list),
    "headers_absent": _k(_is_str_list),
    "stdout_contains": _STR_OR_LIST,
    "stdout_not_contains": _STR_OR_LIST,
    "stdout_regex": _STR_OR_LIST,
    "stderr_contains": _STR_OR_LIST,
    "stderr_not_contains": _STR_OR_LIST,
    "stderr_regex": _STR_OR_LIST,
    "output_contains": _STR_OR_LIST,
    "output_not_contains": _STR_OR_LIST,
    "output_regex": _STR_OR_LIST,
    "tls": Key(table=TLS_EXPECT),
    "closed": _k(_is_bool, "raw: the gateway closed the connection (EOF before read_timeout)"),
    "upstream": Key(table=UPSTREAM_EXPECT),
    "upstreams": Key(each=UPSTREAM_EXPECT, doc="several upstreams' expectations, each as `upstream`"),
    "duration_ms_max": _k(_is_int),
    "duration_ms_min": _k(_is_int),
    "gateway_log_contains": _STR_OR_LIST,
    "gateway_log_not_contains": _STR_OR_LIST,
    "gateway_log_regex": _STR_OR_LIST,
    "gateway_running": _k(_is_bool, "whether the gateway process is still alive after the step"),
})

STEP = Table({
    "kind": _k(_one_of(*STEP_KINDS), required=True),
    "name": _k(_is_str, "what the step does, for the report"),
    "timeout": _k(_is_number, "seconds (default 10)"),
    "args": _k(_is_str_list, "curl/openssl/cli arguments, or extra `trio-gw run` arguments"),
    "env": _k(_is_str_map, "extra environment for the process"),
    "stdin": _k(_is_str, "text fed to the client's stdin"),
    "file": _k(_is_str, "config_check: the file to check (default: the scenario's declarative file); "
                        "write_file: the file to write"),
    "text": _k(_is_str, "write_file: the content (placeholders rendered; YAML text may hold PEM placeholders)"),
    "pid": _k(_is_nonempty_str, "signal: the process, e.g. {{gateway.pid}} or a {{capture.NAME}} of /status"),
    "signal": _k(_one_of("HUP", "TERM", "INT", "KILL", "QUIT", "USR1", "USR2"), "signal: which one"),
    "target": _k(_is_str, 'raw: "proxy.http", "proxy.https", "admin.https", "node.NAME.proxy.https", "upstream.NAME" or "host:port"'),
    "send": _k(_is_str_or_list, "raw: text to send (TOML escapes; \\r\\n explicit), or parts"),
    "send_hex": _k(_is_str_or_list, "raw: bytes to send, hex"),
    "repeat": _k(_is_int, "raw: send one part this many times — for oversize heads"),
    "repeat_part": _k(_is_int, "raw: index of the part `repeat` applies to (default: the last)"),
    "pause_ms": _k(_is_int, "raw: pause between parts"),
    "half_close": _k(_is_bool, "raw: shut down the write side after sending"),
    "read_timeout": _k(_is_number, "raw: seconds to wait for more bytes (default 3)"),
    "tls_server_name": _k(_is_str, "raw with TLS: SNI to send"),
    "tls_ca": _k(_is_str, "raw with TLS: CA file (default: no verification)"),
    "ms": _k(_is_int, "sleep: milliseconds"),
    "node": _k(_is_nonempty_str, "a key of `nodes`: the gateway that gateway_stop/gateway_start_fails and "
                                 "the gateway_* expectations refer to (default: the scenario's gateway)"),
    "retry_ms": _k(_is_int, "run the step again (100 ms apart) until its expectations hold, at most this long"),
    "capture": _k(_is_str_map, "NAME = regex over stdout (curl: the body), then stderr: "
                               "group 1 (or the match) becomes {{capture.NAME}}"),
    "expect": Key(table=EXPECT),
})


def _is_crl(v: Any) -> str | None:
    return None if isinstance(v, bool) or v in ("http", "https") else 'expected true, false, "http" or "https"'


def _is_ocsp(v: Any) -> str | None:
    return None if isinstance(v, bool) or v == "down" else 'expected true, false or "down"'


def _is_arg_lists(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(_is_str_list(x) is None and x for x in v)
    return None if ok else "expected a non-empty list of non-empty lists of strings"


PKI_ENTRY = Table({
    "kind": _k(_one_of("ca", "leaf"), required=True),
    "issuer": _k(_is_nonempty_str, "a CA of this scenario; required for leaves, makes a CA intermediate"),
    "sans": _k(_is_str_list, "DNS names and IP addresses"),
    "cn": _k(_is_str, "subject common name"),
    "o": _k(_is_str, "subject organization"),
    "ou": _k(_is_str, "subject organizational unit"),
    "key": _k(_one_of("ecdsa", "rsa"), "key type (default ecdsa)"),
    "not_before_days": _k(_is_int, "leaf validity start, days from now (may be negative)"),
    "not_after_days": _k(_is_int, "leaf validity end, days from now (negative: expired)"),
    "self_signed": _k(_is_bool, "a leaf without issuer: a self-signed end-entity certificate"),
    "crl": _k(_is_crl, "a CA: serve its CRL over HTTP (true) or HTTPS (\"https\"); the leaves it issues name it "
                       "as CRL distribution point"),
    "crl_tls": _k(_is_nonempty_str, "a CA with crl = \"https\": the leaf of `pki` its CRL server presents"),
    "revoked": _k(_is_bool, "a leaf of a `crl` CA: listed on that CRL"),
    "ocsp": _k(_is_ocsp, "a CA: run an OCSP responder (\"down\": one that drops every connection); the leaves "
                         "it issues name it in their AIA"),
    "ocsp_status": _k(_one_of("good", "revoked", "unknown"), "a leaf of an `ocsp` CA: what its responder says "
                                                             "(default good)"),
    "must_staple": _k(_is_bool, "a leaf: carry the TLS Feature status_request (RFC 7633 must-staple)"),
    "openssl": _k(_is_arg_lists, "made by these openssl commands (each a list of arguments) run in {{dir}}/pki/NAME"),
    "cert_file": _k(_is_nonempty_str, "with `openssl`: the certificate file it makes (default cert.pem)"),
    "key_file": _k(_is_nonempty_str, "with `openssl`: the key file it makes (default key.pem)"),
})

UPSTREAM = Table({
    "kind": _k(_one_of("echo", "closed", "connect_proxy", "renegotiate", "pebble", "h2"), required=True),
    "alpn": _k(_is_str_list, "h2: the ALPN protocols it offers (default [\"h2\", \"http/1.1\"])"),
    "tls": _k(_is_nonempty_str, "a leaf of `pki`: serve TLS with it"),
    "max_version": _k(_one_of("1.0", "1.1", "1.2", "1.3"),
                      "echo with tls: highest TLS version served (below 1.2: minimum lowered too, security level 0)"),
    "min_version": _k(_one_of("1.0", "1.1", "1.2", "1.3"), "echo with tls: lowest TLS version served"),
    "ciphers": _k(_is_nonempty_str, "echo with tls: OpenSSL cipher string for TLS 1.2 and older"),
    "auth": _k(_is_nonempty_str, "connect_proxy: required `user:password` (Proxy-Authorization: Basic)"),
    "client_ca": _k(_is_nonempty_str, "a CA of `pki`: require a client certificate issued by it"),
    "delay_ms": _k(_is_int, "wait this long before answering every request"),
})

PRIVATE_POSTGRES = Table({
    "tls": _k(_is_nonempty_str, "a leaf of `pki`: the server runs with ssl = on and presents it (chain included)"),
    "client_ca": _k(_is_nonempty_str, "a CA of `pki`: ssl_ca_file, which verifies client certificates"),
    "hba": _k(_is_str_list, "pg_hba.conf lines for TCP clients (default: host all all 127.0.0.1/32 trust), "
                            "e.g. \"hostssl all test 127.0.0.1/32 cert\""),
})

NODE = Table({
    "settings": _k(_is_table_or_text, "settings over the scenario gateway's (own prefix: {{node.NAME.prefix}})"),
    "gateway_args": _k(_is_str_list, "extra `trio-gw run` arguments (after the scenario's)"),
    "gateway_env": _k(_is_str_map, "extra environment (over the scenario's)"),
    "start": _k(_is_bool, "start it once the scenario's gateway is ready (default true); "
                          "false: only for a gateway_start_fails step naming it"),
})

FILE_ENTRY = Table({
    "size": _k(_is_int, "bytes of deterministic pseudo-random data"),
    "seed": _k(_is_int),
    "text": _k(_is_str, "literal content (placeholders rendered)"),
})

_SCENARIO_COMMON: dict[str, Key] = {
    "pki": Key(table=Table(values=Key(table=PKI_ENTRY))),
    "files": Key(table=Table(values=Key(table=FILE_ENTRY))),
    "upstreams": Key(table=Table(values=Key(table=UPSTREAM))),
    "settings": _k(_is_table_or_text, "gateway settings (merged over the harness base settings)"),
    "declarative": _k(_is_table_or_text, "decK file content"),
    "gateway_args": _k(_is_str_list, "extra `trio-gw run` arguments"),
    "gateway_env": _k(_is_str_map, "extra environment for the gateway"),
    "timeout": _k(_is_number, "seconds for the whole scenario (default 60)"),
    "gateway": _k(_is_bool, "start a gateway before the first step (default: when a step talks to one)"),
    "requires": _k(_is_str_list, "external programs needed besides those the step kinds imply"),
    "nodes": Key(table=Table(values=Key(table=NODE))),
    "postgres": _k(_is_bool, "needs the PostgreSQL of SPEC_PG_* (default 127.0.0.1:5432, database test, user "
                             "postgres): database = postgres in a schema of its own, dropped afterwards"),
    "private_postgres": Key(table=PRIVATE_POSTGRES, doc="a PostgreSQL server of the scenario's own "
                            "(trio_gw.testing.postgres: initdb + postgres in {{dir}}, on a free port), which "
                            "postgres_stop/postgres_kill/postgres_start steps control; database = postgres"),
}

SCENARIO = Table({
    "id": _k(_matches(SCENARIO_ID, "an id such as proxy::http-basic"), required=True),
    "title": _k(_is_nonempty_str, required=True),
    "features": _k(_features, required=True),
    "description": _k(_is_str),
    "skip": _k(_is_nonempty_str, "reason the scenario is not run"),
    "expected_failure": _k(_is_nonempty_str, "reason it is known to fail; a pass is reported as XPASS (a failure)"),
    **_SCENARIO_COMMON,
    "steps": Key(each=STEP, required=True),
})

DEFAULTS = Table(dict(_SCENARIO_COMMON))

FILE = Table({
    "description": _k(_is_str),
    "defaults": Key(table=DEFAULTS),
    "scenario": Key(each=SCENARIO, required=True),
})

FEATURE = Table({
    "title": _k(_is_nonempty_str, "the feature statement", required=True),
    "source": _k(_is_nonempty_str, "the seed file (seed rows), or where the feature comes from", required=True),
    "section": _k(_is_nonempty_str, "the seed heading the statement sits under, or (introduction)"),
    "note": _k(_is_nonempty_str, "how trio-gw does it where that differs"),
    "out_of_scope": _k(_is_nonempty_str, "why the row cannot apply to trio-gw (no scenario needed)"),
})
FEATURES_FILE = Table(values=Key(table=FEATURE))


def _suggest(name: str, choices: Mapping[str, Key]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_table(value: Any, table: Table, path: str = "") -> list[str]:
    """Check one table against its description.

    Args:
        value: the parsed TOML value.
        table: what it may hold.
        path: where it is, for messages.

    Returns:
        Problems as ``path: message`` strings; empty when the value is valid.
    """
    if not isinstance(value, dict):
        return [f"{path or '(file)'}: expected a table"]
    problems: list[str] = []
    if table.values is not None:
        for name, item in value.items():
            problems += _check_key(item, table.values, _join(path, name))
        return problems
    for name, item in value.items():
        key = table.keys.get(name)
        if key is None:
            problems.append(f"{_join(path, name)}: unknown key{_suggest(name, table.keys)}")
            continue
        problems += _check_key(item, key, _join(path, name))
    for name, key in table.keys.items():
        if key.required and name not in value:
            problems.append(f"{_join(path, name)}: required")
    return problems


def _check_key(item: Any, key: Key, path: str) -> list[str]:
    if key.check is not None:
        message = key.check(item)
        return [f"{path}: {message}"] if message else []
    if key.table is not None:
        return check_table(item, key.table, path)
    assert key.each is not None
    if not isinstance(item, list) or not item:
        return [f"{path}: expected a non-empty array of tables"]
    problems: list[str] = []
    for i, entry in enumerate(item):
        problems += check_table(entry, key.each, f"{path}[{i}]")
    return problems
