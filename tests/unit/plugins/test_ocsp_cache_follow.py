"""The stapling cache follows each installed generation's plan (trio_gw.plugins.ocsp_cache.OcspCache.follow)."""

from __future__ import annotations

from trio_gw.model.entities import Certificate
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import Issued, issue, make_ca
from trio_gw.tls.stapling import StaplingSettings
from trio_gw.tls.stapling_plan import StaplingPlan, build_stapling_plan

NOW = 1_750_000_000
CA = make_ca(common_name="follow root")
INTER = make_ca(issuer=CA, common_name="follow intermediate")
URL = "http://127.0.0.1:9/ocsp"


def plan_of(*names: str) -> tuple[dict[str, Issued], StaplingPlan]:
    leaves = {name: issue(INTER, name, ocsp_urls=[URL]) for name in names}
    certs = [Certificate(id=name, cert=leaf.chain_pem(), key=leaf.key_pem()) for name, leaf in leaves.items()]
    return leaves, build_stapling_plan(StaplingSettings(ssl_stapling=True), certs, now=NOW)


def test_new_targets_are_due_kept_ones_keep_their_answer_gone_ones_are_forgotten() -> None:
    cache = OcspCache()
    leaves, first = plan_of("a.test", "b.test")
    cache.follow(first.fetched())
    assert {t.key for t in cache.due(NOW)} == {t.key for t in first.fetched()}
    a_key = first.targets["a.test"][0].key
    cache.store(a_key, ocsp_response_der(INTER, leaves["a.test"].cert.serial_number, "good", now=NOW), NOW)
    assert cache.current(a_key) is not None
    cache.follow(first.fetched())  # the same generation's plan again: nothing refetched
    assert a_key not in {t.key for t in cache.due(NOW)}
    cache.follow([t for t in first.fetched() if t.key == a_key])
    assert cache.tracked() == {a_key} and cache.current(a_key) is not None
    cache.follow([])
    assert cache.tracked() == frozenset() and cache.current(a_key) is None and cache.due(NOW) == ()
