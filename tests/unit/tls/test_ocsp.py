"""OCSP requests, response verification, refresh timing and must-staple (trio_gw.tls.ocsp).

Every accepted case sits beside the failing ones: wrong signer, stale, future
thisUpdate, wrong CertID, revoked, unknown, a responder without OCSPSigning.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import build_certificate, issue, make_ca
from trio_gw.tls.client_revocation import issuer_in
from trio_gw.tls.ocsp import (
    DEFAULT_CLOCK_SKEW,
    MAX_OCSP_RESPONSE_SIZE,
    MAX_REFRESH_INTERVAL,
    MIN_REFRESH_INTERVAL,
    REFRESH_MARGIN,
    VALIDITY_WITHOUT_NEXT_UPDATE,
    OcspAnswer,
    OcspCertStatus,
    OcspError,
    OcspFailure,
    build_ocsp_request,
    is_fresh,
    is_must_staple,
    ocsp_get_url,
    ocsp_key,
    ocsp_responder_urls,
    plan_next_fetch,
    verify_ocsp_response,
)

NOW = 1_750_000_000
CA = make_ca(common_name="ocsp root")
OTHER_CA = make_ca(common_name="ocsp other root")
IMPOSTOR = make_ca(common_name="ocsp root")  # CA's name, another key
LEAF = issue(CA, "good.example", ocsp_urls=["http://ocsp.example/a", "http://ocsp.example/a", "ldap://x"])
SIBLING = issue(CA, "sibling.example")
DELEGATE = build_certificate(issuer=CA, common_name="ocsp responder", ekus=[ExtendedKeyUsageOID.OCSP_SIGNING],
                             ocsp_nocheck=True)
DELEGATE_WITHOUT_NOCHECK = build_certificate(issuer=CA, common_name="ocsp responder 2",
                                             ekus=[ExtendedKeyUsageOID.OCSP_SIGNING])
DELEGATE_WITHOUT_EKU = build_certificate(issuer=CA, common_name="not a responder", ekus=[
    ExtendedKeyUsageOID.SERVER_AUTH])
FOREIGN_DELEGATE = build_certificate(issuer=OTHER_CA, common_name="foreign responder",
                                     ekus=[ExtendedKeyUsageOID.OCSP_SIGNING])
EXPIRED_DELEGATE = build_certificate(issuer=CA, common_name="old responder", ekus=[ExtendedKeyUsageOID.OCSP_SIGNING],
                                     not_before=NOW - 10 * 86400, not_after=NOW - 86400)


def verify(der: bytes, *, now: float = NOW, leaf: x509.Certificate = LEAF.cert, **kw: object) -> OcspAnswer:
    return verify_ocsp_response(der, leaf, CA.cert, now=now, **kw)  # type: ignore[arg-type]


def failure(der: bytes, **kw: object) -> OcspFailure:
    with pytest.raises(OcspError) as info:
        verify(der, **kw)  # type: ignore[arg-type]
    return info.value.reason


# -- requests ----------------------------------------------------------------------


def test_request_carries_the_certid_of_leaf_and_issuer() -> None:
    request = ocsp.load_der_ocsp_request(build_ocsp_request(LEAF.cert, CA.cert))
    assert request.serial_number == LEAF.cert.serial_number
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert request.issuer_key_hash == x509.SubjectKeyIdentifier.from_public_key(CA.cert.public_key()).digest


def test_get_url_is_rfc6960_appendix_a() -> None:
    der = build_ocsp_request(LEAF.cert, CA.cert)
    url = ocsp_get_url("http://ocsp.example/a/", der)
    assert url is not None and url.startswith("http://ocsp.example/a/")
    assert base64.b64decode(unquote(url.rsplit("/", 1)[1])) == der
    assert "+" not in url.rsplit("/", 1)[1] and "/" not in url.rsplit("/", 1)[1]
    assert ocsp_get_url("http://ocsp.example", b"\x30" * 300) is None  # too long: POST it


def test_responder_urls_from_aia() -> None:
    assert ocsp_responder_urls(LEAF.cert) == ("http://ocsp.example/a",)
    assert ocsp_responder_urls(SIBLING.cert) == ()


def test_key_names_issuer_key_and_serial() -> None:
    assert ocsp_key(LEAF.cert, CA.cert) != ocsp_key(LEAF.cert, IMPOSTOR.cert)
    assert ocsp_key(LEAF.cert, CA.cert) != ocsp_key(SIBLING.cert, CA.cert)
    assert ocsp_key(LEAF.cert, CA.cert).endswith(f":{LEAF.cert.serial_number:x}")


def test_must_staple_detection() -> None:
    assert is_must_staple(issue(CA, "staple.example", must_staple=True).cert)
    assert not is_must_staple(LEAF.cert)


def test_issuer_in_finds_the_signer_not_a_namesake() -> None:
    assert issuer_in(LEAF.cert, [IMPOSTOR.cert, OTHER_CA.cert, CA.cert]) == CA.cert
    assert issuer_in(LEAF.cert, [IMPOSTOR.cert, OTHER_CA.cert]) is None


# -- verification ------------------------------------------------------------------------


def test_good_signed_by_the_issuer() -> None:
    answer = verify(ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW))
    assert answer.status is OcspCertStatus.GOOD and not answer.delegated
    assert answer.this_update == NOW - 3600 and answer.fresh_until == NOW + 86400
    assert answer.serial_number == LEAF.cert.serial_number


def test_good_by_responder_name_and_sha256_certid() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, by_name=True, hash_algorithm=hashes.SHA256())
    assert verify(der).status is OcspCertStatus.GOOD


def test_revoked_carries_reason_and_time() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, "revoked", now=NOW, revoked_at=NOW - 50,
                            reason=x509.ReasonFlags.key_compromise)
    answer = verify(der)
    assert answer.status is OcspCertStatus.REVOKED
    assert (answer.revocation_reason, answer.revocation_time) == ("keyCompromise", NOW - 50)


def test_revoked_without_reason_is_unspecified() -> None:
    answer = verify(ocsp_response_der(CA, LEAF.cert.serial_number, "revoked", now=NOW))
    assert answer.revocation_reason == "unspecified"


def test_unknown_status() -> None:
    assert verify(ocsp_response_der(CA, LEAF.cert.serial_number, "unknown", now=NOW)).status is OcspCertStatus.UNKNOWN


def test_delegated_responder_with_ocsp_signing() -> None:
    answer = verify(ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=DELEGATE))
    assert answer.delegated and answer.responder_nocheck
    plain = verify(ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=DELEGATE_WITHOUT_NOCHECK))
    assert plain.delegated and not plain.responder_nocheck


def test_delegate_without_nocheck_refused_when_required() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=DELEGATE_WITHOUT_NOCHECK)
    assert failure(der, require_nocheck=True) is OcspFailure.UNAUTHORIZED_SIGNER
    assert verify(ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=DELEGATE),
                  require_nocheck=True).delegated


@pytest.mark.parametrize("signer", [DELEGATE_WITHOUT_EKU, FOREIGN_DELEGATE, EXPIRED_DELEGATE, OTHER_CA, IMPOSTOR],
                         ids=["no-ocsp-signing-eku", "issued-by-another-ca", "expired-delegate", "another-ca",
                              "same-name-other-key"])
def test_wrong_signer(signer: object) -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=signer)  # type: ignore[arg-type]
    assert failure(der) in (OcspFailure.UNAUTHORIZED_SIGNER, OcspFailure.BAD_SIGNATURE)


def test_check_signer_off_still_checks_certid_and_freshness() -> None:
    """nginx's ssl_stapling_verify off: the signer is not checked, nothing else is skipped."""
    forged = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=OTHER_CA)
    assert verify(forged, check_signer=False).status is OcspCertStatus.GOOD
    assert failure(forged) is OcspFailure.UNAUTHORIZED_SIGNER
    other = ocsp_response_der(CA, SIBLING.cert.serial_number, now=NOW, signer=OTHER_CA)
    assert failure(other, check_signer=False) is OcspFailure.NO_MATCHING_RESPONSE
    assert failure(forged, check_signer=False, now=NOW + 3 * 86400) is OcspFailure.STALE


