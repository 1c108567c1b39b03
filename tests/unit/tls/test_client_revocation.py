"""Client-certificate revocation: OCSP first, then CRLs, under Kong's modes (trio_gw.tls.client_revocation)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.pki.info import unix_seconds
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.client_auth import ClientCertPolicy, ClientCertReason, ClientCertRejected, verify_client_certificate
from trio_gw.tls.client_revocation import (
    check_chain_revocation,
    check_pinned_revocation,
    parse_ssl_ocsp,
    revocation_refusal,
)
from trio_gw.tls.ocsp import OcspAnswer, verify_ocsp_response
from trio_gw.tls.revocation import CrlCheck, RevocationCheckMode, RevocationStatus

from .conftest import NOW, MakeCrl

TS = unix_seconds(NOW)
ROOT = make_ca(common_name="rev root")
INTER = make_ca(issuer=ROOT, common_name="rev intermediate")
LEAF = issue(ROOT, "alice.example", ocsp_urls=["http://ocsp.test/root"])
DEEP = issue(INTER, "deep.example", ocsp_urls=["http://ocsp.test/inter"])
SKIP, IGNORE, STRICT = RevocationCheckMode.SKIP, RevocationCheckMode.IGNORE_CA_ERROR, RevocationCheckMode.STRICT


class Answers:
    """A fixed OcspAnswers: verified answers by serial number."""

    def __init__(self, *answers: OcspAnswer) -> None:
        self.by_serial = {a.serial_number: a for a in answers}
        self.asked: list[int] = []

    def answer_for(self, cert: x509.Certificate, issuer: x509.Certificate, now: float) -> OcspAnswer | None:
        self.asked.append(cert.serial_number)
        return self.by_serial.get(cert.serial_number)


def answer(leaf: x509.Certificate, issuer: object, status: str, **kw: object) -> OcspAnswer:
    der = ocsp_response_der(issuer, leaf.serial_number, status, now=TS, **kw)  # type: ignore[arg-type]
    return verify_ocsp_response(der, leaf, issuer.cert, now=TS)  # type: ignore[attr-defined]


def chain() -> list[x509.Certificate]:
    return [LEAF.cert, ROOT.cert]


def test_ocsp_good_decides_before_crls(make_crl: MakeCrl) -> None:
    revoking_crl = make_crl(ROOT, [LEAF.cert.serial_number])
    (check,) = check_chain_revocation(chain(), crls=[revoking_crl], ocsp=Answers(answer(LEAF.cert, ROOT, "good")),
                                      now=NOW)
    assert (check.status, check.source) == (RevocationStatus.GOOD, "ocsp")  # Kong: OCSP first


def test_ocsp_revoked_with_reason() -> None:
    ocsp = Answers(answer(LEAF.cert, ROOT, "revoked", reason=x509.ReasonFlags.superseded))
    (check,) = check_chain_revocation(chain(), ocsp=ocsp, now=NOW)
    assert (check.status, check.detail, check.source) == (RevocationStatus.REVOKED, "superseded", "ocsp")
    assert revocation_refusal([check], IGNORE) == ("revoked", "revoked (ocsp: superseded)")


def test_ocsp_unknown_falls_back_to_crls(make_crl: MakeCrl) -> None:
    ocsp = Answers(answer(LEAF.cert, ROOT, "unknown"))
    (revoked,) = check_chain_revocation(chain(), crls=[make_crl(ROOT, [LEAF.cert.serial_number])], ocsp=ocsp, now=NOW)
    assert (revoked.status, revoked.source) == (RevocationStatus.REVOKED, "crl")
    (unknown,) = check_chain_revocation(chain(), ocsp=ocsp, now=NOW)
    assert unknown.status is RevocationStatus.UNKNOWN and "ocsp: unknown to the responder" in unknown.detail


def test_stale_ocsp_answer_is_not_used(make_crl: MakeCrl) -> None:
    old = answer(LEAF.cert, ROOT, "revoked", this_update=TS - 7200, next_update=TS + 10)
    later = NOW + timedelta(hours=1)
    (check,) = check_chain_revocation(chain(), crls=[make_crl(ROOT, [])], ocsp=Answers(old), now=later)
    assert (check.status, check.source) == (RevocationStatus.GOOD, "crl")


def test_no_answer_no_crl_is_unknown() -> None:
    (check,) = check_chain_revocation(chain(), ocsp=Answers(), now=NOW)
    assert check.status is RevocationStatus.UNKNOWN and check.source == "none"
    assert "ocsp: no answer at hand" in check.detail and "crl: no CRL for this issuer" in check.detail


def test_full_chain_asks_about_the_intermediate_against_the_root() -> None:
    ocsp = Answers(answer(DEEP.cert, INTER, "good"), answer(INTER.cert, ROOT, "revoked"))
    checks = check_chain_revocation([DEEP.cert, INTER.cert, ROOT.cert], ocsp=ocsp, now=NOW, full_chain=True)
    assert [c.status for c in checks] == [RevocationStatus.GOOD, RevocationStatus.REVOKED]
    assert check_chain_revocation([DEEP.cert, INTER.cert, ROOT.cert], ocsp=ocsp, now=NOW)[0].status is (
        RevocationStatus.GOOD)


@pytest.mark.parametrize("mode, status, refusal", [
    (SKIP, RevocationStatus.REVOKED, None),
    (SKIP, RevocationStatus.UNKNOWN, None),
    (IGNORE, RevocationStatus.GOOD, None),
    (IGNORE, RevocationStatus.UNKNOWN, None),
    (IGNORE, RevocationStatus.REVOKED, "revoked"),
    (STRICT, RevocationStatus.GOOD, None),
    (STRICT, RevocationStatus.UNKNOWN, "revocation_unknown"),
    (STRICT, RevocationStatus.REVOKED, "revoked"),
])
def test_modes(mode: RevocationCheckMode, status: RevocationStatus, refusal: str | None) -> None:
    result = revocation_refusal([CrlCheck(status, 1, "why")], mode)
    assert (result[0] if result else None) == refusal


@given(st.lists(st.sampled_from(list(RevocationStatus)), max_size=4), st.sampled_from(list(RevocationCheckMode)))
def test_refusal_properties(statuses: list[RevocationStatus], mode: RevocationCheckMode) -> None:
    result = revocation_refusal([CrlCheck(s, i) for i, s in enumerate(statuses)], mode)
    if mode is SKIP or all(s is RevocationStatus.GOOD for s in statuses):
        assert result is None
    elif RevocationStatus.REVOKED in statuses:
        assert result is not None and result[0] == "revoked"  # revoked wins over unknown
    else:
        assert (result is not None) == (mode is STRICT)


@pytest.mark.parametrize("value, parsed", [("off", (SKIP, False)), ("on", (STRICT, True)), (" Leaf ", (STRICT, False)),
                                           (True, (STRICT, True)), (False, (SKIP, False))])
def test_nginx_ssl_ocsp(value: object, parsed: tuple[RevocationCheckMode, bool]) -> None:
    assert parse_ssl_ocsp(value) == parsed


def test_nginx_ssl_ocsp_error_names_the_setting() -> None:
    from trio_gw.errors import ConfigError

    with pytest.raises(ConfigError, match="admin_ssl_ocsp: expected on, off or leaf, got 'chain'"):
        parse_ssl_ocsp("chain", "admin_ssl_ocsp")


def test_strict_without_any_source_is_revocation_unknown_not_revoked() -> None:
    """The bug of issue 15: STRICT with no CRL at hand answered a good certificate "revoked"."""
    policy = ClientCertPolicy([ROOT.cert], revocation_check_mode="STRICT")
    with pytest.raises(ClientCertRejected) as info:
        verify_client_certificate(LEAF.cert_der(), [], policy, now=NOW)
    assert info.value.reason is ClientCertReason.REVOCATION_UNKNOWN and info.value.error_status_hint == 401
    good = Answers(answer(LEAF.cert, ROOT, "good"))
    assert verify_client_certificate(LEAF.cert_der(), [], policy, now=NOW, ocsp=good).revocation[0].source == "ocsp"
    revoked = Answers(answer(LEAF.cert, ROOT, "revoked"))
    with pytest.raises(ClientCertRejected) as info:
        verify_client_certificate(LEAF.cert_der(), [], policy, now=NOW, ocsp=revoked)
    assert info.value.reason is ClientCertReason.REVOKED


def test_skip_never_asks() -> None:
    ocsp = Answers(answer(LEAF.cert, ROOT, "revoked"))
    policy = ClientCertPolicy([ROOT.cert], revocation_check_mode="SKIP")
    assert verify_client_certificate(LEAF.cert_der(), [], policy, now=NOW, ocsp=ocsp).revocation == ()
    assert ocsp.asked == []


def test_pinned_leaf_issuer_found_among_candidates() -> None:
    ocsp = Answers(answer(DEEP.cert, INTER, "revoked"))
    (check,) = check_pinned_revocation(DEEP.cert, [ROOT.cert, INTER.cert], ocsp=ocsp, now=NOW)
    assert check.status is RevocationStatus.REVOKED
    (missing,) = check_pinned_revocation(DEEP.cert, [ROOT.cert], ocsp=ocsp, now=NOW)
    assert (missing.status, missing.detail) == (RevocationStatus.UNKNOWN, "issuer not at hand")
    assert check_pinned_revocation(ROOT.cert, [], ocsp=ocsp, now=NOW) == ()  # self-signed: nothing to ask


# -- the OCSP cache ----------------------------------------------------------------------------


def test_cache_miss_is_wanted_then_stored_and_reused_within_ttl() -> None:
    cache = OcspCache(ttl=60)
    assert cache.answer_for(LEAF.cert, ROOT.cert, TS) is None
    (target,) = cache.due(TS)
    assert target.urls == ("http://ocsp.test/root",) and target.leaf == LEAF.cert
    cache.store(target.key, ocsp_response_der(ROOT, LEAF.cert.serial_number, now=TS), TS)
    assert cache.due(TS) == ()
    assert cache.answer_for(LEAF.cert, ROOT.cert, TS + 30) is not None
    assert cache.answer_for(LEAF.cert, ROOT.cert, TS + 61) is None  # cert_cache_ttl passed: asked again
    assert [t.key for t in cache.due(TS + 61)] == [target.key]


def test_cache_refuses_a_response_that_proves_nothing_and_backs_off() -> None:
    from trio_gw.tls.ocsp import OcspError

    cache = OcspCache()
    cache.answer_for(LEAF.cert, ROOT.cert, TS)
    (target,) = cache.due(TS)
    other = make_ca(common_name="rev root")
    with pytest.raises(OcspError):
        cache.store(target.key, ocsp_response_der(other, LEAF.cert.serial_number, now=TS), TS)
    cache.failed(target.key, TS)
    assert cache.due(TS) == () and cache.due(TS + 60) == (target,) and cache.failures(target.key) == 1
    assert cache.answer_for(LEAF.cert, ROOT.cert, TS + 1) is None


def test_certificates_without_a_responder_are_not_wanted() -> None:
    cache = OcspCache()
    plain = issue(ROOT, "plain.example")
    assert cache.answer_for(plain.cert, ROOT.cert, TS) is None and cache.due(TS) == ()
    assert cache.track(plain.cert, ROOT.cert) is None
    assert OcspCache(responder="http://override.test/").track(plain.cert, ROOT.cert) is not None


def test_tracked_certificates_follow_the_refresh_plan() -> None:
    cache = OcspCache()
    key = cache.track(LEAF.cert, ROOT.cert)
    assert key is not None and [t.key for t in cache.due(TS)] == [key]
    cache.store(key, ocsp_response_der(ROOT, LEAF.cert.serial_number, now=TS), TS)
    assert cache.current(key) is not None and cache.due(TS + 3599) == () and len(cache.due(TS + 3600)) == 1
    cache.retain_only(set())
    assert cache.due(TS + 3600) == () and cache.current(key) is None


def test_static_response_is_never_refetched() -> None:
    cache = OcspCache()
    key = cache.load_static(LEAF.cert, ROOT.cert, ocsp_response_der(ROOT, LEAF.cert.serial_number, now=TS), TS)
    assert cache.current(key) is not None and cache.due(TS + 10**6) == ()
