"""Properties of the declarative loader.

Invariants:

- any mutation of a valid document (a key or item deleted, a value replaced by
  one of another type, an unknown key inserted) gives Entities or ConfigError,
  never another exception; and whatever loads survives a dump round trip;
- generated ids do not depend on the load time, nor on the order of entities;
- ``parse(dump(parse(x), include_keys=True)) == parse(x)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import trustme
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.model.declarative import dump_declarative, load_declarative_text, parse_declarative
from trio_gw.model.entities import Entities

NOW = 1_750_000_000
# Generated once per module: hypothesis examples cannot use function-scoped fixtures,
# and issuing certificates per example would dominate the run time.
_CA = trustme.CA()
_LEAVES = [_CA.issue_cert(f"host{i}.example.test") for i in range(3)]
CERTS = [
    {"cert": leaf.cert_chain_pems[0].bytes().decode(), "key": leaf.private_key_pem.bytes().decode()}
    for leaf in _LEAVES
]
CA_PEM = _CA.cert_pem.bytes().decode()

PATHS = ["/", "/a", "/b/c", "~/users/(?<id>\\d+)$", "/x%20y"]
HOSTS = ["a.example", "*.example.com", "example.*", "b.example:8080"]
PLUGIN_NAMES = ["cors", "acl", "key-auth"]
#: Top-level plugins use other names, so that they never clash with a nested one's scope.
TOP_PLUGIN_NAMES = ["prometheus", "rate-limiting"]


def _routes(prefix: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    route = st.fixed_dictionaries(
        {"paths": st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True)},
        optional={
            "hosts": st.lists(st.sampled_from(HOSTS), max_size=2, unique=True),
            "methods": st.lists(st.sampled_from(["GET", "POST"]), max_size=2, unique=True),
            "strip_path": st.booleans(),
            "protocols": st.sampled_from([["https"], ["http", "https"]]),
            "plugins": st.lists(st.sampled_from(PLUGIN_NAMES), max_size=2, unique=True).map(
                lambda names: [{"name": n} for n in names]
            ),
        },
    )
    return st.lists(st.tuples(route, st.booleans()), max_size=3).map(
        lambda pairs: [{**r, "name": f"{prefix}-{i}"} if named else r for i, (r, named) in enumerate(pairs)]
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document: services with nested routes/plugins, certificates with SNIs, consumers, plugins."""
    services = []
    for i in range(draw(st.integers(0, 3))):
        service: dict[str, Any] = {
            "url": draw(st.sampled_from(["http://u.example", "https://u.example:8443/p", "https://10.0.0.1"])),
            "routes": draw(_routes(f"s{i}")),
            "plugins": [{"name": n} for n in draw(st.lists(st.sampled_from(PLUGIN_NAMES), max_size=2, unique=True))],
        }
        if draw(st.booleans()):
            service["name"] = f"svc-{i}"
        services.append(service)
    named = [s["name"] for s in services if "name" in s]
    certs = [
        {**CERTS[i], "snis": [f"host{i}.example.test", f"*.s{i}.example"]}
        for i in draw(st.lists(st.sampled_from(range(len(CERTS))), max_size=3, unique=True))
    ]
    routes: list[dict[str, Any]] = draw(_routes("top"))
    if named:
        routes = [{**r, "service": draw(st.sampled_from(named))} if draw(st.booleans()) else r for r in routes]
    consumers = [{"username": f"user-{i}"} for i in range(draw(st.integers(0, 2)))]
    plugins = [
        {"name": name, **({"service": scope} if scope else {})}
        for name, scope in draw(
            st.lists(st.tuples(st.sampled_from(TOP_PLUGIN_NAMES), st.sampled_from([None, *named])), max_size=3, unique=True)
        )
    ]
    doc = {"_format_version": "3.0", "services": services, "routes": routes, "certificates": certs,
           "consumers": consumers, "plugins": plugins}  # fmt: skip
    if draw(st.booleans()):
        doc["ca_certificates"] = [{"cert": CA_PEM}]
    return doc


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


def _slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        found.append((node, key))
        _slots(value, found)
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(documents()))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(VALUES)
        elif isinstance(container, dict):
            container[draw(st.text(max_size=8) | st.integers())] = draw(VALUES)
        else:
            container.insert(key, draw(VALUES))
    return doc


def _load(doc: Any) -> Entities | ConfigError:
    try:
        return parse_declarative(doc, now=NOW)
    except ConfigError as exc:
        return exc


@given(mutated_documents())
@example({"_format_version": "3.0", "routes": [{"paths": ["/"], "hosts": ["a:" + "9" * 5000]}]})
@example({"_format_version": "3.0", "services": [{"url": "http://["}], "routes": [{"headers": {1: ["a"]}}]})
@example({"_format_version": "3.0", "certificates": [{"cert": 1, "key": None, "snis": [None]}]})
def test_mutations_give_entities_or_config_error(doc: dict[str, Any]) -> None:
    result = _load(doc)
    if isinstance(result, ConfigError):
        assert result.problems and str(result).count("\n") == len(result.problems) - 1
    else:
        assert parse_declarative(dump_declarative(result, include_keys=True), now=NOW) == result


@given(documents())
def test_valid_documents_load_and_round_trip(doc: dict[str, Any]) -> None:
    entities = parse_declarative(doc, now=NOW)
    assert parse_declarative(dump_declarative(entities, include_keys=True), now=NOW) == entities
    text = yaml.safe_dump(dump_declarative(entities, include_keys=True))
    assert load_declarative_text(text, now=NOW) == entities


@given(documents())
def test_ids_do_not_depend_on_load_time(doc: dict[str, Any]) -> None:
    first, later = parse_declarative(doc, now=NOW), parse_declarative(doc, now=NOW + 86_400)
    for kind in ("services", "routes", "certificates", "ca_certificates", "snis", "consumers", "plugins"):
        assert list(getattr(first, kind)) == list(getattr(later, kind))


def _shuffled(draw: Callable[[st.SearchStrategy[Any]], Any], doc: dict[str, Any]) -> dict[str, Any]:
    shuffled = copy.deepcopy(doc)
    for key, value in shuffled.items():
        if isinstance(value, list):
            shuffled[key] = draw(st.permutations(value))
    for service in shuffled["services"]:
        service["routes"] = draw(st.permutations(service["routes"]))
        service["plugins"] = draw(st.permutations(service["plugins"]))
    return shuffled


@given(st.data())
def test_ids_do_not_depend_on_entity_order(data: st.DataObject) -> None:
    doc = data.draw(documents())
    assert parse_declarative(_shuffled(data.draw, doc), now=NOW) == parse_declarative(doc, now=NOW)
