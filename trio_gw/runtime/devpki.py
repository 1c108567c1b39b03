"""A local development PKI for the demo: a CA, a ``localhost`` server certificate, a client certificate.

Generated with trustme into the data directory on first use (never shipped,
never committed); later runs reuse it so a browser or curl trusting the CA
keeps working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class DevPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def at(cls, directory: Path) -> DevPki:
        return cls(
            ca_cert=directory / "ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
            client_cert=directory / "client.pem",
            client_key=directory / "client.key",
        )

    def exists(self) -> bool:
        return all(p.exists() for p in vars(self).values())


def ensure_dev_pki(directory: Path) -> DevPki:
    """Create the dev PKI under ``directory`` unless it is already there."""
    pki = DevPki.at(directory)
    if pki.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="trio-gw dev CA")
    server = ca.issue_cert("localhost", "127.0.0.1", "::1", common_name="localhost")
    client = ca.issue_cert("demo-client@trio-gw.test", common_name="demo-client")
    ca.cert_pem.write_to_path(str(pki.ca_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    with open(pki.server_cert, "wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    client.private_key_pem.write_to_path(str(pki.client_key))
    with open(pki.client_cert, "wb") as f:
        for blob in client.cert_chain_pems:
            f.write(blob.bytes())
    for key in (pki.server_key, pki.client_key):
        os.chmod(key, 0o600)
    return pki
