"""A synchronous ACME client over certbot's ``acme`` library (run it in ``trio.to_thread``).

Theory of operation
-------------------
:class:`AcmeIssuer` carries out one issuance; everything it decides comes
from :mod:`trio_gw.tls.acme` (key type, CSR, key authorization, challenge
certificate, preferred chain).  The steps are RFC 8555's:

1. the directory, over TLS verified against the gateway's outbound trust --
   the context :func:`trio_gw.net.http_fetch.outbound_tls_context` builds from
   ``lua_ssl_trusted_certificate`` (``system`` by default) -- mounted into the
   library's ``requests`` session, so no other CA bundle is ever consulted;
2. the account: an existing one (its key and URL, as stored) is looked up,
   otherwise one is registered with ``account_email``, the terms of service
   when the CA has some (``tos_accepted`` must say yes) and, when
   ``eab_kid``/``eab_hmac_key`` are set or the CA requires it, external
   account binding;
3. a new order with a CSR for a fresh key (``cert_type``/``rsa_key_size``);
4. for each pending authorization the chosen challenge is published in the
   :class:`~trio_gw.net.acme_challenges.ChallengeStore` (http-01 token, or
   tls-alpn-01 certificate), answered, and withdrawn again whatever happens;
5. polling, finalization, download (alternative chains too when
   ``preferred_chain`` is set) and the choice of chain.

Every failure is an :class:`AcmeError` with a stable ``reason``
(``ca_unreachable``, ``ca_untrusted``, ``tos_not_accepted``, ``eab_required``,
``account_refused``, ``no_supported_challenge``, ``challenge_failed``,
``order_failed``, ``timeout``) and a detail that quotes the CA's problem
document; the caller records it for :func:`trio_gw.tls.acme.plan_certificate`'s
backoff.  Private keys never appear in messages or reprs.
"""

from __future__ import annotations

import datetime
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.errors import Error as JoseError
from josepy.jwa import RS256
from josepy.jwk import JWKRSA
from requests.adapters import HTTPAdapter

from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.acme_results import (
    CHALLENGE_TYPES,
    HTTP_01,
    TLS_ALPN_01,
    AcmeAccount,
    AcmeError,
    IssuedCertificate,
)
from trio_gw.net.http_fetch import outbound_tls_context
from trio_gw.pki.info import unix_seconds
from trio_gw.tls.acme import (
    AcmeConfig,
    build_csr,
    generate_certificate_key,
    key_authorization,
    select_preferred_chain,
)

__all__ = ["CHALLENGE_TYPES", "HTTP_01", "TLS_ALPN_01", "AcmeAccount", "AcmeError", "AcmeIssuer", "IssuedCertificate"]

#: How long validation and finalization may take (certbot's ``poll_and_finalize`` default: 90 s).
DEFAULT_ORDER_DEADLINE: Final = 90.0
#: Per HTTP exchange with the CA.
DEFAULT_NETWORK_TIMEOUT: Final = 30


class _TlsResponse(challenges.KeyAuthorizationChallengeResponse):
    """The tls-alpn-01 response, ``{}`` on the wire: the ``acme`` 5.x library no longer models it.

    It must carry the key authorization field (never serialised): the library
    sends an empty JWS payload -- a POST-as-GET, which answers nothing -- for
    a response object that has no fields.
    """

    typ = TLS_ALPN_01


