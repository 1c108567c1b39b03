"""Request-phase plugins; importing this package registers every plugin."""

from trio_gw.plugins import acme as acme
from trio_gw.plugins import header_cert_auth as header_cert_auth
from trio_gw.plugins import key_auth as key_auth
from trio_gw.plugins import legacy_ssl as legacy_ssl
from trio_gw.plugins import mtls_allowlist as mtls_allowlist
from trio_gw.plugins import mtls_auth as mtls_auth
from trio_gw.plugins.base import REGISTRY as REGISTRY
from trio_gw.plugins.requirements import client_cert_requirements as client_cert_requirements

__all__ = [
    "REGISTRY",
    "acme",
    "client_cert_requirements",
    "header_cert_auth",
    "key_auth",
    "legacy_ssl",
    "mtls_allowlist",
    "mtls_auth",
]
