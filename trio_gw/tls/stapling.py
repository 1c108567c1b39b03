"""OCSP stapling policy: nginx's settings, Envoy's policies, and the per-handshake decision.

Theory of operation
-------------------
Settings keep their products' names.  nginx: ``ssl_stapling`` (off),
``ssl_stapling_verify``, ``ssl_stapling_file`` (a DER response served instead
of asking a responder), ``ssl_stapling_responder`` (overrides the
certificate's AIA URL).  Envoy: ``ocsp_staple_policy`` -- ``lenient``
(default), ``strict``, ``must_staple`` (Envoy's ``LENIENT_STAPLING``,
``STRICT_STAPLING``, ``MUST_STAPLE`` are accepted too).
:func:`parse_stapling_settings` reads them into a frozen
:class:`StaplingSettings`, every problem named by its key.

``ssl_stapling_verify`` defaults to **on**, unlike nginx: a response is
stapled only after :func:`trio_gw.tls.ocsp.verify_ocsp_response` accepted
it, so a broken or hostile responder can never make the gateway hand clients
a staple that fails their check (a must-staple client would then refuse the
site).  ``off`` still checks the CertID and freshness, only not the signer.

At every handshake the status callback of the certificate's context asks
:func:`decide_staple` what to do with the answer the background refresher
holds for that certificate:

=====================  ==========  ==========  ==================================
answer at hand          lenient     strict      must_staple
=====================  ==========  ==========  ==================================
fresh, good            staple      staple      staple
fresh, revoked         omit        refuse      refuse
fresh, unknown         omit        refuse      refuse
stale (had one)        omit        refuse      refuse
none yet               omit        omit        omit; refuse if the certificate
                                               has the TLS Feature must-staple
=====================  ==========  ==========  ==================================

"refuse" means this certificate must not be served: the SNI callback skips
it (or the status callback aborts the handshake).  ``strict`` and
``must_staple`` therefore follow Envoy: once a response has been seen, a
stale one is not silently dropped.  ``lenient`` never affects a handshake:
a responder that is down only means no staple.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.client_revocation import issuer_in
from trio_gw.tls.ocsp import DEFAULT_CLOCK_SKEW, OcspAnswer, OcspCertStatus, is_fresh

__all__ = [
    "STAPLING_SETTING_NAMES",
    "StapleAction",
    "StapleDecision",
    "StaplingPolicy",
    "StaplingSettings",
    "decide_staple",
    "select_stapling_issuer",
    "parse_stapling_policy",
    "parse_stapling_settings",
]


class StaplingPolicy(enum.Enum):
    """Envoy's ``ocsp_staple_policy`` (lower-case values)."""

    LENIENT = "lenient"
    STRICT = "strict"
    MUST_STAPLE = "must_staple"


#: Envoy's enum spellings, accepted as aliases.
_ENVOY_NAMES: Final = {
    "lenient_stapling": StaplingPolicy.LENIENT,
    "strict_stapling": StaplingPolicy.STRICT,
}


class StapleAction(enum.Enum):
    """What the status callback does for one handshake."""

    STAPLE = "staple"
    OMIT = "omit"
    REFUSE = "refuse"


@dataclass(frozen=True)
class StapleDecision:
    """The decision and its stable reason (``good``, ``no_response``, ``revoked``, ``unknown``, ``stale``...)."""

    action: StapleAction
    reason: str
    response_der: bytes | None = None


@dataclass(frozen=True)
class StaplingSettings:
    """nginx's and Envoy's stapling settings, validated (see the module docstring)."""

    ssl_stapling: bool = False
    ssl_stapling_verify: bool = True
    ssl_stapling_file: str | None = None
    ssl_stapling_responder: str | None = None
    ocsp_staple_policy: StaplingPolicy = StaplingPolicy.LENIENT


#: The settings read by :func:`parse_stapling_settings`, with their defaults as written.
STAPLING_SETTING_NAMES: Final = {
    "ssl_stapling": "off",
    "ssl_stapling_verify": "on",
    "ssl_stapling_file": None,
    "ssl_stapling_responder": None,
    "ocsp_staple_policy": "lenient",
}

_ON: Final = frozenset({"on", "true", "yes", "1"})
_OFF: Final = frozenset({"off", "false", "no", "0"})


