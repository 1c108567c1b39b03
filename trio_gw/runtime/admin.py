"""The Admin API in a running node: listeners (plain, TLS, mTLS) and writes through the gateway.

Deciding what a request means is :func:`trio_gw.admin.api.handle_admin_request`
(pure, over the current entities).  A write it accepts is then compiled into a
snapshot (so a configuration that cannot be served is refused with 400 and
nothing changes), committed to the datastore, and swapped in — the next
handshake already sees an uploaded certificate.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trio_gw.admin.api import AdminRequest, AdminResponse, handle_admin_request
from trio_gw.errors import CertificateError, ConfigError
from trio_gw.net.contexts import load_pem_pair
from trio_gw.net.proxy import ConnectionInfo
from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.runtime.logs import NOTICE
from trio_gw.settings import Settings
from trio_gw.store import StoreConflict, StoreError

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

log = logging.getLogger("trio_gw.admin")


def _json(status: int, body: dict[str, object]) -> AdminResponse:
    return AdminResponse(status=status, body=json.dumps(body).encode())


class AdminApi:
    """Connects the pure Admin API to one gateway node."""

    def __init__(self, gateway: Gateway) -> None:
        check_admin_listeners(gateway.settings)
        self.gateway = gateway

    def read_only_reason(self) -> str | None:
        if self.gateway.store is None:
            return "database is 'off': the declarative configuration is read-only; edit the file and reload (SIGHUP)"
        return None

    async def handle(self, request: AdminRequest, info: ConnectionInfo) -> AdminResponse:
        current = self.gateway.snapshot_now().entities
        result = handle_admin_request(request, current, now=int(time.time()),
                                      read_only_reason=self.read_only_reason())
        if result.entities is None:
            return result.response
        try:
            await self.gateway.write(result.entities)
        except ConfigError as exc:
            fields = {p.path or "configuration": p.message for p in exc.problems}
            return _json(400, {"message": "the configuration cannot be served: " + "; ".join(map(str, exc.problems)),
                               "name": "schema violation", "fields": fields})
        except StoreConflict:
            return _json(409, {"message": "the configuration was changed by another writer; retry the request",
                               "name": "conflict"})
        except StoreError as exc:
            log.error("admin write failed: %s", exc)
            status = 409 if "unique" in str(exc).lower() else 503
            return _json(status, {"message": "the datastore refused the change" if status == 409
                                  else "the datastore is unavailable; nothing was changed"})
        log.log(NOTICE, "admin %s %s from %s: configuration changed", request.method, request.path, info.client_ip)
        return result.response


def check_admin_listeners(settings: Settings) -> None:
    """With ``admin_mtls`` every Admin API listener must be ``ssl``: a plain one would serve it
    without a client certificate (Tyk's ``control_api_use_mutual_tls`` needs TLS too).

    Raises:
        ConfigError: naming ``admin_listen`` and the plain listeners.
    """
    if not settings.admin_mtls:
        return
    plain = [f"{a.host}:{a.port}" for a in settings.admin_listen if not a.ssl]
    if plain:
        raise ConfigError(
            f"admin_mtls is on, but {', '.join(plain)} has no `ssl` flag and would serve the Admin API "
            "without a client certificate: add `ssl` to it or remove it",
            path="admin_listen",
        )
    if not settings.admin_listen:
        log.warning("admin_mtls is on but admin_listen is off: no Admin API listener")


class AdminTls:
    """The Admin API's TLS listener context (``admin_ssl_cert``; mTLS with ``admin_mtls``)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx

    def listener_context(self) -> ssl.SSLContext:
        return self._ctx


def listener_tls_context(settings: Settings, setting: str, role: str) -> ssl.SSLContext:
    """A TLS listener context for the Admin or Status API: ``setting``/``setting_key`` pairs (blocking: thread).

    The downstream policy (versions, ciphers) is the proxy's.  Without pairs the
    generated certificate under ``prefix``/pki is served, as Kong generates one.

    Raises:
        ConfigError: naming the setting whose file cannot be used.
    """
    from trio_gw.runtime.gateway import read_pairs
    from trio_gw.tls.downstream import parse_downstream_policy
    from trio_gw.net.contexts import new_server_context

    ctx = new_server_context(parse_downstream_policy(settings.as_mapping()))
    pairs = list(zip(getattr(settings, setting), getattr(settings, f"{setting}_key")))
    if not pairs:
        pki = ensure_dev_pki(Path(settings.prefix) / "pki")
        log.warning("no %s configured: the %s serves %s (CA %s)", setting, role, pki.server_cert, pki.ca_cert)
        pairs = [(str(pki.server_cert), str(pki.server_key))]
    for i, cert in enumerate(read_pairs(pairs, setting, now=int(time.time()))):
        try:
            load_pem_pair(ctx, cert.cert, cert.key)
        except CertificateError as exc:
            raise ConfigError(str(exc), path=f"{setting}[{i}]") from exc
    return ctx


def admin_tls_context(settings: Settings) -> ssl.SSLContext:
    """Build the admin listener context (blocking: worker thread).

    Raises:
        ConfigError: naming the setting whose file cannot be used.
    """
    ctx = listener_tls_context(settings, "admin_ssl_cert", "Admin API")
    if settings.admin_mtls:
        if not settings.admin_mtls_ca_certificates:
            raise ConfigError("admin_mtls is on but no CA is configured", path="admin_mtls_ca_certificates")
        cadata = []
        for i, path in enumerate(settings.admin_mtls_ca_certificates):
            try:
                cadata.append(Path(path).read_text())
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}", path=f"admin_mtls_ca_certificates[{i}]") from exc
        try:
            ctx.load_verify_locations(cadata="".join(cadata))
        except ssl.SSLError as exc:
            raise ConfigError(f"not a PEM CA bundle ({exc.reason})", path="admin_mtls_ca_certificates") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED  # no certificate from these CAs, no Admin API
        if not settings.skip_client_ca_announcement:
            _announce(ctx, "".join(cadata))
    return ctx


def _announce(ctx: ssl.SSLContext, bundle: str) -> None:
    """Name the admin CAs in the CertificateRequest (Tyk announces its client CAs by default), so a
    client holding several certificates presents one these CAs issued."""
    from trio_gw.net.openssl_shim import ShimUnavailable, add_client_ca

    try:
        for pem in re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", bundle, re.DOTALL):
            add_client_ca(ctx, ssl.PEM_cert_to_DER_cert(pem))
    except ShimUnavailable as exc:
        log.warning("the Admin API's client CA names are not announced: %s", exc)
