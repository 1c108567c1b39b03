"""ACME issuance against a real pebble, validating challenges against listeners the test runs.

pebble (Debian's package, ``make system-tools``) is started per test on free
127.0.0.1 ports; its ``-dnsserver`` is a stub resolving every name to
127.0.0.1, and its ``httpPort``/``tlsPort`` are the ports of this test's
http-01 responder (trio) and tls-alpn-01 server (stdlib ssl).  The client is
:class:`AcmeIssuer` over certbot's ``acme`` library, run in a worker thread as
the gateway will run it, trusting pebble's TLS through
``outbound_tls_context`` (``lua_ssl_trusted_certificate``).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.acme_client import AcmeAccount, AcmeError, AcmeIssuer, IssuedCertificate
from trio_gw.net.http_fetch import outbound_tls_context
from trio_gw.testing.acme_responders import serve_http01, tls_alpn01_listener
from trio_gw.testing.dns_stub import DnsStub
from trio_gw.testing.pebble import PEBBLE_EAB_KEYS, Pebble, pebble_available, start_pebble
from trio_gw.testing.pki import issue, make_ca
from trio_gw.testing.tls_server import TlsTestServer
from trio_gw.tls.acme import AcmeAction, AcmeConfig, AcmeFailure, parse_acme_config, plan_certificate

if not pebble_available():
    if os.environ.get("CI") == "true":
        pytest.fail("pebble is required under CI=true (tools/install-system-tools.sh pebble)", pytrace=False)
    pytestmark = pytest.mark.skip(reason="pebble is not installed (make system-tools)")

DOMAIN = "api.acme.test"


class WrongKeyAuthorization(ChallengeStore):
    """A listener serving a wrong key authorization (a stale or foreign token answer)."""

    def publish_http01(self, token: str, key_authorization: str) -> None:
        super().publish_http01(token, key_authorization[:-4] + "AAAA")


@dataclass
class Rig:
    """pebble plus the test's challenge listeners."""

    pebble: Pebble
    store: ChallengeStore
    dns: DnsStub
    alpn_server: TlsTestServer

    def config(self, **overrides: object) -> AcmeConfig:
        raw = {"account_email": "ops@acme.test", "api_uri": self.pebble.directory, "tos_accepted": True,
               "cert_type": "ecc", "domains": ["*.acme.test"], **overrides}
        return parse_acme_config(raw)

    def issuer(self, store: ChallengeStore | None = None, **overrides: object) -> AcmeIssuer:
        trust = outbound_tls_context([str(self.pebble.ca_file)])  # lua_ssl_trusted_certificate
        return AcmeIssuer(self.config(**overrides), store or self.store, tls_context=trust, order_deadline=60)


@pytest.fixture
def ordinary_ctx(tmp_path: Path) -> ssl.SSLContext:
    """The name's ordinary certificate (what non-validation handshakes keep getting)."""
    ca = make_ca(common_name="ordinary root")
    leaf = issue(ca, DOMAIN)
    (tmp_path / "o.pem").write_text(leaf.chain_pem())
    (tmp_path / "o.key").write_text(leaf.key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "o.pem", tmp_path / "o.key")
    return ctx


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path, ordinary_ctx: ssl.SSLContext,
              nursery: trio.Nursery) -> AsyncIterator[Rig]:
    options = dict(getattr(request, "param", {}))
    store = WrongKeyAuthorization() if options.pop("wrong_key_authorization", False) else ChallengeStore()
    http = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await nursery.start(serve_http01, store, http)
    with DnsStub() as dns, TlsTestServer(tls_alpn01_listener(store, ordinary_ctx)) as alpn:
        with start_pebble(tmp_path, http_port=http[0].socket.getsockname()[1], tls_port=alpn.port,
                          dns_server=dns.server, **options) as pebble:
            yield Rig(pebble, store, dns, alpn)
    nursery.cancel_scope.cancel()


async def issue_in_thread(issuer: AcmeIssuer, challenge: str = "http-01",
                          domains: tuple[str, ...] = (DOMAIN,)) -> tuple[AcmeAccount, IssuedCertificate]:
    def work() -> tuple[AcmeAccount, IssuedCertificate]:
        account = issuer.register()
        return account, issuer.issue(account, domains, challenge=challenge)

    return await trio.to_thread.run_sync(work)


