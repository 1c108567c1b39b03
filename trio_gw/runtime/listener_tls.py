"""TLS of the Admin API and status listeners: their certificates, and admin mTLS.

These listeners have one context each for the life of the process (unlike the
proxy listeners, whose contexts belong to each generation).  Their version and
cipher policy is the proxy's; their certificates are ``admin_ssl_cert`` /
``status_ssl_cert`` (Kong), or the generated one under ``prefix``/pki.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from pathlib import Path

from trio_gw.errors import CertificateError, ConfigError
from trio_gw.net.contexts import load_pem_pair, new_server_context
from trio_gw.runtime.certificate_files import read_dhparam_file, read_pairs
from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.settings import Settings
from trio_gw.tls.downstream import parse_downstream_policy

log = logging.getLogger("trio_gw.admin")


def listener_tls_context(settings: Settings, setting: str, role: str) -> ssl.SSLContext:
    """A TLS listener context for the Admin or Status API: ``setting``/``setting_key`` pairs (blocking: thread).

    The downstream policy (versions, ciphers) is the proxy's.  Without pairs the
    generated certificate under ``prefix``/pki is served, as Kong generates one.

    Raises:
        ConfigError: naming the setting whose file cannot be used.
    """
    options = settings.as_mapping()
    dhparam = read_dhparam_file(settings)
    if dhparam is not None:
        options = {**options, "ssl_dhparam": dhparam}
    ctx = new_server_context(parse_downstream_policy(options))
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
