"""nginx's ssl_ocsp over a listener's own truststore (trio_gw.tls.truststore_revocation)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import ConfigError
from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import Issued, crl_pem, issue, make_ca
from trio_gw.tls.ocsp import OcspAnswer, verify_ocsp_response
from trio_gw.tls.revocation import RevocationCheckMode
from trio_gw.tls.truststore_revocation import (
    TruststoreRevocation,
    build_truststore_revocation,
    check_truststore_revocation,
)

NOW = 1_750_000_000
ROOT = make_ca(common_name="truststore root")
INTER = make_ca(issuer=ROOT, common_name="truststore intermediate")
LEAF = issue(INTER, "client.test")


def der(cert: Issued) -> bytes:
    return cert.cert.public_bytes(Encoding.DER)


class Answers:
    """Verified OCSP answers by serial, as the node's cache would hold them."""

    def __init__(self, *answers: OcspAnswer) -> None:
        self.by_serial = {a.serial_number: a for a in answers}
        self.asked: list[int] = []

    def answer_for(self, cert: x509.Certificate, issuer: x509.Certificate, now: float) -> OcspAnswer | None:
        self.asked.append(cert.serial_number)
        return self.by_serial.get(cert.serial_number)


def ocsp(leaf: Issued, issuer: Issued, status: str) -> OcspAnswer:
    data = ocsp_response_der(issuer, leaf.cert.serial_number, status, now=NOW)
    return verify_ocsp_response(data, leaf.cert, issuer.cert, now=NOW)


def policy(value: str, crls: tuple[str, ...] = ()) -> TruststoreRevocation:
    return build_truststore_revocation("ssl_ocsp", value, [ROOT.cert_pem()], [c.encode() for c in crls],
                                       crl_setting="ssl_crl")


def test_off_checks_nothing() -> None:
    off = policy("off")
    assert not off.active and off.mode is RevocationCheckMode.SKIP
    assert check_truststore_revocation(off, der(LEAF), [der(INTER)], crl_for=None, ocsp=None, now=NOW) is None


@pytest.mark.parametrize("value, crls, message", [
    ("sometimes", (), "ssl_ocsp: expected on, off or leaf, got 'sometimes'"),
    ("leaf", ("not a CRL",), "ssl_crl[0]"),
])
def test_bad_configuration_names_the_setting(value: str, crls: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy(value, crls)
    assert message in str(info.value)


def test_ocsp_first() -> None:
    good = Answers(ocsp(LEAF, INTER, "good"))
    assert check_truststore_revocation(policy("leaf"), der(LEAF), [der(INTER)], crl_for=None, ocsp=good,
                                       now=NOW) is None
    revoked = Answers(ocsp(LEAF, INTER, "revoked"))
    refusal = check_truststore_revocation(policy("leaf"), der(LEAF), [der(INTER)], crl_for=None, ocsp=revoked,
                                          now=NOW)
    assert refusal is not None and refusal[0] == "revoked" and "ocsp" in refusal[1]


def test_then_crls_then_unknown() -> None:
    listed = policy("leaf", (crl_pem(INTER, [LEAF], now=NOW),))
    refusal = check_truststore_revocation(listed, der(LEAF), [der(INTER)], crl_for=None, ocsp=Answers(), now=NOW)
    assert refusal is not None and refusal[0] == "revoked"
    clean = policy("leaf", (crl_pem(INTER, [], now=NOW),))
    assert check_truststore_revocation(clean, der(LEAF), [der(INTER)], crl_for=None, ocsp=Answers(), now=NOW) is None
    nothing = check_truststore_revocation(policy("leaf"), der(LEAF), [der(INTER)], crl_for=None, ocsp=Answers(),
                                          now=NOW)
    assert nothing is not None and nothing[0] == "revocation_unknown"  # nginx fails closed: not "revoked"


def test_distribution_point_crls_come_from_the_cache() -> None:
    url = "http://127.0.0.1:9/inter.crl"
    leaf = issue(INTER, "dp.test", crl_urls=[url])
    crl = x509.load_pem_x509_crl(crl_pem(INTER, [leaf], now=NOW).encode())
    asked: list[str] = []

    def crl_for(where: str, now: float) -> x509.CertificateRevocationList | None:
        asked.append(where)
        return crl if where == url else None

    refusal = check_truststore_revocation(policy("leaf"), der(leaf), [der(INTER)], crl_for=crl_for, ocsp=None,
                                          now=NOW)
    assert refusal is not None and refusal[0] == "revoked" and asked == [url]


def test_on_checks_the_chain_leaf_only_the_leaf() -> None:
    revoked_inter = policy("on", (crl_pem(ROOT, [INTER], now=NOW), crl_pem(INTER, [], now=NOW)))
    refusal = check_truststore_revocation(revoked_inter, der(LEAF), [der(INTER)], crl_for=None, ocsp=None, now=NOW)
    assert refusal is not None and refusal[0] == "revoked"
    leaf_only = policy("leaf", (crl_pem(ROOT, [INTER], now=NOW), crl_pem(INTER, [], now=NOW)))
    assert check_truststore_revocation(leaf_only, der(LEAF), [der(INTER)], crl_for=None, ocsp=None, now=NOW) is None


def test_a_certificate_of_another_truststore_is_not_judged_here() -> None:
    """Admitted by a route's CA in the listener's union: that route's plugin checks it."""
    stranger = issue(make_ca(common_name="route CA"), "other.test")
    assert check_truststore_revocation(policy("leaf"), der(stranger), [], crl_for=None, ocsp=Answers(),
                                       now=NOW) is None
    without_intermediate = check_truststore_revocation(policy("leaf"), der(LEAF), [], crl_for=None,
                                                       ocsp=Answers(), now=NOW)
    assert without_intermediate is None  # the path to the anchor cannot be rebuilt (a resumed session)
    assert check_truststore_revocation(policy("leaf"), b"garbage", [], crl_for=None, ocsp=None, now=NOW) is None


def test_a_leaf_issued_by_the_anchor_itself() -> None:
    direct = issue(ROOT, "direct.test")
    answers = Answers(ocsp(direct, ROOT, "revoked"))
    refusal = check_truststore_revocation(policy("leaf"), der(direct), [], crl_for=None, ocsp=answers, now=NOW)
    assert refusal is not None and refusal[0] == "revoked" and answers.asked == [direct.cert.serial_number]
