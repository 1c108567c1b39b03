"""A local development PKI for the demo: a CA, server certificates for ``localhost`` and
``mtls.localhost``, and a client certificate.

Generated with trustme into the data directory on first use (never shipped,
never committed); later runs reuse it so a browser or curl trusting the CA
keeps working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DevPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: ``mtls.localhost``: the demo's host whose route requires a client certificate.
    mtls_cert: Path
    mtls_key: Path

    @classmethod
    def at(cls, directory: Path) -> DevPki:
        return cls(
            ca_cert=directory / "ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
            client_cert=directory / "client.pem",
            client_key=directory / "client.key",
            mtls_cert=directory / "mtls.pem",
            mtls_key=directory / "mtls.key",
        )

    def exists(self) -> bool:
        return all(p.exists() for p in vars(self).values())


def ensure_dev_pki(directory: Path) -> DevPki:
    """Create the dev PKI under ``directory`` unless it is already there."""
    pki = DevPki.at(directory)
    if pki.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    import trustme  # only when a development PKI is made: not in every node's memory

    ca = trustme.CA(organization_name="trio-gw dev CA")
    server = ca.issue_cert("localhost", "127.0.0.1", "::1", common_name="localhost")
    client = ca.issue_cert("demo-client@trio-gw.test", common_name="demo-client")
    ca.cert_pem.write_to_path(str(pki.ca_cert))
    mtls = ca.issue_cert("mtls.localhost", common_name="mtls.localhost")
    for leaf, cert_path, key_path in ((server, pki.server_cert, pki.server_key),
                                      (client, pki.client_cert, pki.client_key),
                                      (mtls, pki.mtls_cert, pki.mtls_key)):
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(fd, "wb") as f:
            f.write(leaf.private_key_pem.bytes())
        with open(cert_path, "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
    return pki
