"""What a generation staples (trio_gw.tls.stapling_plan): targets, static answers, strict refusals."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from trio_gw.model.entities import Certificate
from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import DEFAULT_NOT_AFTER, Issued, issue, make_ca, rsa_and_ec_leaves
from trio_gw.tls.ocsp import OcspAnswer, ocsp_key, verify_ocsp_response
from trio_gw.tls.stapling import StaplingPolicy, StaplingSettings
from trio_gw.tls.stapling_plan import build_stapling_plan

NOW = 1_750_000_000
ROOT = make_ca(common_name="plan root")
INTER = make_ca(issuer=ROOT, common_name="plan intermediate")
AIA = "http://127.0.0.1:9/ocsp"
ON = StaplingSettings(ssl_stapling=True)


def entity(leaf: Issued, cid: str = "c1", alt: Issued | None = None) -> Certificate:
    return Certificate(id=cid, cert=leaf.chain_pem(), key=leaf.key_pem(),
                       cert_alt=alt.chain_pem() if alt else None, key_alt=alt.key_pem() if alt else None)


def answer(leaf: Issued, issuer: Issued, status: str = "good", *, now: float = NOW) -> OcspAnswer:
    der = ocsp_response_der(issuer, leaf.cert.serial_number, status, now=now)
    return verify_ocsp_response(der, leaf.cert, issuer.cert, now=now)


def test_off_plans_nothing() -> None:
    plan = build_stapling_plan(StaplingSettings(), [entity(issue(INTER, "a.test", ocsp_urls=[AIA]))], now=NOW)
    assert not plan.enabled and plan.targets == {} and plan.fetched() == () and plan.digest == ""


def test_issuer_from_the_chain_and_responder_from_aia() -> None:
    leaf = issue(INTER, "a.test", ocsp_urls=[AIA], must_staple=True)
    plan = build_stapling_plan(ON, [entity(leaf)], now=NOW)
    (target,) = plan.targets["c1"]
    assert (target.key, target.urls, target.must_staple) == (ocsp_key(leaf.cert, INTER.cert), (AIA,), True)
    assert target.fingerprint == hashlib.sha256(leaf.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert plan.fetched() == (target,) and not plan.warnings


def test_responder_override_wins_and_trusted_cas_supply_a_missing_issuer() -> None:
    leaf = issue(ROOT, "a.test")  # no AIA, and the root is not in the served chain
    settings = StaplingSettings(ssl_stapling=True, ssl_stapling_responder="http://127.0.0.1:7/x")
    missing = build_stapling_plan(settings, [entity(leaf)], now=NOW)
    assert not missing.targets and "its issuer is neither in its chain" in missing.warnings[0]
    found = build_stapling_plan(settings, [entity(leaf)], trusted=[ROOT.cert], now=NOW)
    assert found.targets["c1"][0].urls == ("http://127.0.0.1:7/x",)


def test_no_responder_is_reported_and_not_fetched() -> None:
    plan = build_stapling_plan(ON, [entity(issue(INTER, "a.test"))], now=NOW)
    assert plan.targets["c1"][0].urls == () and plan.fetched() == ()
    assert "names no OCSP responder" in plan.warnings[0]


def test_two_certificates_of_one_context_are_told_apart() -> None:
    rsa, ec = rsa_and_ec_leaves(INTER, "dual.test")
    plan = build_stapling_plan(ON, [Certificate(id="d", cert=rsa.chain_pem(), key=rsa.key_pem(),
                                                cert_alt=ec.chain_pem(), key_alt=ec.key_pem())], now=NOW)
    first, second = plan.targets["d"]
    assert first.fingerprint != second.fingerprint and first.key != second.key


def test_stapling_file_is_kept_for_the_certificate_it_is_about() -> None:
    leaf, other = issue(INTER, "a.test", ocsp_urls=[AIA]), issue(INTER, "b.test", ocsp_urls=[AIA])
    der = ocsp_response_der(INTER, leaf.cert.serial_number, "good", now=NOW)
    settings = StaplingSettings(ssl_stapling=True, ssl_stapling_file="/etc/a.der")
    plan = build_stapling_plan(settings, [entity(leaf, "a"), entity(other, "b")], static_response=der, now=NOW)
    assert list(plan.static) == [ocsp_key(leaf.cert, INTER.cert)] and not plan.warnings
    assert [t.key for t in plan.fetched()] == [ocsp_key(other.cert, INTER.cert)]  # the file is never refetched


@pytest.mark.parametrize("make, words", [
    (lambda leaf: ocsp_response_der(ROOT, leaf.cert.serial_number, "good", now=NOW), "none of the served"),
    (lambda leaf: ocsp_response_der(INTER, leaf.cert.serial_number, "good", now=NOW - 10 * 86400,
                                    next_update=NOW - 9 * 86400), "stale"),
    (lambda leaf: b"not DER", "malformed"),
])
def test_stapling_file_that_proves_nothing_is_reported(make: object, words: str) -> None:
    leaf = issue(INTER, "a.test")
    settings = StaplingSettings(ssl_stapling=True, ssl_stapling_file="/etc/a.der")
    plan = build_stapling_plan(settings, [entity(leaf)], static_response=make(leaf), now=NOW)  # type: ignore[operator]
    assert not plan.static and "ssl_stapling_file /etc/a.der: not stapled" in plan.warnings[0]
    assert words in plan.warnings[0]


def test_refusal_follows_the_policy() -> None:
    leaf = issue(INTER, "a.test", ocsp_urls=[AIA])
    must = issue(INTER, "m.test", ocsp_urls=[AIA], must_staple=True)
    held = {ocsp_key(leaf.cert, INTER.cert): answer(leaf, INTER, "revoked")}
    for policy, expected in ((StaplingPolicy.LENIENT, None), (StaplingPolicy.STRICT, "revoked"),
                             (StaplingPolicy.MUST_STAPLE, "revoked")):
        plan = build_stapling_plan(StaplingSettings(True, ocsp_staple_policy=policy),
                                   [entity(leaf, "a"), entity(must, "m")], now=NOW)
        assert plan.refusal("a", held.get, now=NOW) == expected
        nothing = "must_staple_without_response" if policy is StaplingPolicy.MUST_STAPLE else None
        assert plan.refusal("m", held.get, now=NOW) == nothing  # no answer yet
        assert plan.refusal("unknown-id", held.get, now=NOW) is None
    good = {ocsp_key(leaf.cert, INTER.cert): answer(leaf, INTER, "good")}
    strict = build_stapling_plan(StaplingSettings(True, ocsp_staple_policy=StaplingPolicy.STRICT),
                                 [entity(leaf, "a")], now=NOW)
    assert strict.refusal("a", good.get, now=NOW) is None
    assert strict.refusal("a", good.get, now=DEFAULT_NOT_AFTER) == "stale"  # held, but past nextUpdate


def test_digest_follows_what_the_callbacks_depend_on() -> None:
    leaf = issue(INTER, "a.test", ocsp_urls=[AIA])
    lenient = build_stapling_plan(ON, [entity(leaf)], now=NOW)
    strict = build_stapling_plan(StaplingSettings(True, ocsp_staple_policy=StaplingPolicy.STRICT), [entity(leaf)],
                                 now=NOW)
    assert lenient.digest == build_stapling_plan(ON, [entity(leaf)], now=NOW).digest != strict.digest


def test_every_refusal_has_a_handshake_reason_code() -> None:
    from trio_gw.tls.handshake_errors import HANDSHAKE_REASONS

    for reason in ("revoked", "unknown", "stale", "must_staple_without_response"):
        assert f"ocsp_{reason}" in HANDSHAKE_REASONS  # what the SNI callback records
