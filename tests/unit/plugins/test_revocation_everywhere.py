"""Issue 15: the same revocation check wherever a client certificate is trusted.

mtls-auth, header-cert-auth and mtls-allowlist (CA-issued and listed leaves)
consult the OCSP cache first, then CRLs, under Kong's ``revocation_check_mode``,
and answer ``revoked`` or ``revocation_unknown`` -- never ``revoked`` for a
certificate whose status is merely unknown.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from trio_gw.plugins.base import Allow, Deny, RequestContext
from trio_gw.plugins.crl_cache import CrlCache
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.testing.ocsp_responder import ocsp_response_der
from trio_gw.testing.pki import Issued, build_certificate, crl_pem

from .conftest import CA_ID, NOW, OTHER_CA_ID, Pki, document, load, request, run
from .test_other_plugins import fp

RESPONDER = "http://ocsp.clients.test/"


def leaf(pki: Pki, name: str, **kw: Any) -> Issued:
    return build_certificate(issuer=pki.ca, common_name=name, ocsp_urls=[RESPONDER], **kw)


def with_ocsp(req: RequestContext, pki: Pki, *answers: tuple[Issued, str]) -> RequestContext:
    """The request, its OCSP cache holding what the responder said about each certificate."""
    cache = OcspCache()
    for cert, status in answers:
        assert cache.answer_for(cert.cert, pki.ca.cert, NOW) is None  # the miss the IO layer sees
    for target in cache.due(NOW):
        status = next(s for c, s in answers if c.cert == target.leaf)
        cache.store(target.key, ocsp_response_der(pki.ca, target.leaf.serial_number, status, now=NOW), NOW)
    return dataclasses.replace(req, ocsp_source=cache, crl_source=CrlCache())


def mtls(mode: str) -> dict[str, Any]:
    return {"name": "mtls-auth", "config": {"ca_certificates": [CA_ID], "revocation_check_mode": mode,
                                            "skip_consumer_lookup": True}}


def hca(mode: str) -> dict[str, Any]:
    return {"name": "header-cert-auth", "config": {
        "ca_certificates": [CA_ID], "revocation_check_mode": mode, "skip_consumer_lookup": True,
        "certificate_header_name": "x-client-cert", "certificate_header_format": "base64_encoded"}}


def allowlist(mode: str, *entries: str) -> dict[str, Any]:
    return {"name": "mtls-allowlist", "config": {"certificates": list(entries), "revocation_check_mode": mode}}


def header_request(cert: Issued) -> RequestContext:
    value = base64.b64encode(cert.cert_der())
    return request(None, tls=False, sni=None, headers=[(b"x-client-cert", value)], trusted=True)


@pytest.mark.parametrize("kind", ["mtls-auth", "header-cert-auth", "mtls-allowlist-ca", "mtls-allowlist-leaf"])
@pytest.mark.parametrize("mode, status, expected", [
    ("IGNORE_CA_ERROR", "good", None),
    ("IGNORE_CA_ERROR", "revoked", "revoked"),
    ("IGNORE_CA_ERROR", "unknown", None),
    ("IGNORE_CA_ERROR", None, None),
    ("STRICT", "good", None),
    ("STRICT", "revoked", "revoked"),
    ("STRICT", "unknown", "revocation_unknown"),
    ("STRICT", None, "revocation_unknown"),
    ("SKIP", "revoked", None),
])
def test_one_check_everywhere(pki: Pki, kind: str, mode: str, status: str | None, expected: str | None) -> None:
    cert = leaf(pki, f"{kind}-{mode}-{status}")
    plugin = {"mtls-auth": mtls(mode), "header-cert-auth": hca(mode),
              "mtls-allowlist-ca": allowlist(mode, CA_ID),
              "mtls-allowlist-leaf": allowlist(mode, f"sha256:{fp(cert)}")}[kind]
    entities = load(document(pki, plugins=[plugin]))
    base = header_request(cert) if kind == "header-cert-auth" else request(cert, chain=[pki.ca])
    req = with_ocsp(base, pki, (cert, status)) if status else dataclasses.replace(base, crl_source=CrlCache(),
                                                                                  ocsp_source=OcspCache())
    decision = run(entities, req)
    if expected is None:
        assert isinstance(decision, Allow), decision
    else:
        assert isinstance(decision, Deny) and (decision.status, decision.reason) == (401, expected), decision


def test_crl_decides_when_no_ocsp_answer(pki: Pki) -> None:
    """Kong's order: no OCSP answer at hand, a CRL attached to the CA certificate revokes."""
    cert = leaf(pki, "crl-revoked")
    doc = document(pki, plugins=[mtls("STRICT")])
    doc["ca_certificates"][0]["crls"] = [crl_pem(pki.ca, [cert], now=NOW)]
    decision = run(load(doc), dataclasses.replace(request(cert), ocsp_source=OcspCache()))
    assert isinstance(decision, Deny) and decision.reason == "revoked"


def test_a_listed_leaf_without_its_issuer_at_hand(pki: Pki) -> None:
    """An allowlisted CA-issued leaf sent alone, the CA not listed: STRICT cannot learn its status."""
    cert = leaf(pki, "lonely")
    strict = load(document(pki, plugins=[allowlist("STRICT", f"sha256:{fp(cert)}", OTHER_CA_ID)]))
    refused = run(strict, with_ocsp(request(cert), pki, (cert, "good")))
    assert isinstance(refused, Deny) and refused.reason == "revocation_unknown"
    assert isinstance(run(strict, with_ocsp(request(cert, chain=[pki.ca]), pki, (cert, "good"))), Allow)
    lenient = load(document(pki, plugins=[allowlist("IGNORE_CA_ERROR", f"sha256:{fp(cert)}")]))
    assert isinstance(run(lenient, request(cert)), Allow)


def test_allowlist_config_default_and_errors() -> None:
    from trio_gw.errors import ConfigError
    from trio_gw.plugins.base import REGISTRY

    parse = REGISTRY["mtls-allowlist"].parse_config
    assert parse({"certificates": [CA_ID]}, "")["revocation_check_mode"] == "IGNORE_CA_ERROR"
    with pytest.raises(ConfigError, match="revocation_check_mode: expected one of"):
        parse({"certificates": [CA_ID], "revocation_check_mode": "ALWAYS"}, "")
