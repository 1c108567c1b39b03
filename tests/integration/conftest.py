"""Fixtures: a trustme PKI, an echo upstream, and an in-process gateway on 127.0.0.1:0."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Awaitable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
import yaml

from trio_gw.runtime.echo import EchoServer, open_echo_listeners
from trio_gw.runtime.gateway import Gateway
from trio_gw.runtime.settings import load_settings

from .conftest_postgres import fresh_postgres, pg_pki, private_postgres, tls_postgres  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_pair(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("server-cert")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "default.test")
    cert, key = d / "server.pem", d / "server.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture
async def dead_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then closed): connecting to it is refused."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    listener.close()
    return port


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Upstream:
    def __init__(self, server: EchoServer, port: int) -> None:
        self.server = server
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> Upstream:
    server = EchoServer()
    listeners = await open_echo_listeners()
    nursery.start_soon(server.serve, listeners)
    return Upstream(server, listeners[0].socket.getsockname()[1])


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start a gateway in this test's nursery: ``await start_gateway(declarative_dict, **settings)``."""
    started: list[Gateway] = []

    async def start(declarative: dict[str, Any] | None = None, **settings: Any) -> Gateway:
        prefix = tmp_path / f"gw{len(started)}"
        prefix.mkdir()
        overrides: dict[str, Any] = {
            "prefix": str(prefix),
            "proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl",
            "admin_listen": "off",
            "status_listen": "127.0.0.1:0",
            "proxy_access_log": "off",
            "database": "off",
        }
        if declarative is not None:
            path = prefix / "kong.yaml"
            path.write_text(yaml.safe_dump(declarative))
            overrides["declarative_config"] = str(path)
        overrides.update(settings)
        gw = await nursery.start(Gateway(load_settings(None, environ={}, overrides=overrides)).run)
        started.append(gw)
        return gw

    yield start


def port_of(gw: Gateway, *, ssl: bool = False, kind: str = "proxy") -> int:
    return next(li.port for li in gw.listeners[kind] if (li.tls is not None) == ssl)


@pytest.fixture(scope="session")
def ca_pem(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