def check_issued(issued: IssuedCertificate, pebble: Pebble, key_type: type) -> x509.Certificate:
    chain = x509.load_pem_x509_certificates(issued.cert_pem.encode())
    leaf = chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(issued.domains)
    leaf.verify_directly_issued_by(chain[1])
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    chain[-1].verify_directly_issued_by(root)  # chains to pebble's root of this run
    assert isinstance(leaf.public_key(), key_type)
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(issued.key_pem.encode(), None)
    assert key.public_key() == leaf.public_key()
    return leaf


async def test_http01_issue_then_renew(rig: Rig) -> None:
    issuer = rig.issuer()
    account, issued = await issue_in_thread(issuer)
    leaf = check_issued(issued, rig.pebble, ec.EllipticCurvePublicKey)
    assert rig.store.pending() == (0, 0)  # withdrawn once answered
    assert (DOMAIN, 1) in rig.dns.names  # pebble resolved the name through the stub
    config = rig.config()
    now = int(time.time())
    assert plan_certificate(config, DOMAIN, not_after=issued.not_after, last_failure=None, now=now).action is (
        AcmeAction.NOTHING)
    due = issued.not_after - 13 * 86400
    assert plan_certificate(config, DOMAIN, not_after=issued.not_after, last_failure=None, now=due).action is (
        AcmeAction.RENEW)
    renewed = await trio.to_thread.run_sync(lambda: issuer.issue(issuer.register(account), (DOMAIN,)))
    assert check_issued(renewed, rig.pebble, ec.EllipticCurvePublicKey).serial_number != leaf.serial_number


async def test_rsa_key_of_the_configured_size(rig: Rig) -> None:
    _, issued = await issue_in_thread(rig.issuer(cert_type="rsa", rsa_key_size=2048))
    leaf = check_issued(issued, rig.pebble, rsa.RSAPublicKey)
    assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]


async def test_tls_alpn01_issue(rig: Rig) -> None:
    _, issued = await issue_in_thread(rig.issuer(), challenge="tls-alpn-01")
    check_issued(issued, rig.pebble, ec.EllipticCurvePublicKey)
    assert "acme-tls/1" in rig.alpn_server.alpn  # pebble's validation negotiated acme-tls/1
    assert rig.store.pending() == (0, 0)


@pytest.mark.parametrize("rig", [{"wrong_key_authorization": True}], indirect=True)
async def test_failing_challenge_says_why_and_backs_off(rig: Rig) -> None:
    with pytest.raises(AcmeError) as info:
        await issue_in_thread(rig.issuer())
    error = info.value
    assert error.reason == "challenge_failed"
    assert f"http-01 for {DOMAIN}" in error.detail and "unauthorized" in error.detail.lower(), error.detail
    failed_at = int(time.time())
    failure = AcmeFailure(DOMAIN, failed_at, error.reason, error.detail)
    config = rig.config(fail_backoff_minutes=5)
    plan = plan_certificate(config, DOMAIN, not_after=None, last_failure=failure, now=failed_at + 60)
    assert (plan.action, plan.reason, plan.check_at) == (AcmeAction.WAIT, "backing_off", failed_at + 300)
    assert plan_certificate(config, DOMAIN, not_after=None, last_failure=failure,
                            now=failed_at + 300).action is AcmeAction.ISSUE


@pytest.mark.parametrize("rig", [{"eab": True}], indirect=True)
async def test_external_account_binding(rig: Rig) -> None:
    with pytest.raises(AcmeError) as info:
        await trio.to_thread.run_sync(rig.issuer().register)
    assert info.value.reason == "eab_required" and "eab_kid" in info.value.detail
    wrong = rig.issuer(eab_kid="kid-1", eab_hmac_key=PEBBLE_EAB_KEYS["kid-2"])
    with pytest.raises(AcmeError) as info:
        await trio.to_thread.run_sync(wrong.register)
    assert info.value.reason == "account_refused", info.value
    issuer = rig.issuer(eab_kid="kid-1", eab_hmac_key=PEBBLE_EAB_KEYS["kid-1"])
    _, issued = await issue_in_thread(issuer)
    check_issued(issued, rig.pebble, ec.EllipticCurvePublicKey)


async def test_terms_of_service_must_be_accepted(rig: Rig) -> None:
    with pytest.raises(AcmeError) as info:
        await trio.to_thread.run_sync(rig.issuer(tos_accepted=False).register)
    assert info.value.reason == "tos_not_accepted" and "tos_accepted: true" in info.value.detail