class _OutboundTrust(HTTPAdapter):
    """A ``requests`` adapter whose every https connection uses the gateway's outbound context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class AcmeIssuer:
    """One CA and one account (see the module docstring).  Blocking: call it from a worker thread.

    Args:
        config: the ``acme`` configuration.
        challenges_store: where challenge answers are published for the listeners.
        tls_context: trust for the CA's TLS (``None``: ``outbound_tls_context(["system"])``).
        order_deadline: seconds validation and finalization may take.
        clock: Unix time (for the challenge certificate).
    """

    def __init__(
        self, config: AcmeConfig, challenges_store: ChallengeStore, *, tls_context: ssl.SSLContext | None = None,
        order_deadline: float = DEFAULT_ORDER_DEADLINE, clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = challenges_store
        self.tls_context = tls_context if tls_context is not None else outbound_tls_context(["system"])
        self.order_deadline = order_deadline
        self.clock = clock

    # -- account ------------------------------------------------------------------------------

    def register(self, account: AcmeAccount | None = None) -> AcmeAccount:
        """Find ``account`` at the CA, or register a new one.

        Raises:
            AcmeError: the CA is unreachable or untrusted, refuses the account,
                needs the terms accepted or external account binding.
        """
        with _mapped_errors("account_refused"):
            key = (_load_account_key(account.key_pem) if account else
                   rsa.generate_private_key(public_exponent=65537, key_size=2048))
            acme, jwk = self._client(key)
            if account is not None:
                regr = messages.RegistrationResource(uri=account.uri, body=messages.Registration())
                acme.net.account = regr
                acme.query_registration(regr)
                return account
            acme.new_account(self._new_registration(acme, jwk))
            uri = acme.net.account.uri if acme.net.account else ""
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
            return AcmeAccount(pem, uri)

    def _new_registration(self, acme: client.ClientV2, jwk: JWKRSA) -> messages.NewRegistration:
        meta = acme.directory.meta
        terms = meta.terms_of_service
        if terms and not self.config.tos_accepted:
            raise AcmeError("tos_not_accepted", f"the CA's terms of service ({terms}) must be accepted: "
                                                "set tos_accepted: true")
        eab = None
        if self.config.eab_kid and self.config.eab_hmac_key:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=jwk.public_key(), kid=self.config.eab_kid, hmac_key=self.config.eab_hmac_key,
                directory=acme.directory)
        elif meta.external_account_required:
            raise AcmeError("eab_required", "the CA requires external account binding: set eab_kid and eab_hmac_key")
        return messages.NewRegistration.from_data(
            email=self.config.account_email, terms_of_service_agreed=bool(terms) or None,
            external_account_binding=eab)

    # -- issuance ---------------------------------------------------------------------------------

    def issue(self, account: AcmeAccount, domains: Sequence[str], *, challenge: str = HTTP_01) -> IssuedCertificate:
        """Order, validate, finalize and download a certificate for ``domains``.

        Raises:
            AcmeError: see the module docstring.
            ValueError: ``challenge`` is not ``http-01`` or ``tls-alpn-01``.
        """
        if challenge not in CHALLENGE_TYPES:
            raise ValueError(f"challenge must be one of {', '.join(CHALLENGE_TYPES)}")
        with _mapped_errors("order_failed"):
            acme, jwk = self._client(_load_account_key(account.key_pem))
            regr = messages.RegistrationResource(uri=account.uri, body=messages.Registration())
            acme.net.account = regr
            key = generate_certificate_key(self.config.cert_type, self.config.rsa_key_size)
            order = acme.new_order(build_csr(key, list(domains)))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.order_deadline)
            with self._answered(acme, jwk, order, challenge):
                order = acme.poll_authorizations(order, deadline)
            order = acme.finalize_order(order, deadline, fetch_alternative_chains=bool(self.config.preferred_chain))
            chains = [order.fullchain_pem, *(order.alternative_fullchains_pem or [])]
            chosen = select_preferred_chain(chains, self.config.preferred_chain)
            leaf = x509.load_pem_x509_certificate(chosen.encode("ascii"))
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode("ascii")
            return IssuedCertificate(tuple(domains), chosen, key_pem, unix_seconds(leaf.not_valid_after_utc),
                                     len(chains))

    @contextmanager
    def _answered(self, acme: client.ClientV2, jwk: JWKRSA, order: messages.OrderResource,
                  kind: str) -> Iterator[None]:
        """Publish and answer every pending authorization's challenge; withdraw them all on the way out."""
        withdraw: list[Callable[[], None]] = []
        thumbprint = jwk.thumbprint(hash_function=hashes.SHA256)
        try:
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                domain = authzr.body.identifier.value
                challb = _pick(authzr, kind, domain)
                token = _token(challb)
                keyauth = key_authorization(token, thumbprint)
                response: challenges.ChallengeResponse
                if kind == HTTP_01:
                    self.store.publish_http01(token, keyauth)
                    withdraw.append(partial(self.store.withdraw_http01, token))
                    response = challb.chall.response(jwk)
                else:
                    self.store.publish_tls_alpn01(domain, keyauth, now=self.clock())
                    withdraw.append(partial(self.store.withdraw_tls_alpn01, domain))
                    response = _TlsResponse(key_authorization=keyauth)
                acme.answer_challenge(challb, response)
            yield
        finally:
            for undo in withdraw:
                undo()

    def _client(self, key: rsa.RSAPrivateKey) -> tuple[client.ClientV2, JWKRSA]:
        jwk = JWKRSA(key=key)
        net = client.ClientNetwork(jwk, alg=RS256, user_agent="trio-gw", timeout=DEFAULT_NETWORK_TIMEOUT)
        net.session.mount("https://", _OutboundTrust(self.tls_context))
        directory = client.ClientV2.get_directory(self.config.api_uri, net)
        return client.ClientV2(directory, net), jwk


