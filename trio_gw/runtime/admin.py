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
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trio_gw.admin.api import AdminRequest, AdminResponse, handle_admin_request
from trio_gw.errors import ConfigError
from trio_gw.net.contexts import load_pem_pair
from trio_gw.net.proxy import ConnectionInfo
from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.runtime.settings import Settings
from trio_gw.store import StoreConflict, StoreError

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

log = logging.getLogger("trio_gw.admin")


def _json(status: int, body: dict[str, object]) -> AdminResponse:
    return AdminResponse(status=status, body=json.dumps(body).encode())


class AdminApi:
    """Connects the pure Admin API to one gateway node."""

    def __init__(self, gateway: Gateway) -> None:
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
        log.warning("admin %s %s from %s: configuration changed", request.method, request.path, info.client_ip)
        return result.response


class AdminTls:
    """The Admin API's TLS listener context (``admin_ssl_cert``; mTLS with ``admin_mtls``)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx

    def listener_context(self) -> ssl.SSLContext:
        return self._ctx


def admin_tls_context(settings: Settings) -> ssl.SSLContext:
    """Build the admin listener context (blocking: worker thread).

    Raises:
        ConfigError: naming the setting whose file cannot be used.
    """
    from trio_gw.runtime.gateway import read_pairs
    from trio_gw.tls.downstream import parse_downstream_policy
    from trio_gw.net.contexts import new_server_context

    ctx = new_server_context(parse_downstream_policy(settings.raw))
    pairs = list(zip(settings.admin_ssl_cert, settings.admin_ssl_cert_key))
    if not pairs:
        pki = ensure_dev_pki(Path(settings.prefix) / "pki")
        log.warning("no admin_ssl_cert configured: the Admin API serves %s (CA %s)", pki.server_cert, pki.ca_cert)
        pairs = [(str(pki.server_cert), str(pki.server_key))]
    for cert in read_pairs(pairs, "admin_ssl_cert", now=int(time.time())):
        load_pem_pair(ctx, cert.cert, cert.key)
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
    return ctx
