"""model.integrity: cross-entity rules over a whole configuration."""

from __future__ import annotations

from trio_gw.model.entities import SNI, Consumer, Entities, Plugin, Route, Service
from trio_gw.model.integrity import IntegrityProblem, integrity_problems, referrers


def test_consistent_configuration_has_no_problems() -> None:
    service = Service("s1", "up.example", name="s")
    route = Route("r1", service="s1", paths=("/",))
    entities = Entities(services={"s1": service}, routes={"r1": route})
    assert integrity_problems(entities) == ()
    assert referrers(entities, "services", "s1") == (("routes", "r1", "service"),)


def test_problems_found() -> None:
    entities = Entities(
        services={"s1": Service("s1", "a", name="x"), "s2": Service("s2", "b", name="x")},
        routes={"r1": Route("r1", service="gone", paths=("/",)), "wrong": Route("r2", paths=("/",))},
        snis={"n1": SNI("n1", "a.example", "missing")},
        consumers={"c1": Consumer("c1", username="u")},
        plugins={
            "p1": Plugin("p1", "mtls-auth", {"ca_certificates": ["nope"]}),
            "p2": Plugin("p2", "mtls-auth", {}),
        },
    )
    reasons = {(p.reason, p.kind, p.field) for p in integrity_problems(entities)}
    assert reasons == {
        ("id", "routes", "id"),
        ("unique", "services", "name"),
        ("reference", "routes", "service"),
        ("reference", "snis", "certificate"),
        ("reference", "plugins", "config.ca_certificates"),
        ("plugin_scope", "plugins", "name"),
    }
    assert all(str(p) for p in integrity_problems(entities))
    assert referrers(entities, "ca_certificates", "nope") == (("plugins", "p1", "config.ca_certificates"),)
    assert "duplicate name" in str(IntegrityProblem("unique", "services", "s2", "name", "x", other_id="s1"))