async def test_the_cas_tls_is_verified_against_the_configured_trust(rig: Rig) -> None:
    untrusting = AcmeIssuer(rig.config(), rig.store, tls_context=outbound_tls_context(["system"]))
    with pytest.raises(AcmeError) as info:
        await trio.to_thread.run_sync(untrusting.register)
    assert info.value.reason == "ca_untrusted" and "lua_ssl_trusted_certificate" in info.value.detail


@pytest.mark.parametrize("rig", [{"alternate_roots": 1}], indirect=True)
async def test_preferred_chain(rig: Rig) -> None:
    alternate = x509.load_pem_x509_certificate(rig.pebble.root_pem(1).encode())
    name = alternate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    _, issued = await issue_in_thread(rig.issuer(preferred_chain=name))
    chain = x509.load_pem_x509_certificates(issued.cert_pem.encode())
    assert issued.chains_offered == 2 and chain[-1].issuer == alternate.subject
    _, default = await issue_in_thread(rig.issuer())
    assert x509.load_pem_x509_certificates(default.cert_pem.encode())[-1].issuer != alternate.subject


@pytest.mark.parametrize("rig", [{"always_valid": True}], indirect=True)
async def test_always_valid_extra_case(rig: Rig) -> None:
    """PEBBLE_VA_ALWAYS_VALID: issuance with nothing answering (never the only case: see above)."""
    _, issued = await issue_in_thread(rig.issuer(store=ChallengeStore()))
    check_issued(issued, rig.pebble, ec.EllipticCurvePublicKey)


async def test_the_renewal_task_issues_renews_and_writes_certificates(rig: Rig) -> None:
    from trio_gw.admin.acme import ACME_TAG, acme_managed_hosts
    from trio_gw.model.declarative import parse_declarative
    from trio_gw.runtime.acme_renewal import AcmeRenewer

    written: list[dict[str, object]] = []
    saved: list[AcmeAccount] = []
    clock = [time.time()]

    async def write(document: dict[str, object]) -> None:
        written.append(document)

    async def save(account: AcmeAccount) -> None:
        saved.append(account)

    renewer = AcmeRenewer(rig.issuer(), write, save_account=save, clock=lambda: clock[0])
    first = await renewer.ensure(DOMAIN, explicit=True)
    assert first.issued is not None and len(saved) == 1 and "PRIVATE KEY" not in repr(saved[0])
    document = {**written[0], "id": "0d5c3f5e-5a8e-4a4e-9a0f-2f6f0c8b9d11"}
    entities = parse_declarative({"_format_version": "3.0", "certificates": [document]}, now=int(time.time()))
    managed = acme_managed_hosts(entities)
    assert list(managed) == [DOMAIN] and ACME_TAG in next(iter(entities.certificates.values())).tags
    assert await renewer.renew_due(managed) == [await renewer.ensure(DOMAIN, not_after=managed[DOMAIN][1],
                                                                     certificate_id=managed[DOMAIN][0])]
    assert len(written) == 1  # nothing due yet: the CA is not asked
    clock[0] = managed[DOMAIN][1] - 13 * 86400  # inside renew_threshold_days
    (renewed,) = await renewer.renew_due(managed)
    assert renewed.plan.action is AcmeAction.RENEW and renewed.issued is not None
    assert written[-1]["id"] == managed[DOMAIN][0] and len(saved) == 1  # same entity replaced, same account


@pytest.mark.parametrize("rig", [{"wrong_key_authorization": True}], indirect=True)
async def test_the_renewal_task_backs_off_after_a_failure(rig: Rig) -> None:
    from trio_gw.runtime.acme_renewal import AcmeRenewer

    async def write(document: dict[str, object]) -> None:
        raise AssertionError("nothing is written after a failure")

    renewer = AcmeRenewer(rig.issuer(), write)
    failed = await renewer.ensure(DOMAIN)
    assert failed.failure is not None and failed.failure.reason == "challenge_failed"
    orders = rig.pebble.log().count("POST /order-plz")
    again = await renewer.ensure(DOMAIN, explicit=True)
    assert (again.plan.action, again.plan.reason) == (AcmeAction.WAIT, "backing_off") and again.issued is None
    assert orders == 1 and rig.pebble.log().count("POST /order-plz") == orders  # the CA was not asked again
