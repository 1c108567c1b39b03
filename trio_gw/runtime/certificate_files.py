"""Reading what the settings name from files: certificate pairs, Tyk's combined files, CA bundles, the declarative file.

Called when a generation is built (in its worker thread): a SIGHUP or any
reload reads the files again, so replacing a certificate file and reloading
rotates it.  Every problem names the setting and the file; nothing is half-read.

The certificate inventory (``model.inventory``) sees every certificate file the
settings name, in every role (``tls.certificate_settings``), as what the node
serves and trusts: the files of the proxy and of upstream TLS are read with each
generation (:func:`read_file_certificates`), those of the Admin API and status
listeners and of the node's own https fetches once per process, when those
listeners' contexts are built (:func:`read_node_certificates`) — a reload does
not change what those listeners serve, so it does not change what the inventory
says about them either.  When a listener serves the generated development
certificate (no ``ssl_cert``/``admin_ssl_cert``/``status_ssl_cert``), that file
is watched under the setting it stands in for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.certificates import parse_certificate_entity
from trio_gw.model.declarative import load_declarative_text
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.inventory import ConfiguredCertificate
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.keys import key_type
from trio_gw.pki.parse import parse_certificates
from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.settings import Settings
from trio_gw.tls.dhparams import is_path
from trio_gw.tls.certificate_settings import parse_configured_certificates

log = logging.getLogger("trio_gw")

PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----\r?\n.*?-----END [A-Z0-9 ]+-----\r?\n?", re.S)
#: A certificate of the store named in ``ssl_certificates`` (Tyk: certificate ids).
STORE_REFERENCE = re.compile(r"^(sha256:[0-9a-fA-F]{64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


#: Settings whose certificates are read once per process, with the contexts that use them: the Admin API's and
#: the status listener's certificates, the Admin API's client CAs, the trust of the node's own https fetches, and the
#: webhooks' client certificate and CA file (Tyk ``external_services``).
NODE_SETTINGS = ("admin_ssl_cert", "status_ssl_cert", "admin_mtls_ca_certificates", "lua_ssl_trusted_certificate",
                 "external_services")


@dataclass(frozen=True)
class FileCertificates:
    """The certificates the settings name, read: ``ssl_cert`` pairs, Tyk ``ssl_certificates``, the server truststore,
    and every certificate file of the proxy and upstream TLS as inventory items (``configured``, no key material)."""

    defaults: tuple[Certificate, ...] = ()
    extra: tuple[Certificate, ...] = ()
    client_truststore: tuple[str, ...] = ()
    configured: tuple[ConfiguredCertificate, ...] = ()
    #: ``ssl_stapling_file``: a DER OCSP response (checked against the served certificates at build).
    stapling_response: bytes | None = None
    #: ``ssl_crl``: the server truststore's CRL files, as read (parsed at build).
    client_crls: tuple[bytes, ...] = ()
    #: ``ssl_dhparam``, when it names a file: the file's text (parsed at build).
    dhparam_file: str | None = None


def read_file_certificates(settings: Settings, *, now: int, entities: Entities | None = None) -> FileCertificates:
    """Read every certificate file the settings name for one generation (blocking).

    Args:
        settings: the node settings.
        now: Unix seconds (validity checks of the pairs).
        entities: the configuration being built, for settings that name store certificates.

    Raises:
        ConfigError: a file is unreadable or unusable, naming the setting.
    """
    defaults = tuple(read_default_certificates(settings, now=now))
    problems: list[Problem] = []
    stapling = None
    if settings.ssl_stapling and settings.ssl_stapling_file is not None:
        stapling = _read_bytes(settings.ssl_stapling_file, "ssl_stapling_file", problems)
    crls = [_read_bytes(path, f"ssl_crl[{i}]", problems) for i, path in enumerate(settings.ssl_crl)]
    try:
        dhparam = read_dhparam_file(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
        dhparam = None
    if problems:
        raise ConfigError(problems)
    return FileCertificates(
        defaults,
        tuple(read_ssl_certificates_files(settings, now=now)),
        tuple(read_client_truststore(settings)),
        tuple(read_configured_certificates(settings, entities or Entities())),
        stapling,
        tuple(c for c in crls if c is not None),
        dhparam,
    )


def read_dhparam_file(settings: Settings) -> str | None:
    """The text of the file ``ssl_dhparam`` names, or ``None`` when it names a group or holds PEM (blocking).

    Read with every generation, as the certificate files are, so a SIGHUP picks up a new file.

    Raises:
        ConfigError: the file cannot be read, naming ``ssl_dhparam``.
    """
    value = settings.ssl_dhparam
    if value is None or not is_path(str(value)):
        return None
    return read_setting_file(str(value).strip(), "ssl_dhparam")


def read_setting_file(path: str, where: str) -> str:
    """Read a file a setting names (the reader ``tls.certificate_settings`` expects).

    Raises:
        ConfigError: unreadable or not text, naming ``where`` and the reason.
    """
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", where) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a text (PEM) file", where) from exc


def read_configured_certificates(settings: Settings, entities: Entities) -> list[ConfiguredCertificate]:
    """The inventory items of the certificate files read with each generation: every setting but
    :data:`NODE_SETTINGS`, the development certificate standing in for an empty ``ssl_cert`` (blocking).

    Raises:
        ConfigError: a file is unreadable or holds no certificate, under its setting's path.
    """
    values = dict(settings.as_mapping())
    for name in NODE_SETTINGS:
        values[name] = ()
    if serves_generated_certificate(settings, "ssl_cert"):
        values["ssl_cert"] = (str(ensure_dev_pki(dev_pki_directory(settings)).server_cert),)
    return parse_configured_certificates(values, entities, read_setting_file)


def read_node_certificates(settings: Settings) -> list[ConfiguredCertificate]:
    """The inventory items of :data:`NODE_SETTINGS`, read once when the node starts (blocking).

    The development certificate is included under ``admin_ssl_cert``/``status_ssl_cert``
    when that listener serves it.

    Raises:
        ConfigError: a file is unreadable or holds no certificate, under its setting's path.
    """
    named = settings.as_mapping()
    values: dict[str, object] = {name: named[name] for name in NODE_SETTINGS}
    for name in ("admin_ssl_cert", "status_ssl_cert"):
        if serves_generated_certificate(settings, name):
            values[name] = (str(ensure_dev_pki(dev_pki_directory(settings)).server_cert),)
    return parse_configured_certificates(values, Entities(), read_setting_file)


def dev_pki_directory(settings: Settings) -> Path:
    """Where the generated development PKI lives: ``prefix``/pki."""
    return Path(settings.prefix) / "pki"


def serves_generated_certificate(settings: Settings, setting: str) -> bool:
    """Whether the listeners ``setting`` is for serve the generated development certificate.

    Args:
        settings: the node settings.
        setting: ``ssl_cert`` (the proxy: no ``ssl_cert`` and no Tyk ``ssl_certificates``),
            ``admin_ssl_cert`` or ``status_ssl_cert``.

    Returns:
        True when one of those listeners is ``ssl`` and the setting is empty.
    """
    if setting == "ssl_cert":
        return (not settings.ssl_cert and not settings.ssl_certificates
                and any(a.ssl for a in settings.proxy_listen))
    listen = settings.admin_listen if setting == "admin_ssl_cert" else settings.status_listen
    return not getattr(settings, setting) and any(a.ssl for a in listen)


def _read_bytes(path: str, key: str, problems: list[Problem]) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        problems.append(Problem(key, f"cannot read {path}: {exc.strerror}"))
        return None


def _read(path: str, key: str, problems: list[Problem]) -> str | None:
    try:
        return Path(path).read_text()
    except OSError as exc:
        problems.append(Problem(key, f"cannot read {path}: {exc.strerror}"))
        return None


def _merge_alt_pairs(certs: list[Certificate]) -> list[Certificate]:
    """Serve an RSA and an ECDSA ``ssl_cert`` pair together (Kong's dual default certificates).

    OpenSSL picks between the pairs of one context by the client's signature
    algorithms, so the first pair of another key type becomes ``cert_alt``.
    """
    if len(certs) < 2:
        return certs
    first = certs[0]
    first_type = key_type(parse_certificates(first.cert)[0].public_key())
    for i, other in enumerate(certs[1:], start=1):
        if key_type(parse_certificates(other.cert)[0].public_key()) != first_type:
            merged = replace(first, cert_alt=other.cert, key_alt=other.key)
            return [merged] + certs[1:i] + certs[i + 1 :]
    return certs


def read_pairs(pairs: list[tuple[str, str]], setting: str, *, now: int) -> list[Certificate]:
    """Read certificate/key file pairs into certificate entities.

    Raises:
        ConfigError: a file is unreadable or its content unusable, naming ``setting[i]``.
    """
    certs: list[Certificate] = []
    problems: list[Problem] = []
    for i, (cert_path, key_path) in enumerate(pairs):
        cert_text = _read(cert_path, f"{setting}[{i}]", problems)
        key_text = _read(key_path, f"{setting}_key[{i}]", problems)
        if cert_text is None or key_text is None:
            continue
        try:
            certs.append(parse_certificate_entity({"cert": cert_text, "key": key_text}, now=now, id=f"{setting}#{i}"))
        except ConfigError as exc:
            for p in exc.problems:  # a key problem names the key's setting and file
                if p.path == "key":
                    problems.append(Problem(f"{setting}_key[{i}] ({key_path})", p.message))
                else:
                    problems.extend(ConfigError([p]).prefixed(f"{setting}[{i}] ({cert_path})").problems)
    if problems:
        raise ConfigError(problems)
    return certs


def read_default_certificates(settings: Settings, *, now: int) -> list[Certificate]:
    """Read the ``ssl_cert``/``ssl_cert_key`` pairs (a generated one when none and an ssl listener).

    Raises:
        ConfigError: a file is unreadable or its content unusable, naming the setting.
    """
    pairs = list(zip(settings.ssl_cert, settings.ssl_cert_key))
    if not pairs and serves_generated_certificate(settings, "ssl_cert"):
        # Kong generates a default certificate when none is configured; so do we, under
        # prefix/pki, signed by a local CA the user can choose to trust.  With Tyk's
        # ssl_certificates the first of them is the default instead (tls/sni.py rule 7).
        pki = ensure_dev_pki(dev_pki_directory(settings))
        log.warning("no ssl_cert configured: serving the generated certificate %s (CA %s)",
                    pki.server_cert, pki.ca_cert)
        pairs = [(str(pki.server_cert), str(pki.server_key))]
    return _merge_alt_pairs(read_pairs(pairs, "ssl_cert", now=now))


def read_ssl_certificates_files(settings: Settings, *, now: int) -> list[Certificate]:
    """The combined-PEM files of Tyk's ``ssl_certificates`` setting as certificate entities."""
    certs: list[Certificate] = []
    problems: list[Problem] = []
    for i, entry in enumerate(settings.ssl_certificates):
        if STORE_REFERENCE.match(entry):
            continue  # a store certificate: checked against the entities in build_snapshot
        text = _read(entry, f"ssl_certificates[{i}]", problems)
        if text is None:
            continue
        blocks = PEM_BLOCK.findall(text)
        key = "".join(b for b in blocks if "PRIVATE KEY" in b.split("\n", 1)[0])
        chain = "".join(b for b in blocks if "PRIVATE KEY" not in b.split("\n", 1)[0])
        if not key or not chain:
            # Tyk: "must contain both the certificate (public key) and private key"
            missing = "private key" if chain else "certificate"
            problems.append(Problem(f"ssl_certificates[{i}] ({entry})", f"holds no {missing}: a server certificate "
                                    "pair is one PEM file with the certificate chain and its private key"))
            continue
        try:
            certs.append(parse_certificate_entity({"cert": chain, "key": key}, now=now, id=f"ssl_certificates#{i}"))
        except ConfigError as exc:
            problems.extend(exc.prefixed(f"ssl_certificates[{i}] ({entry})").problems)
    if problems:
        raise ConfigError(problems)
    return certs


def read_client_truststore(settings: Settings) -> list[str]:
    """The CA certificates of ``ssl_client_certificate`` (PEM bundles), one PEM per certificate.

    Raises:
        ConfigError: a file is unreadable, holds no certificate, or a certificate
            that is not a CA, naming ``ssl_client_certificate[i]``.
    """
    pems: list[str] = []
    problems: list[Problem] = []
    for i, path in enumerate(settings.ssl_client_certificate):
        key = f"ssl_client_certificate[{i}]"
        text = _read(path, key, problems)
        if text is None:
            continue
        try:
            certs = parse_certificates(text)
        except CertificateError as exc:
            problems.append(Problem(key, f"{path}: {exc}"))
            continue
        for cert in certs:
            if not describe_certificate(cert).is_ca:
                problems.append(Problem(key, f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate"))
            pems.append(cert.public_bytes(Encoding.PEM).decode("ascii"))
    if problems:
        raise ConfigError(problems)
    return pems


def read_entities(settings: Settings, *, now: int) -> Entities:
    """The configuration for ``database: off``: the declarative file, or nothing."""
    path = settings.declarative_config
    if path is None:
        return Entities()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path="declarative_config") from exc
    try:
        return load_declarative_text(text, now=now)
    except ConfigError as exc:
        raise exc.prefixed(f"{path}") from None
