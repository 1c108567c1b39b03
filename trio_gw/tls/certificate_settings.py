"""The certificates that node settings name, as inventory items (``model.inventory``).

Theory of operation
-------------------
Settings name certificates by file path (or, Tyk style, by store id).  This
module turns every such entry into a :class:`~trio_gw.model.inventory.ConfiguredCertificate`
so that the inventory, its expiry gauge, warnings and events see them like any
entity.  It reads nothing itself: files come through ``read_text(path, setting
path)``, which the IO layer supplies (and which raises ``ConfigError`` naming
the setting when a file is unreadable), so the function stays pure.

=================================  ================  ===============================================
setting                            role              key
=================================  ================  ===============================================
``ssl_cert``                       server            ``setting:ssl_cert[i]``
``ssl_certificates`` (Tyk) file    server            ``setting:ssl_certificates[i]``
``ssl_certificates`` store id      server            the entity's fact gets ``setting`` usage
``admin_ssl_cert``                 server            ``setting:admin_ssl_cert[i]``
``status_ssl_cert``                server            ``setting:status_ssl_cert[i]``
``client_ssl_cert``                upstream_client   ``setting:client_ssl_cert``
``upstream_certificates`` file     upstream_client   ``setting:upstream_certificates[<host key>]``
``upstream_certificates`` store id upstream_client   the entity's ``:upstream`` fact gets the usage
``external_services`` (Tyk)       upstream_client   ``setting:external_services.webhooks.mtls.cert_file``
``webhooks.mtls.cert_file``
CA bundles: ``ssl_client_certificate``, ``lua_ssl_trusted_certificate`` (not ``system``),
``admin_mtls_ca_certificates``, ``proxy_ssl_trusted_certificate``, and Tyk's
``external_services.webhooks.mtls.ca_file``: role ca, one item per certificate of the
bundle, ``setting:<name>[i][n]``
=================================  ================  ===============================================

Only certificates are carried over: a combined PEM (chain and key, Tyk) is
reduced to its certificates before it becomes an item, so no private key ever
reaches the inventory.  When the node serves a generated certificate because
``ssl_cert``/``admin_ssl_cert``/``status_ssl_cert`` is empty, the caller passes
the settings with the generated file in that setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.entities import Entities
from trio_gw.model.inventory import ConfiguredCertificate, Role, Usage
from trio_gw.pki.parse import parse_certificates
from trio_gw.tls.external_services import parse_external_services
from trio_gw.tls.hostmap import parse_host_map
from trio_gw.tls.upstream import is_store_reference, select_store_certificate

__all__ = ["CA_BUNDLE_SETTINGS", "SERVER_SETTINGS", "parse_configured_certificates"]

#: Settings holding server certificate chains, one file per entry.
SERVER_SETTINGS: Final = ("ssl_cert", "admin_ssl_cert", "status_ssl_cert")
#: Settings holding CA bundles (PEM files with one or more CA certificates).
CA_BUNDLE_SETTINGS: Final = (
    "ssl_client_certificate",
    "lua_ssl_trusted_certificate",
    "admin_mtls_ca_certificates",
    "proxy_ssl_trusted_certificate",
)
#: The ``lua_ssl_trusted_certificate`` entry standing for the OS trust store (not a file).
SYSTEM_STORE: Final = "system"

ReadText = Callable[[str, str], str]


def parse_configured_certificates(
    settings: Mapping[str, object], entities: Entities, read_text: ReadText
) -> list[ConfiguredCertificate]:
    """Every certificate the settings name, read through ``read_text``.

    Args:
        settings: parsed setting values (``Settings.values``); lists as tuples
            or lists, ``upstream_certificates`` as written (a mapping or JSON).
        entities: the store, for ``sha256:``/UUID references.
        read_text: ``(path, setting path) -> text``; raises ``ConfigError``
            naming the setting path when the file cannot be read.

    Returns:
        The items, in the order of the table in the module docstring.

    Raises:
        ConfigError: every unreadable file, file without a certificate and
            unknown store reference, each under its setting path.
    """
    problems: list[Problem] = []
    items: list[ConfiguredCertificate] = []
    for produce in (_server, _tyk_server, _client, _host_map, _ca_bundles, _external_services):
        try:
            items.extend(produce(settings, entities, read_text, problems))
        except ConfigError as exc:  # a whole setting unusable (a malformed host map)
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return items


def _server(settings: Mapping[str, object], entities: Entities, read: ReadText,
            problems: list[Problem]) -> Iterator[ConfiguredCertificate]:
    for name in SERVER_SETTINGS:
        for i, path in enumerate(_paths(settings.get(name))):
            where = f"{name}[{i}]"
            chain = _chain(read, path, where, problems)
            if chain is not None:
                yield ConfiguredCertificate(f"setting:{where}", Role.SERVER, f"{where} ({path})", chain,
                                            (Usage("setting", name),))


def _tyk_server(settings: Mapping[str, object], entities: Entities, read: ReadText,
                problems: list[Problem]) -> Iterator[ConfiguredCertificate]:
    for i, entry in enumerate(_paths(settings.get("ssl_certificates"))):
        where = f"ssl_certificates[{i}]"
        usage = (Usage("setting", "ssl_certificates"),)
        if is_store_reference(entry):
            cert = select_store_certificate(entry, entities.certificates)
            if cert is None:
                problems.append(Problem(where, f"no certificate in the store has id or fingerprint {entry!r}"))
            else:
                yield ConfiguredCertificate(f"setting:{where}", Role.SERVER, where, cert.cert, usage, cert.id)
            continue
        chain = _chain(read, entry, where, problems)
        if chain is not None:
            yield ConfiguredCertificate(f"setting:{where}", Role.SERVER, f"{where} ({entry})", chain, usage)


def _client(settings: Mapping[str, object], entities: Entities, read: ReadText,
            problems: list[Problem]) -> Iterator[ConfiguredCertificate]:
    path = settings.get("client_ssl_cert")
    if isinstance(path, str) and path:
        chain = _chain(read, path, "client_ssl_cert", problems)
        if chain is not None:
            yield ConfiguredCertificate("setting:client_ssl_cert", Role.UPSTREAM_CLIENT, f"client_ssl_cert ({path})",
                                        chain, (Usage("setting", "client_ssl_cert"),))


def _host_map(settings: Mapping[str, object], entities: Entities, read: ReadText,
              problems: list[Problem]) -> list[ConfiguredCertificate]:
    found: list[ConfiguredCertificate] = []

    def visit(key: str, ref: str) -> None:
        where = f"upstream_certificates.{key}"
        usage = (Usage("setting", "upstream_certificates", key),)
        if is_store_reference(ref):
            cert = select_store_certificate(ref, entities.certificates)
            if cert is None:
                problems.append(Problem(where, f"no certificate in the store has id or fingerprint {ref!r}"))
            else:
                found.append(ConfiguredCertificate(f"setting:upstream_certificates[{key}]", Role.UPSTREAM_CLIENT,
                                                   where, cert.cert, usage, cert.id))
            return
        chain = _chain(read, ref, where, problems)
        if chain is not None:
            found.append(ConfiguredCertificate(f"setting:upstream_certificates[{key}]", Role.UPSTREAM_CLIENT,
                                               f"{where} ({ref})", chain, usage))

    parse_host_map(settings.get("upstream_certificates"), path="upstream_certificates").map(visit)
    return found


def _ca_bundles(settings: Mapping[str, object], entities: Entities, read: ReadText,
                problems: list[Problem]) -> Iterator[ConfiguredCertificate]:
    for name in CA_BUNDLE_SETTINGS:
        for i, path in enumerate(_paths(settings.get(name))):
            if name == "lua_ssl_trusted_certificate" and path.strip().lower() == SYSTEM_STORE:
                continue  # the OS trust store: not the gateway's to watch
            where = f"{name}[{i}]"
            pems = _certificates(read, path, where, problems)
            for n, pem in enumerate(pems):
                yield ConfiguredCertificate(f"setting:{where}[{n}]", Role.CA, f"{where} ({path}), certificate {n + 1}",
                                            pem, (Usage("setting", name),))


def _external_services(settings: Mapping[str, object], entities: Entities, read: ReadText,
                       problems: list[Problem]) -> Iterator[ConfiguredCertificate]:
    """The webhooks' client certificate and CA file (an unparsable block is reported by its own parser)."""
    try:
        mtls = parse_external_services(settings.get("external_services"), environ={}).webhooks_mtls
    except ConfigError:
        return
    if not mtls.enabled:
        return
    name = "external_services.webhooks.mtls"
    usage = (Usage("setting", "external_services", "webhooks"),)
    if mtls.cert_file is not None:
        where = f"{name}.cert_file"
        chain = _chain(read, mtls.cert_file, where, problems)
        if chain is not None:
            yield ConfiguredCertificate(f"setting:{where}", Role.UPSTREAM_CLIENT, f"{where} ({mtls.cert_file})", chain,
                                        usage)
    if mtls.ca_file is not None:
        where = f"{name}.ca_file"
        for n, pem in enumerate(_certificates(read, mtls.ca_file, where, problems)):
            yield ConfiguredCertificate(f"setting:{where}[{n}]", Role.CA, f"{where} ({mtls.ca_file}), certificate {n + 1}",
                                        pem, usage)


def _chain(read: ReadText, path: str, where: str, problems: list[Problem]) -> str | None:
    """The certificates of one file as one PEM chain (keys left behind), or ``None`` after a problem."""
    pems = _certificates(read, path, where, problems)
    return "".join(pems) if pems else None


def _certificates(read: ReadText, path: str, where: str, problems: list[Problem]) -> list[str]:
    try:
        text = read(path, where)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return []
    try:
        certs = parse_certificates(text)
    except CertificateError as exc:
        problems.append(Problem(where, f"{path}: {exc}"))
        return []
    return [c.public_bytes(Encoding.PEM).decode("ascii") for c in certs]


def _paths(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return ()
