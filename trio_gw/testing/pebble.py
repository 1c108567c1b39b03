"""Start Debian's ``pebble`` (Let's Encrypt's ACME test server) for a test, on 127.0.0.1, and stop it.

``tools/install-system-tools.sh pebble`` installs it (``make system-tools``).
:func:`start_pebble` writes a config into a scratch directory -- pebble's own
TLS certificate comes from a fresh trustme CA (nothing is committed) -- picks
free loopback ports for the ACME and management APIs, and runs::

    pebble -config <dir>/pebble-config.json -dnsserver 127.0.0.1:<stub port>

so every name pebble validates resolves through the test's
:class:`~trio_gw.testing.dns_stub.DnsStub` to 127.0.0.1, where the test's
own listeners answer on ``http_port`` (http-01) and ``tls_port``
(tls-alpn-01).  Environment: ``PEBBLE_VA_NOSLEEP=1`` (no random 0-15 s
validation delays), ``PEBBLE_WFE_NONCEREJECT=0`` (no artificial badNonce:
deterministic tests), ``PEBBLE_AUTHZREUSE=0`` (every order is validated);
``always_valid`` sets ``PEBBLE_VA_ALWAYS_VALID=1`` and ``alternate_roots``
``PEBBLE_ALTERNATE_ROOTS``.  With ``eab=True`` pebble requires external
account binding with the MAC keys of its own EAB example config
(:data:`PEBBLE_EAB_KEYS`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trustme

from trio_gw.net.http_fetch import outbound_tls_context

__all__ = ["PEBBLE_EAB_KEYS", "Pebble", "pebble_available", "start_pebble"]

#: The ``externalAccountMACKeys`` of pebble's example ``pebble-config-external-account-bindings.json``.
PEBBLE_EAB_KEYS: Final = {
    "kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    "kid-2": "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
}
_START_TIMEOUT: Final = 20.0


def pebble_available() -> bool:
    """Whether the ``pebble`` binary is installed."""
    return shutil.which("pebble") is not None


@dataclass
class Pebble:
    """A running pebble: its directory URL, the CA file its TLS chains to, and the process."""

    directory: str
    management: str
    ca_file: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting pebble's TLS certificate: the one the gateway's own fetches use."""
        return outbound_tls_context([str(self.ca_file)], setting="pebble's CA file")

    def root_pem(self, index: int = 0) -> str:
        """The PEM of pebble's issuing root ``index`` (regenerated at every start)."""
        url = f"{self.management}/roots/{index}"
        with urllib.request.urlopen(url, context=self.client_context(), timeout=10) as reply:  # noqa: S310
            return str(reply.read().decode("ascii"))

    def log(self) -> str:
        """What pebble printed so far (for failure messages)."""
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_pebble(
    workdir: Path, *, http_port: int, tls_port: int, dns_server: str, eab: bool = False,
    always_valid: bool = False, alternate_roots: int = 0, env: Mapping[str, str] | None = None,
) -> Iterator[Pebble]:
    """Run pebble for the duration of the ``with`` block (see the module docstring).

    Args:
        workdir: a scratch directory (config, TLS certificate and key, log).
        http_port: where pebble connects for http-01.
        tls_port: where pebble connects for tls-alpn-01.
        dns_server: ``127.0.0.1:PORT`` of the resolver pebble uses.
        eab: require external account binding (:data:`PEBBLE_EAB_KEYS`).
        always_valid: ``PEBBLE_VA_ALWAYS_VALID=1`` (no validation at all).
        alternate_roots: ``PEBBLE_ALTERNATE_ROOTS`` (alternative chains).
        env: more environment variables.

    Raises:
        RuntimeError: pebble is missing, exits, or does not listen in time (its log is quoted).
    """
    if not pebble_available():
        raise RuntimeError("pebble is not installed (tools/install-system-tools.sh pebble)")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = workdir / "pebble-ca.pem", workdir / "pebble-cert.pem", workdir / "pebble-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    environment = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
                   **({"PEBBLE_VA_ALWAYS_VALID": "1"} if always_valid else {}),
                   **({"PEBBLE_ALTERNATE_ROOTS": str(alternate_roots)} if alternate_roots else {}), **(env or {})}
    pebble = None
    for _ in range(3):  # a port picked free can be taken before pebble binds it: try again
        port, management = _free_port(), _free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert_file), "privateKey": str(key_file), "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": eab,
            **({"externalAccountMACKeys": PEBBLE_EAB_KEYS} if eab else {}),
        }}
        (workdir / "pebble-config.json").write_text(json.dumps(config))
        log_file = workdir / "pebble.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                ["pebble", "-config", str(workdir / "pebble-config.json"), "-dnsserver", dns_server],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment)
        pebble = Pebble(f"https://127.0.0.1:{port}/dir", f"https://127.0.0.1:{management}", ca_file, process,
                        log_file)
        if _wait_listening(pebble, port):
            break
        pebble.stop()
        if "address already in use" not in pebble.log():
            raise RuntimeError(f"pebble did not start:\n{pebble.log()}")
    else:
        raise RuntimeError(f"pebble found no free port:\n{pebble.log() if pebble else ''}")
    try:
        yield pebble
    finally:
        pebble.stop()


def _wait_listening(pebble: Pebble, port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline and pebble.process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
