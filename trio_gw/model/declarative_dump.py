"""Export entities as a declarative document (decK ``_format_version: "3.0"``).

The inverse of ``model.declarative.parse_declarative``: every id and timestamp
is written, so loading the dump (with the private keys) gives the same entities
again.  Routes are nested in their service and SNIs in their certificate, as
decK writes them; plugins are listed at the top level with their scope ids.
References are written as ids.
"""

from __future__ import annotations

import copy
from typing import Any

from trio_gw.model.credentials import DECLARATIVE_KEYS, Credential
from trio_gw.model.entities import SNI, CACertificate, Certificate, Consumer, Entities, Plugin, Route, Service


def dump_declarative(entities: Entities, *, include_keys: bool = False) -> dict[str, Any]:
    """Give entities as a decK document, ready for ``yaml.safe_dump``/``json.dumps``.

    Args:
        entities: the configuration.
        include_keys: write private keys (certificates' ``key``/``key_alt``, the
            ssl plugin's ``config.key``).
            Without them the document documents the configuration but cannot be
            loaded again.

    Returns:
        A document with ``_format_version`` and each non-empty entity list.

    .. warning:: With ``include_keys=True`` the result holds private keys in clear.
    """
    nested_routes = {r.id for r in entities.routes.values() if r.service in entities.services}
    nested_snis = {s.id for s in entities.snis.values() if s.certificate in entities.certificates}
    document: dict[str, Any] = {"_format_version": "3.0"}
    lists = {
        "services": [_service(s, entities) for s in entities.services.values()],
        "routes": [_route(r) for r in entities.routes.values() if r.id not in nested_routes],
        "certificates": [_certificate(c, entities, include_keys) for c in entities.certificates.values()],
        "snis": [_sni(s) for s in entities.snis.values() if s.id not in nested_snis],
        "ca_certificates": [_ca_certificate(c) for c in entities.ca_certificates.values()],
        "consumers": [_consumer(c, entities) for c in entities.consumers.values()],
        "plugins": [_plugin(p, include_keys) for p in entities.plugins.values()],
    }
    document.update((kind, items) for kind, items in lists.items() if items)
    return document


def _common(entity: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity.id}
    if entity.tags:
        out["tags"] = list(entity.tags)
    out.update(created_at=entity.created_at, updated_at=entity.updated_at)
    return out


def _set(out: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Add the values that are set (not ``None``); tuples become lists."""
    for key, value in values.items():
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _service(service: Service, entities: Entities) -> dict[str, Any]:
    out = _set(
        _common(service),
        name=service.name,
        protocol=service.protocol,
        host=service.host,
        port=service.port,
        path=service.path,
        retries=service.retries,
        connect_timeout=service.connect_timeout,
        read_timeout=service.read_timeout,
        write_timeout=service.write_timeout,
        enabled=service.enabled,
        client_certificate=None if service.client_certificate_alternates else service.client_certificate,
        certificates=(
            (service.client_certificate, *service.client_certificate_alternates)
            if service.client_certificate_alternates and service.client_certificate
            else None
        ),
        ca_certificates=service.ca_certificates or None,
        tls_verify=service.tls_verify,
        tls_verify_depth=service.tls_verify_depth,
        tls_min_version=service.tls_min_version,
        tls_max_version=service.tls_max_version,
        tls_ciphers=service.tls_ciphers or None,
        tls_force_common_name_check=service.tls_force_common_name_check,
        tls_pinned_public_keys=service.tls_pinned_public_keys or None,
        proxy_url=service.proxy_url,
    )
    routes = [_route(r, nested=True) for r in entities.routes.values() if r.service == service.id]
    if routes:
        out["routes"] = routes
    return out


def _route(route: Route, *, nested: bool = False) -> dict[str, Any]:
    return _set(
        _common(route),
        name=route.name,
        service=None if nested else route.service,
        protocols=route.protocols,
        methods=route.methods or None,
        hosts=route.hosts or None,
        paths=route.paths or None,
        headers={name: list(values) for name, values in route.headers.items()} or None,
        snis=route.snis or None,
        https_redirect_status_code=route.https_redirect_status_code,
        regex_priority=route.regex_priority,
        strip_path=route.strip_path,
        preserve_host=route.preserve_host,
        path_handling=route.path_handling,
    )


def _certificate(certificate: Certificate, entities: Entities, include_keys: bool) -> dict[str, Any]:
    out = _set(_common(certificate), cert=certificate.cert, cert_alt=certificate.cert_alt)
    if include_keys:
        _set(out, key=certificate.key, key_alt=certificate.key_alt)
    snis = [_sni(s, nested=True) for s in entities.snis.values() if s.certificate == certificate.id]
    if snis:
        out["snis"] = snis
    return out


def _sni(sni: SNI, *, nested: bool = False) -> dict[str, Any]:
    return _set(_common(sni), name=sni.name, certificate=None if nested else sni.certificate)


def _ca_certificate(ca: CACertificate) -> dict[str, Any]:
    return _set(_common(ca), cert=ca.cert, cert_digest=ca.cert_digest or None, crls=list(ca.crls) or None)


def _consumer(consumer: Consumer, entities: Entities) -> dict[str, Any]:
    out = _set(_common(consumer), username=consumer.username, custom_id=consumer.custom_id)
    for key, kind in DECLARATIVE_KEYS.items():
        found = [c for c in entities.credentials.values() if c.consumer == consumer.id and c.kind == kind]
        if found:
            out[key] = [_credential(c) for c in sorted(found, key=lambda c: c.id)]
    return out


def _credential(credential: Credential) -> dict[str, Any]:
    out = credential.to_json()
    del out["consumer"]  # nested under its consumer
    if credential.certificate is not None:
        out.pop("fingerprint", None)  # derived from the certificate on load
    out.update(created_at=credential.created_at, updated_at=credential.updated_at)
    return out


def _plugin(plugin: Plugin, include_keys: bool) -> dict[str, Any]:
    config = copy.deepcopy(dict(plugin.config))
    if not include_keys:  # the ssl plugin's config.key: a private key, like a certificate's
        config = {k: v for k, v in config.items() if not (isinstance(v, str) and "PRIVATE KEY-----" in v)}
    return _set(
        _common(plugin),
        name=plugin.name,
        config=config,
        enabled=plugin.enabled,
        protocols=plugin.protocols,
        service=plugin.service,
        route=plugin.route,
        consumer=plugin.consumer,
    )