def test_impostor_named_responder_fails_the_signature() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=IMPOSTOR, by_name=True)
    assert failure(der) is OcspFailure.BAD_SIGNATURE


def test_tampered_signature() -> None:
    der = bytearray(ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW))
    der[-5] ^= 0xFF
    assert failure(bytes(der)) in (OcspFailure.BAD_SIGNATURE, OcspFailure.MALFORMED)


def test_wrong_certid() -> None:
    assert failure(ocsp_response_der(CA, SIBLING.cert.serial_number, now=NOW)) is OcspFailure.NO_MATCHING_RESPONSE
    wrong_key = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, key_hash=b"\x00" * 20)
    assert failure(wrong_key) is OcspFailure.NO_MATCHING_RESPONSE
    wrong_name = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, name_hash=b"\x01" * 20)
    assert failure(wrong_name) is OcspFailure.NO_MATCHING_RESPONSE


def test_stale_and_the_skew_allowance() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, this_update=NOW - 7200, next_update=NOW - 60)
    assert verify(der).status is OcspCertStatus.GOOD  # within the five-minute skew
    assert failure(der, now=NOW + DEFAULT_CLOCK_SKEW) is OcspFailure.STALE


def test_future_this_update() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, this_update=NOW + 60, next_update=NOW + 7200)
    assert verify(der).status is OcspCertStatus.GOOD  # a responder clock a minute ahead
    late = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, this_update=NOW + 3600, next_update=NOW + 7200)
    assert failure(late) is OcspFailure.NOT_YET_VALID


