"""Properties of the client-certificate plugins: windows, header safety, header-cert robustness."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gw.http.facts import RequestFacts
from trio_gw.model.credentials import STATUSES, Credential
from trio_gw.model.entities import Consumer
from trio_gw.plugins.base import Allow, Deny, PrepareEnv, RequestContext
from trio_gw.plugins.header_cert_auth import decide, parse_config, prepare
from trio_gw.plugins.identity import IDENTITY_HEADERS, consumer_headers
from trio_gw.model.entities import Entities

times = st.integers(min_value=0, max_value=2**31 - 1)


@given(status=st.sampled_from(STATUSES), start=st.none() | times, end=st.none() | times, now=times)
def test_a_credential_counts_exactly_inside_its_window(status: str, start: int | None, end: int | None, now: int) -> None:
    cred = Credential(id="c", kind="mtls_auth", consumer="u", status=status, valid_from=start, valid_until=end)
    refusal = cred.refusal(now)
    inside = (start is None or start <= now) and (end is None or now <= end)
    if status == "revoked":
        assert refusal == "revoked"
    elif status == "scheduled" and start is None:
        assert refusal is not None
    else:
        assert (refusal is None) == inside


@given(username=st.text(), custom_id=st.none() | st.text(), groups=st.none() | st.text())
def test_identity_header_values_never_break_the_head(username: str, custom_id: str | None, groups: str | None) -> None:
    for name, value in consumer_headers(Consumer(id="u", username=username, custom_id=custom_id), groups=groups):
        assert name in IDENTITY_HEADERS
        assert not any(b in value for b in (b"\r", b"\n", b"\x00"))


_PLUGIN = prepare(
    parse_config({"certificate_header_name": "x-client-cert", "certificate_header_format": "base64_encoded",
                  "anonymous": None}, ""),
    PrepareEnv(Entities()),
)


@settings(max_examples=200)
@given(value=st.binary(max_size=512) | st.binary(max_size=300).map(base64.b64encode), trusted=st.booleans())
def test_any_header_value_gives_a_decision(value: bytes, trusted: bool) -> None:
    facts = RequestFacts(method="GET", host="api.example", path="/")
    request = RequestContext(facts=facts, headers=((b"x-client-cert", value),), client_ip="192.0.2.1",
                             trusted_client=trusted, now=1_800_000_000)
    decision = decide(_PLUGIN, request)
    assert isinstance(decision, Allow | Deny)
    if isinstance(decision, Deny):
        assert decision.status == 401 and decision.reason in ("no_cert", "bad_certificate", "unknown_ca")
