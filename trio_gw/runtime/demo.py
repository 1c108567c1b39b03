"""``trio-gw demo``: a working gateway with no set-up and no external service.

What it shows is what trio-gw is for:

* the embedded SQLite datastore under ``prefix`` and the Admin API on loopback
  (``GET /certificates`` lists the demo's certificate entity);
* TLS with certificates picked by SNI: ``localhost`` gets the default
  certificate (``ssl_cert``), ``mtls.localhost`` a certificate entity with an
  SNI; HTTP/2 on the TLS listener (ALPN ``h2``);
* client-certificate authentication: routes on ``mtls.localhost`` run
  ``mtls-auth`` with the dev CA as a CA certificate entity, and the upstream
  sees the consumer (``X-Consumer-Username: demo-client``); a client without a
  certificate gets 401 ``no_cert``.  Only ``mtls.localhost`` asks for a client
  certificate in the handshake: a browser on ``localhost`` is never prompted.

On first start the datastore gets the demo configuration; later starts keep
whatever was changed through the Admin API and only point the ``echo``
service at the new port of the built-in echo upstream.  Every printed command
works as printed (a test runs them all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import trio

from trio_gw.model.declarative import parse_declarative
from trio_gw.model.entities import Entities
from trio_gw.runtime.datastore import open_store
from trio_gw.runtime.devpki import DevPki, ensure_dev_pki
from trio_gw.runtime.control import SINGLE_PROCESS
from trio_gw.runtime.echo import EchoServer, open_echo_listeners
from trio_gw.runtime.gateway import Gateway
from trio_gw.runtime.logs import configure_logging
from trio_gw.runtime.settings import load_settings
from trio_gw.settings import Settings
from trio_gw.store.sqlite import DEFAULT_FILENAME

log = logging.getLogger("trio_gw.demo")

DEMO_DEFAULTS = {
    "proxy_listen": "127.0.0.1:8000, 127.0.0.1:8443 ssl http2",
    "status_listen": "127.0.0.1:8007",
    "admin_listen": "127.0.0.1:8001",
    "database": "sqlite",
}
#: Deterministic ids, so the printed commands and a second start name the same entities.
DEMO_CA_ID = "0d3c0a7e-5a1b-4c6e-9f00-000000000001"
DEMO_CERT_ID = "0d3c0a7e-5a1b-4c6e-9f00-000000000002"
MTLS_HOST = "mtls.localhost"


def demo_configuration(upstream_port: int, pki: DevPki) -> dict[str, object]:
    """The demo's decK document: one service, a public route and an mTLS route."""
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": DEMO_CA_ID, "cert": pki.ca_cert.read_text(), "tags": ["demo"]}],
        "certificates": [{
            "id": DEMO_CERT_ID, "cert": pki.mtls_cert.read_text(), "key": pki.mtls_key.read_text(),
            "snis": [{"name": MTLS_HOST}], "tags": ["demo"],
        }],
        "consumers": [{"username": "demo-client", "tags": ["demo"]}],
        "services": [{
            "name": "echo",
            "url": f"http://127.0.0.1:{upstream_port}",
            "routes": [
                {"name": "public", "paths": ["/"], "strip_path": False},
                {"name": "mtls", "hosts": [MTLS_HOST], "paths": ["/"], "strip_path": False,
                 "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [DEMO_CA_ID]}}]},
            ],
        }],
    }


def seed_store(settings: Settings, upstream_port: int, pki: DevPki) -> None:
    """Give an empty datastore the demo configuration, or re-point ``echo`` (blocking: run in a thread)."""
    store = open_store(settings)
    assert store is not None  # the demo runs on the embedded SQLite store
    try:
        current = store.load()
        if not current.services and not current.certificates:
            wanted = parse_declarative(demo_configuration(upstream_port, pki), now=int(time.time()))
        else:
            wanted = _with_echo_port(current, upstream_port)
        if wanted != current:
            store.commit(current, wanted)
    finally:
        store.close()


