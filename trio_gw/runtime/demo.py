"""``trio-gw demo``: a working gateway with no set-up and no external service.

Creates a dev PKI in the data directory, starts the built-in echo upstream on a
free loopback port, writes a decK file with one service and one route to it,
and serves HTTP on 8000 and HTTPS on 8443 — then prints curl commands that work
as printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import trio
import yaml

from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.runtime.echo import EchoServer, open_echo_listeners
from trio_gw.runtime.gateway import Gateway, configure_logging
from trio_gw.runtime.settings import load_settings

DEMO_DEFAULTS = {
    "proxy_listen": "127.0.0.1:8000, 127.0.0.1:8443 ssl",
    "status_listen": "127.0.0.1:8007",
    "admin_listen": "off",
}


def _demo_config(upstream_port: int) -> dict[str, object]:
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": f"http://127.0.0.1:{upstream_port}",
                "routes": [{"name": "demo", "paths": ["/"], "strip_path": False}],
            }
        ],
    }


def run_demo(overrides: Mapping[str, object], *, exit_after: float | None = None) -> int:
    """Run the demo until Ctrl-C (or ``exit_after`` seconds, for tests)."""
    return trio.run(_demo, dict(overrides), exit_after)


async def _demo(overrides: dict[str, object], exit_after: float | None) -> int:
    base = load_settings(None, overrides={**DEMO_DEFAULTS, **overrides})
    prefix = Path(base.prefix).resolve()
    pki = ensure_dev_pki(prefix / "pki")
    echo = EchoServer()
    echo_listeners = await open_echo_listeners()
    upstream_port = echo_listeners[0].socket.getsockname()[1]
    decl = prefix / "demo.yaml"
    decl.write_text(yaml.safe_dump(_demo_config(upstream_port), sort_keys=False))
    settings = load_settings(
        None,
        overrides={
            **DEMO_DEFAULTS,
            "prefix": str(prefix),
            "database": "off",
            "declarative_config": str(decl),
            "ssl_cert": str(pki.server_cert),
            "ssl_cert_key": str(pki.server_key),
            **overrides,
        },
    )
    configure_logging(settings.log_level)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo.serve, echo_listeners)
        async with trio.open_nursery() as gateway_nursery:
            gateway: Gateway = await gateway_nursery.start(Gateway(settings).run)
            _print_instructions(gateway, pki.ca_cert, pki.client_cert, pki.client_key, decl)
            if exit_after is not None:
                await trio.sleep(exit_after)
                gateway_nursery.cancel_scope.cancel()
        # the gateway returned (SIGTERM/SIGINT drained it): stop the echo upstream too
        nursery.cancel_scope.cancel()
    return 0


def _print_instructions(gateway: Gateway, ca: Path, client_cert: Path, client_key: Path, decl: Path) -> None:
    http = [li for li in gateway.listeners["proxy"] if li.tls is None]
    https = [li for li in gateway.listeners["proxy"] if li.tls is not None]
    lines = ["", "trio-gw demo is running. Try:", ""]
    if http:
        lines.append(f"  curl -s http://localhost:{http[0].port}/anything?hello=world")
    if https:
        port = https[0].port
        lines.append(f"  curl -s --cacert {ca} https://localhost:{port}/anything")
        lines.append(f"  curl -s --cacert {ca} https://localhost:{port}/bytes/1048576 -o /dev/null -w '%{{http_code}} %{{size_download}}\\n'")
        lines.append(f"  openssl s_client -connect 127.0.0.1:{port} -servername localhost -CAfile {ca} </dev/null")
    for li in gateway.listeners["status"]:
        lines.append(f"  curl -s http://127.0.0.1:{li.port}/status")
    lines += ["", f"Configuration: {decl}   Dev PKI: {ca.parent}  (client cert: {client_cert}, key {client_key})",
              "Ctrl-C stops it.", ""]
    print("\n".join(lines), flush=True)
