"""What server contexts get beyond Python's ``ssl`` defaults (through the guarded shim), and what they rely on."""

from __future__ import annotations

import ssl

from trio_gw.net.contexts import new_server_context
from trio_gw.net.openssl_shim import modes, read_ahead
from trio_gw.tls.downstream import parse_downstream_policy

_SSL_MODE_RELEASE_BUFFERS = 0x10


def test_server_contexts_read_ahead() -> None:
    assert read_ahead(new_server_context(parse_downstream_policy({})))


def test_python_contexts_do_not_read_ahead_by_themselves() -> None:
    """Why the shim sets it: CPython leaves it off."""
    assert not read_ahead(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def test_idle_connections_release_their_buffers() -> None:
    """CPython sets SSL_MODE_RELEASE_BUFFERS itself (as nginx does): an idle connection holds no
    16 KiB record buffers.  The idle-memory figures in docs/performance.md rely on it."""
    assert modes(new_server_context(parse_downstream_policy({}))) & _SSL_MODE_RELEASE_BUFFERS
    assert modes(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) & _SSL_MODE_RELEASE_BUFFERS