def test_no_next_update_is_fresh_for_a_while() -> None:
    der = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, this_update=NOW - 60, next_update=None)
    answer = verify(der)
    assert answer.next_update is None and answer.fresh_until == NOW - 60 + VALIDITY_WITHOUT_NEXT_UPDATE
    assert failure(der, now=NOW + VALIDITY_WITHOUT_NEXT_UPDATE + DEFAULT_CLOCK_SKEW) is OcspFailure.STALE


@pytest.mark.parametrize("status", [ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.UNAUTHORIZED,
                                    ocsp.OCSPResponseStatus.INTERNAL_ERROR])
def test_unsuccessful_response(status: ocsp.OCSPResponseStatus) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
    with pytest.raises(OcspError) as info:
        verify(der)
    assert info.value.reason is OcspFailure.RESPONDER_ERROR and status.name.lower() in str(info.value)


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x0a\x01\x00"])
def test_malformed(data: bytes) -> None:
    assert failure(data) is OcspFailure.MALFORMED


def test_too_large() -> None:
    assert failure(b"\x30" * (MAX_OCSP_RESPONSE_SIZE + 1)) is OcspFailure.TOO_LARGE


def test_ed25519_issuer() -> None:
    ed_ca = make_ca(common_name="ed root", key_kind="ed25519")
    leaf = issue(ed_ca, "ed.example")
    der = ocsp_response_der(ed_ca, leaf.cert.serial_number, now=NOW)
    assert verify_ocsp_response(der, leaf.cert, ed_ca.cert, now=NOW).status is OcspCertStatus.GOOD


# -- refresh timing ----------------------------------------------------------------------


def answer_at(this_update: int, fresh_until: int) -> OcspAnswer:
    return OcspAnswer(OcspCertStatus.GOOD, 1, this_update, fresh_until, this_update, b"", fresh_until)


def test_plan_without_answer_fetches_now_then_backs_off() -> None:
    assert plan_next_fetch(None, now=NOW) == NOW
    assert [plan_next_fetch(None, now=NOW, failures=f) - NOW for f in (1, 2, 3, 10, 100)] == [
        60, 120, 240, 3600, 3600]