def _with_echo_port(entities: Entities, port: int) -> Entities:
    services = dict(entities.services)
    for sid, service in services.items():
        if service.name == "echo" and service.host == "127.0.0.1":
            services[sid] = replace(service, port=port)
    return replace(entities, services=services)


def run_demo(overrides: Mapping[str, object], *, exit_after: float | None = None) -> int:
    """Run the demo until Ctrl-C (or ``exit_after`` seconds, for tests)."""
    return trio.run(_demo, dict(overrides), exit_after)


async def _demo(overrides: dict[str, object], exit_after: float | None) -> int:
    base = load_settings(None, overrides={**DEMO_DEFAULTS, **overrides})
    prefix = Path(base.prefix).resolve()
    pki = ensure_dev_pki(prefix / "pki")
    echo = EchoServer(keep_requests=100)  # the demo may run for days
    echo_listeners = await open_echo_listeners()
    upstream_port = echo_listeners[0].socket.getsockname()[1]
    settings = load_settings(
        None,
        overrides={
            **DEMO_DEFAULTS,
            "prefix": str(prefix),
            "ssl_cert": str(pki.server_cert),
            "ssl_cert_key": str(pki.server_key),
            **overrides,
        },
    )
    configure_logging(settings.log_level)
    await trio.to_thread.run_sync(seed_store, settings, upstream_port, pki)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo.serve, echo_listeners)
        async with trio.open_nursery() as gateway_nursery:
            gateway: Gateway = await gateway_nursery.start(
                Gateway(settings, role=replace(SINGLE_PROCESS, owns_process=True)).run)
            print(instructions(gateway, pki, prefix), flush=True)
            if exit_after is not None:
                await trio.sleep(exit_after)
                gateway_nursery.cancel_scope.cancel()
        # the gateway returned (SIGTERM/SIGINT drained it): stop the echo upstream too
        nursery.cancel_scope.cancel()
    return 0


def instructions(gateway: Gateway, pki: DevPki, prefix: Path) -> str:
    """The banner: commands that work as printed against this gateway's listeners."""
    http = [li for li in gateway.listeners["proxy"] if li.tls is None]
    https = [li for li in gateway.listeners["proxy"] if li.tls is not None]
    ca, cert, key = pki.ca_cert, pki.client_cert, pki.client_key
    lines = ["", "trio-gw demo is running. Try:", ""]
    if http:
        lines.append(f"  curl -s http://localhost:{http[0].port}/anything?hello=world")
    if https:
        port = https[0].port
        lines += [
            f"  curl -s --cacert {ca} https://localhost:{port}/anything",
            f"  curl -s --http2 --cacert {ca} https://localhost:{port}/anything -o /dev/null "
            "-w '%{http_version} %{http_code}\\n'",
            f"  curl -s --cacert {ca} --cert {cert} --key {key} https://{MTLS_HOST}:{port}/anything",
            f"  curl -s --cacert {ca} https://{MTLS_HOST}:{port}/anything",
            f"  openssl s_client -connect 127.0.0.1:{port} -servername {MTLS_HOST} -CAfile {ca} -brief </dev/null",
        ]
    for li in gateway.listeners["admin"]:
        scheme = "https" if li.tls is not None else "http"
        lines.append(f"  curl -s {scheme}://127.0.0.1:{li.port}/certificates")
    for li in gateway.listeners["status"]:
        lines.append(f"  curl -s http://127.0.0.1:{li.port}/status")
    lines += [
        "",
        f"{MTLS_HOST} requires a client certificate (mtls-auth): with --cert the upstream sees the consumer",
        "demo-client; without it the answer is 401 no_cert. localhost never asks for one.",
        f"Datastore: {prefix / DEFAULT_FILENAME} (change it with the Admin API)   Dev PKI: {ca.parent}",
        "Ctrl-C stops it.",
        "",
    ]
    return "\n".join(lines)
