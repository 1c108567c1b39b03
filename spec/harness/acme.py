"""The ``pebble`` upstream kind: a real ACME server (Let's Encrypt's pebble) for a scenario's gateway.

Theory of operation: the harness picks two free loopback ports *for the
gateway* -- ``{{upstream.NAME.http_port}}`` and ``{{upstream.NAME.tls_port}}``,
which the scenario puts in its ``proxy_listen`` -- and starts pebble
(:func:`trio_gw.testing.pebble.start_pebble`) validating http-01 on the first
and tls-alpn-01 on the second, with a DNS stub
(:class:`trio_gw.testing.dns_stub.DnsStub`) answering 127.0.0.1 for every
name, so the challenges reach the gateway's own listeners and nothing leaves
the machine.  ``{{upstream.NAME.url}}`` is pebble's directory (the ``acme``
plugin's ``api_uri``), ``{{upstream.NAME.ca}}`` the CA of pebble's own TLS
certificate (for ``lua_ssl_trusted_certificate``), ``{{upstream.NAME.root}}``
the root pebble issues under in this run (to verify what the gateway serves).
The two ports stay reserved (:func:`trio_gw.testing.ports.reserved_ports`) while
pebble runs, so the scenario's listeners carry the ``reuseport`` flag.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from spec.harness.placeholders import Context
from trio_gw.testing.dns_stub import DnsStub
from trio_gw.testing.pebble import start_pebble
from trio_gw.testing.ports import reserved_ports


class PebbleServer:
    """pebble and its DNS stub, shaped like the harness's upstream servers (see the module docstring)."""

    ssl_context = None

    def __init__(self, name: str, directory: str) -> None:
        workdir = Path(directory) / f"pebble-{name}"
        workdir.mkdir()
        self._stack = contextlib.ExitStack()
        try:
            self.http_port, self.tls_port = self._stack.enter_context(reserved_ports(2))
            dns = self._stack.enter_context(DnsStub())
            self.pebble = self._stack.enter_context(start_pebble(
                workdir, http_port=self.http_port, tls_port=self.tls_port, dns_server=dns.server))
            self.root = workdir / "pebble-root.pem"
            self.root.write_text(self.pebble.root_pem())
        except BaseException:
            self._stack.close()
            raise
        self.port = int(self.pebble.directory.rsplit(":", 1)[1].split("/", 1)[0])
        from spec.harness.upstreams import Observed  # (upstreams imports this module)

        self.observed = Observed()  # pebble records nothing the scenarios check
        self._stopped = threading.Event()

    def define_placeholders(self, name: str, context: Context) -> None:
        context.set(f"upstream.{name}.url", self.pebble.directory)
        context.set(f"upstream.{name}.http_port", self.http_port)
        context.set(f"upstream.{name}.tls_port", self.tls_port)
        context.set(f"upstream.{name}.ca", str(self.pebble.ca_file))
        context.set(f"upstream.{name}.root", str(self.root))

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """pebble runs in its own process: wait until stopped."""
        self._stopped.wait()

    def shutdown(self) -> None:
        self._stopped.set()

    def server_close(self) -> None:
        self._stack.close()  # pebble, then the DNS stub

    def close_all(self) -> None:
        return None