def parse_stapling_policy(value: object) -> StaplingPolicy:
    """Read ``ocsp_staple_policy`` (case-insensitive; Envoy's enum names accepted).

    Raises:
        ConfigError: any other value, naming the key.
    """
    if isinstance(value, StaplingPolicy):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else ""
    policy = _ENVOY_NAMES.get(text)
    if policy is not None:
        return policy
    try:
        return StaplingPolicy(text)
    except ValueError:
        names = ", ".join(p.value for p in StaplingPolicy)
        raise ConfigError(f"expected one of {names}, got {value!r}", "ocsp_staple_policy") from None


def parse_stapling_settings(values: Mapping[str, Any]) -> StaplingSettings:
    """Read the stapling settings from their raw values (absent keys take the defaults).

    Args:
        values: setting name -> value as written (``on``/``off`` or booleans,
            strings, ``None``).

    Returns:
        The validated :class:`StaplingSettings`.

    Raises:
        ConfigError: every problem, each naming its setting.
    """
    problems: list[Problem] = []
    enabled = _switch(values, "ssl_stapling", False, problems)
    verify = _switch(values, "ssl_stapling_verify", True, problems)
    path = _text(values, "ssl_stapling_file", problems)
    responder = _text(values, "ssl_stapling_responder", problems)
    if responder is not None and responder.split(":", 1)[0].lower() not in ("http", "https"):
        problems.append(Problem("ssl_stapling_responder", "expected an http:// or https:// URL"))
    policy = StaplingPolicy.LENIENT
    if values.get("ocsp_staple_policy") is not None:
        try:
            policy = parse_stapling_policy(values["ocsp_staple_policy"])
        except ConfigError as exc:
            problems.extend(exc.problems)
    if not enabled and policy is not StaplingPolicy.LENIENT:
        problems.append(Problem("ocsp_staple_policy", f"{policy.value} needs ssl_stapling on"))
    if problems:
        raise ConfigError(problems)
    return StaplingSettings(enabled, verify, path, responder, policy)


def decide_staple(
    policy: StaplingPolicy,
    answer: OcspAnswer | None,
    *,
    must_staple: bool,
    now: float,
    skew: int = DEFAULT_CLOCK_SKEW,
) -> StapleDecision:
    """What to do for one handshake (the table of the module docstring).

    Args:
        policy: the listener's ``ocsp_staple_policy``.
        answer: the verified answer held for the certificate, if any.
        must_staple: the certificate carries the TLS Feature ``status_request``.
        now: the handshake time, Unix seconds.
        skew: tolerated clock difference, seconds.

    Returns:
        The :class:`StapleDecision`; ``response_der`` is set when stapling.
    """
    gentle = policy is StaplingPolicy.LENIENT
    if answer is None:
        if policy is StaplingPolicy.MUST_STAPLE and must_staple:
            return StapleDecision(StapleAction.REFUSE, "must_staple_without_response")
        return StapleDecision(StapleAction.OMIT, "no_response")
    if not is_fresh(answer, now, skew):
        return StapleDecision(StapleAction.OMIT if gentle else StapleAction.REFUSE, "stale")
    if answer.status is OcspCertStatus.GOOD:
        return StapleDecision(StapleAction.STAPLE, "good", answer.der)
    return StapleDecision(StapleAction.OMIT if gentle else StapleAction.REFUSE, answer.status.value)


def select_stapling_issuer(
    chain: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate] = ()
) -> x509.Certificate | None:
    """The issuer of a served chain's leaf: from the chain itself, then the trusted CAs.

    nginx looks in the served chain, then ``ssl_trusted_certificate``; without
    an issuer there is no CertID to ask about, and the certificate is served
    without stapling (nginx: "issuer certificate not found").

    Args:
        chain: the served chain, leaf first.
        trusted: further CA certificates that may have issued the leaf.

    Returns:
        The issuer (name and signature checked), or ``None``.
    """
    return issuer_in(chain[0], [*chain[1:], *trusted]) if chain else None


def _switch(values: Mapping[str, Any], key: str, default: bool, problems: list[Problem]) -> bool:
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _ON:
        return True
    if text in _OFF:
        return False
    problems.append(Problem(key, f"expected on or off, got {value!r}"))
    return default


def _text(values: Mapping[str, Any], key: str, problems: list[Problem]) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(key, f"expected a non-empty string, got {value!r}"))
        return None
    return value.strip()