def test_plan_follows_nginx_for_a_fresh_answer() -> None:
    long = answer_at(NOW - 60, NOW + 7 * 86400)
    assert plan_next_fetch(long, now=NOW) == NOW + MAX_REFRESH_INTERVAL
    short = answer_at(NOW - 60, NOW + 1200)
    assert plan_next_fetch(short, now=NOW) == NOW + 1200 - REFRESH_MARGIN
    tiny = answer_at(NOW - 60, NOW + 30)
    assert plan_next_fetch(tiny, now=NOW) == NOW + MIN_REFRESH_INTERVAL


def test_plan_retries_before_a_good_answer_expires() -> None:
    answer = answer_at(NOW - 60, NOW + 1000)
    assert plan_next_fetch(answer, now=NOW, failures=10) == NOW + 1000 - REFRESH_MARGIN
    assert plan_next_fetch(answer, now=NOW, failures=1) == NOW + 60
    stale = answer_at(NOW - 9000, NOW - 10)
    assert plan_next_fetch(stale, now=NOW) == NOW and plan_next_fetch(stale, now=NOW, failures=2) == NOW + 120


answers = st.builds(
    lambda start, length: answer_at(NOW + start, NOW + start + length),
    st.integers(-10 * 86400, 86400), st.integers(0, 30 * 86400),
)


@given(answers, st.integers(0, 40), st.integers(0, 10 * 86400))
def test_plan_properties(answer: OcspAnswer, failures: int, later: int) -> None:
    now = NOW + later
    at = plan_next_fetch(answer, now=now, failures=failures)
    assert now <= at <= now + MAX_REFRESH_INTERVAL
    if is_fresh(answer, now, skew=0):
        assert at >= now + min(60, MIN_REFRESH_INTERVAL)
        assert at <= max(answer.fresh_until - REFRESH_MARGIN, now + MIN_REFRESH_INTERVAL)
    assert plan_next_fetch(None, now=now, failures=failures + 1) >= plan_next_fetch(None, now=now, failures=failures)


@given(st.integers(-86400, 86400), st.integers(60, 7 * 86400), st.sampled_from(["good", "revoked", "unknown"]))
def test_verify_property_fresh_iff_within_window(offset: int, validity: int, status: str) -> None:
    """Any response about LEAF signed by CA verifies exactly while now is inside [thisUpdate, nextUpdate] +- skew."""
    this_update = NOW - 3600
    der = ocsp_response_der(CA, LEAF.cert.serial_number, status, now=NOW, this_update=this_update,
                            next_update=this_update + validity)
    now = NOW + offset
    inside = this_update - DEFAULT_CLOCK_SKEW <= now <= this_update + validity + DEFAULT_CLOCK_SKEW
    if inside:
        assert verify(der, now=now).status.value == status
    else:
        assert failure(der, now=now) in (OcspFailure.STALE, OcspFailure.NOT_YET_VALID)


GOOD_DER = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW)
DELEGATED_DER = ocsp_response_der(CA, LEAF.cert.serial_number, now=NOW, signer=DELEGATE)


@given(st.binary(max_size=2048))
def test_any_bytes_give_an_answer_or_ocsp_error(data: bytes) -> None:
    """Invariant: a fetched body is an OcspAnswer or an OcspError, never another exception."""
    try:
        verify(data)
    except OcspError:
        pass


@given(st.sampled_from([GOOD_DER, DELEGATED_DER]), st.data())
def test_mutated_responses_never_verify_wrongly(der: bytes, data: st.DataObject) -> None:
    """Flipping any byte of a signed response gives OcspError, or the very same answer (unsigned parts)."""
    index = data.draw(st.integers(0, len(der) - 1))
    mask = data.draw(st.integers(1, 255))
    mutated = der[:index] + bytes([der[index] ^ mask]) + der[index + 1:]
    try:
        answer = verify(mutated)
    except OcspError:
        return
    original = verify(der)
    assert (answer.status, answer.serial_number, answer.this_update, answer.fresh_until) == (
        original.status, original.serial_number, original.this_update, original.fresh_until)