def _load_account_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AcmeError("account_refused", "the stored account key is not an RSA key")
    return key


def _pick(authzr: messages.AuthorizationResource, kind: str, domain: str) -> messages.ChallengeBody:
    offered = []
    for challb in authzr.body.challenges:
        typ = _type(challb)
        offered.append(typ)
        if typ == kind:
            return challb
    raise AcmeError("no_supported_challenge", f"the CA offers {', '.join(offered) or 'nothing'} for {domain}, "
                                              f"not {kind}")


def _type(challb: messages.ChallengeBody) -> str:
    chall = challb.chall
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", "?"))
    return str(getattr(chall, "typ", "?"))


def _token(challb: messages.ChallengeBody) -> str:
    chall = challb.chall
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("token", ""))
    return str(chall.encode("token"))


@contextmanager
def _mapped_errors(default_reason: str) -> Iterator[None]:
    """Turn the library's and the network's exceptions into :class:`AcmeError` (see the module docstring)."""
    try:
        yield
    except AcmeError:
        raise
    except errors.ValidationError as exc:
        raise AcmeError("challenge_failed", _validation_detail(exc)) from exc
    except errors.TimeoutError as exc:
        raise AcmeError("timeout", "the CA did not finish validating or issuing in time") from exc
    except errors.IssuanceError as exc:
        raise AcmeError("order_failed", _problem(exc.error)) from exc
    except messages.Error as exc:
        reason = "eab_required" if exc.code == "externalAccountRequired" else default_reason
        raise AcmeError(reason, _problem(exc)) from exc
    except requests.exceptions.SSLError as exc:
        raise AcmeError("ca_untrusted", f"the CA's TLS certificate is not trusted ({_root_cause(exc)}; "
                                        "see lua_ssl_trusted_certificate)") from exc
    except requests.exceptions.RequestException as exc:
        raise AcmeError("ca_unreachable", f"{type(exc).__name__}: {_root_cause(exc)}") from exc
    except errors.Error as exc:
        raise AcmeError(default_reason, str(exc) or type(exc).__name__) from exc
    except (JoseError, ValueError) as exc:  # a document the library could not read
        raise AcmeError(default_reason, f"unexpected answer from the CA ({type(exc).__name__}: {exc})") from exc


def _validation_detail(exc: errors.ValidationError) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        domain = authzr.body.identifier.value
        for challb in authzr.body.challenges:
            if challb.error is not None:
                parts.append(f"{_type(challb)} for {domain}: {_problem(challb.error)}")
    return "; ".join(parts) or "the CA refused the challenge"


def _problem(error: messages.Error) -> str:
    code = error.code or error.typ
    return f"{code}: {error.detail}" if error.detail else str(code)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    return str(exc)[:300]
