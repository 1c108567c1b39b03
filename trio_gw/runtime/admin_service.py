"""Admin API requests applied to a running node.

Deciding what a request means is :func:`trio_gw.admin.api.handle_admin_request`
(pure).  A read answers from the current generation's configuration.  A write
runs through :meth:`trio_gw.runtime.gateway.Gateway.write`: the pure handler is
applied to the latest committed configuration, the result is compiled into a
generation (so a configuration that cannot be served is refused with 400 and
nothing changes), committed with compare-and-swap, and installed — the next
handshake already sees an uploaded certificate.  A conflict with another
writer on the same entity is a 409; a datastore that is down, a 503.

Before anything, ``admin_ssl_ocsp`` checks the revocation of the admin client
certificate (401 ``revoked`` / ``revocation_unknown``); Kong's ``acme``
endpoints (``POST /acme``, ``GET /acme/certificates``) are the node's ACME
service's (:mod:`trio_gw.runtime.acme_service`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from trio_gw.admin.api import AdminRequest, AdminResponse, AdminResult, handle_admin_request
from trio_gw.admin.inventory import CertificateView
from trio_gw.errors import ConfigError
from trio_gw.http.facts import ConnectionFacts
from trio_gw.model.entities import Entities
from trio_gw.model.inventory import Inventory
from trio_gw.runtime.logs import NOTICE
from trio_gw.settings import Settings
from trio_gw.store import StoreError

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

log = logging.getLogger("trio_gw.admin")


def _json(status: int, body: dict[str, object]) -> AdminResponse:
    return AdminResponse(status=status, body=json.dumps(body).encode())


#: Methods that never write: answered from the current generation, without the write lock.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AdminService:
    """Connects the pure Admin API to one gateway node."""

    def __init__(self, gateway: Gateway) -> None:
        check_admin_listeners(gateway.settings)
        self.gateway = gateway

    def certificate_view(self, inventory: Inventory) -> CertificateView:
        """What ``GET /certificates/inventory`` and ``/ui/certificates`` show: the live generation's inventory,
        with the expiry monitor's warning threshold."""
        return CertificateView(inventory, warning_days=self.gateway.expiry_config.warn_days)

    def read_only_reason(self) -> str | None:
        if self.gateway.settings.database == "off":
            return "database is 'off': the declarative configuration is read-only; edit the file and reload (SIGHUP)"
        return None

    async def handle(self, request: AdminRequest, info: ConnectionFacts) -> AdminResponse:
        """Answer one Admin API request (a write goes through :meth:`Gateway.write`)."""
        from trio_gw.runtime.gateway import WriteConflict

        now = int(time.time())
        read_only = self.read_only_reason()
        refusal = await self.gateway.lifecycle.admin_refusal(info)
        if refusal is not None:  # admin_ssl_ocsp: a revoked admin certificate, or one whose status is unknown
            log.warning("admin %s %s from %s refused: %s", request.method, request.path, info.client_ip, refusal[1])
            return _json(401, {"message": "TLS certificate failed verification", "reason": refusal[0]})
        acme = await self.gateway.lifecycle.acme.handle_admin(request, read_only)
        if acme is not None:  # Kong's acme plugin endpoints: /acme, /acme/certificates
            return acme
        if request.method.upper() in READ_METHODS or read_only is not None:
            generation = self.gateway.generation
            return handle_admin_request(request, generation.entities, now=now, read_only_reason=read_only,
                                        certificates=self.certificate_view(generation.inventory)).response

        def apply(base: Entities) -> tuple[AdminResult, Entities | None]:
            result = handle_admin_request(request, base, now=now)
            return result, result.entities

        try:
            result = await self.gateway.write(apply)
        except ConfigError as exc:
            fields = {p.path or "configuration": p.message for p in exc.problems}
            return _json(400, {"message": "the configuration cannot be served: " + "; ".join(map(str, exc.problems)),
                               "name": "schema violation", "fields": fields})
        except WriteConflict as exc:
            return _json(409, {"message": str(exc), "name": "conflict"})
        except StoreError as exc:
            log.error("admin write failed: %s", exc)
            status = 409 if "unique" in str(exc).lower() else 503
            return _json(status, {"message": "the datastore refused the change" if status == 409
                                  else "the datastore is unavailable; nothing was changed", "name": "datastore"})
        if result.entities is not None:
            log.log(NOTICE, "admin %s %s from %s: configuration changed", request.method, request.path,
                    info.client_ip)
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


