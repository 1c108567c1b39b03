"""A guarded ctypes shim for the few OpenSSL calls CPython 3.11's ``ssl`` lacks.

Theory of operation
-------------------
``SSL_CTX_set_ciphersuites`` (TLS 1.3 suites), ``SSL_CTX_set_verify_depth`` and
``SSL_CTX_add_client_CA`` have no Python API before 3.13 (docs/tls-stack.md §3,
§4).  The ``SSL_CTX*`` of an ``ssl.SSLContext`` sits right after
``PyObject_HEAD`` (``id(ctx) + 16`` on 64-bit CPython).  That layout is private,
so before first use we prove the pointer is right: ``SSL_CTX_get_options(p)``
must equal ``ctx.options`` for two contexts with different options.  A wrong
pointer would crash instead of raising, so nothing is called until the check
passes; if it fails, every function raises :class:`ShimUnavailable` and callers
report a clear configuration error (or fall back, where one exists).

One call works on a connection rather than a context: ``SSL_set_verify``, so the
SNI callback can stop a handshake from asking for a client certificate
(:func:`set_verify_none`, as nginx's servername callback does for a server
without ``ssl_verify_client``).  The ``SSL*`` of a CPython ``_ssl._SSLSocket``
(the ``_sslobj`` of an ``ssl.SSLObject``) sits after ``PyObject_HEAD`` and the
``Socket`` weakref (``id(obj) + 24`` on 64-bit).  It is proven twice before
use.  Once per process (:func:`connection_shim_available`): ``PyObject_HEAD``
must be two pointers (``object.__basicsize__``; debug and free-threaded builds
differ), and on real ``SSLObject`` s of two contexts with different verify
modes ``SSL_get_SSL_CTX`` must return that context's ``SSL_CTX*`` — also after
the object's context is replaced — and ``SSL_get_verify_mode`` its mode.  Then
on every call: ``SSL_get_SSL_CTX`` must return the ``SSL_CTX*`` of the context
the object has at that moment, and the verify mode must be the listener
context's.  When a check fails nothing is changed and the caller keeps the
listener's verify mode (the client is asked, as without the shim).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl
import sys
from functools import lru_cache
from typing import Any

from trio_gw.errors import ConfigError

_PTR_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p)  # ob_refcnt + ob_type
#: ``SSL*`` in ``PySSLSocket``: after PyObject_HEAD and the ``Socket`` weakref.
_SSL_PTR_OFFSET = 3 * ctypes.sizeof(ctypes.c_void_p)
#: The C type of ``ssl.SSLObject._sslobj``.
_SSL_SOCKET_TYPE: type | None = getattr(getattr(ssl, "_ssl", None), "_SSLSocket", None)

SSL_VERIFY_NONE = 0
#: ``SSL_CTRL_GET_READ_AHEAD`` / ``SSL_CTRL_SET_READ_AHEAD`` (ssl.h): SSL_CTX_get/set_read_ahead are macros.
_SSL_CTRL_GET_READ_AHEAD = 40
_SSL_CTRL_SET_READ_AHEAD = 41
#: ``SSL_CTRL_SET_SESS_CACHE_SIZE`` / ``SSL_CTRL_GET_SESS_CACHE_SIZE`` (ssl.h): SSL_CTX_sess_set/get_cache_size
#: are macros.
_SSL_CTRL_SET_SESS_CACHE_SIZE = 42
_SSL_CTRL_GET_SESS_CACHE_SIZE = 43
#: ``SSL_CTRL_SET_GROUPS_LIST`` (ssl.h): SSL_CTX_set1_groups_list is a macro.
_SSL_CTRL_SET_GROUPS_LIST = 92
#: ``SSL_CTRL_MODE`` (SSL_CTX_get_mode is a macro).
_SSL_CTRL_MODE = 33
#: ``SSL_MODE_NO_AUTO_CHAIN`` (ssl.h).
SSL_MODE_NO_AUTO_CHAIN = 0x08
_SSL_VERIFY_POST_HANDSHAKE = 0x08
#: What ``SSLContext.verify_mode`` sets with ``SSL_CTX_set_verify`` (CPython ``_ssl.c``).
_VERIFY_BITS = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 0x01, ssl.CERT_REQUIRED: 0x01 | 0x02}


class ShimUnavailable(ConfigError):
    """This interpreter's ``ssl`` cannot be extended safely (layout check failed)."""


class _Lib:
    def __init__(self) -> None:
        self.ssl = ctypes.CDLL("libssl.so.3")
        self.ssl.SSL_CTX_get_options.restype = ctypes.c_uint64
        self.ssl.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        self.ssl.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.ssl.SSL_CTX_set_verify_depth.restype = None
        self.ssl.SSL_CTX_set_verify_depth.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.crypto = ctypes.CDLL("libcrypto.so.3")
        self.crypto.d2i_X509.restype = ctypes.c_void_p
        self.crypto.d2i_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        self.crypto.X509_free.restype = None
        self.crypto.X509_free.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_CTX_add_client_CA.restype = ctypes.c_int
        self.ssl.SSL_CTX_add_client_CA.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.ssl.SSL_CTX_ctrl.restype = ctypes.c_long
        self.ssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.ssl.SSL_CTX_set_timeout.restype = ctypes.c_long
        self.ssl.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        self.ssl.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        self.ssl.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_get_verify_mode.restype = ctypes.c_int
        self.ssl.SSL_get_verify_mode.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_get_verify_callback.restype = ctypes.c_void_p
        self.ssl.SSL_get_verify_callback.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_set_verify.restype = None
        self.ssl.SSL_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]


def _ctx_ptr(ctx: ssl.SSLContext) -> int:
    return ctypes.c_void_p.from_address(id(ctx) + _PTR_OFFSET).value or 0


@lru_cache(maxsize=1)
def _lib() -> _Lib | None:
    """The checked library handle, or ``None`` when the layout cannot be trusted."""
    if sys.implementation.name != "cpython" or "OpenSSL 3." not in ssl.OPENSSL_VERSION:
        return None
    try:
        lib = _Lib()
    except OSError:
        return None
    a = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    b = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    b.options |= ssl.OP_NO_TICKET
    for ctx in (a, b):
        p = _ctx_ptr(ctx)
        if not p or lib.ssl.SSL_CTX_get_options(p) != int(ctx.options):
            return None
    return lib


def proven_libraries() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    """``(libssl, libcrypto)`` as ``_ssl`` uses them, once the layout proof passed; else ``None``.

    For other guarded shims (``net/ticket_keys.py``): they declare their own
    prototypes rather than changing the ``argtypes`` of these handles.
    """
    lib = _lib()
    return None if lib is None else (lib.ssl, lib.crypto)


def proven_context_pointer(ctx: ssl.SSLContext) -> int | None:
    """The ``SSL_CTX*`` of ``ctx``, checked once more against it (its options), or ``None``.

    ``None`` when the layout proof failed or this context's pointer does not
    agree with it: the caller must then not touch OpenSSL.
    """
    lib = _lib()
    if lib is None:
        return None
    p = _ctx_ptr(ctx)
    if not p or lib.ssl.SSL_CTX_get_options(p) != int(ctx.options):
        return None
    return p


def _require() -> _Lib:
    lib = _lib()
    if lib is None:
        raise ShimUnavailable(
            "this Python's ssl module cannot set TLS 1.3 cipher suites or verify depth "
            f"(layout check failed on {sys.version.split()[0]}, {ssl.OPENSSL_VERSION})"
        )
    return lib


def proven_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX*`` of ``ctx``, for other shims (OCSP stapling), after the layout proof.

    Raises:
        ShimUnavailable: the layout check failed (the pointer cannot be trusted).
    """
    _require()
    pointer = _ctx_ptr(ctx)
    if not pointer:  # pragma: no cover - the proof read two live pointers
        raise ShimUnavailable("no SSL_CTX behind this context")
    return pointer


def set_tls13_ciphersuites(ctx: ssl.SSLContext, suites: str) -> None:
    """``SSL_CTX_set_ciphersuites``: restrict TLS 1.3 suites (colon-separated IANA names).

    Raises:
        ShimUnavailable: the layout check failed.
        ConfigError: OpenSSL refused the list.
    """
    lib = _require()
    if lib.ssl.SSL_CTX_set_ciphersuites(_ctx_ptr(ctx), suites.encode("ascii")) != 1:
        raise ConfigError(f"OpenSSL refused the TLS 1.3 cipher suites {suites!r}")


def set_groups_list(ctx: ssl.SSLContext, groups: str) -> None:
    """``SSL_CTX_set1_groups_list``: the key-exchange groups of TLS 1.2 ECDHE and TLS 1.3 (colon-separated).

    Raises:
        ShimUnavailable: the layout check failed.
        ConfigError: OpenSSL refused the list (a group this build lacks), naming ``ssl_ecdh_curve``.
    """
    lib = _require()
    name = ctypes.create_string_buffer(groups.encode("ascii"))
    if lib.ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.cast(name, ctypes.c_void_p)) != 1:
        raise ConfigError(f"this OpenSSL refused the groups {groups!r}", path="ssl_ecdh_curve")


def set_verify_depth(ctx: ssl.SSLContext, depth: int) -> None:
    """``SSL_CTX_set_verify_depth``: at most ``depth`` intermediates between leaf and anchor."""
    lib = _require()
    lib.ssl.SSL_CTX_set_verify_depth(_ctx_ptr(ctx), depth)


def set_read_ahead(ctx: ssl.SSLContext) -> None:
    """``SSL_CTX_set_read_ahead(ctx, 1)``: read as many bytes as the socket has, not record by record.

    Without it OpenSSL reads each record's 5-byte header and then its body: two
    ``read`` calls per request on a keep-alive connection.  With it one ``read``
    takes what is there, and the records beyond the first wait in OpenSSL's
    buffer, where :class:`~trio_gw.net.tls_stream.TlsStream` finds them because it
    always calls ``SSL_read`` before waiting for the socket.
    """
    lib = _require()
    lib.ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_SET_READ_AHEAD, 1, None)


def set_no_auto_chain(ctx: ssl.SSLContext) -> None:
    """``SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN)``: send the configured chain, never one built on the spot.

    Without it, when a certificate was configured without intermediates,
    OpenSSL builds its chain from the context's trust store at every handshake
    (``ssl_add_cert_chain``: a full ``X509_verify_cert`` of the gateway's own
    certificate, one signature check per certificate it finds) and sends what
    it found.  With ``ssl_client_certificate`` set, that store holds the client
    CAs: every mTLS handshake verified the gateway's own certificate again
    (~0.9 M instructions, 7 % of an mTLS handshake) and the server's
    Certificate message carried a client CA that was never configured as part
    of its chain.  nginx, hence Kong, sets this mode on every context: what a
    listener sends is its certificate file, nothing else.
    """
    lib = _require()
    lib.ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_MODE, SSL_MODE_NO_AUTO_CHAIN, None)


def modes(ctx: ssl.SSLContext) -> int:
    """The ``SSL_MODE_*`` bits of ``ctx`` (``SSL_CTX_get_mode``)."""
    return int(_require().ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_MODE, 0, None))


def read_ahead(ctx: ssl.SSLContext) -> bool:
    """Whether ``ctx`` has read-ahead on (``SSL_CTX_get_read_ahead``)."""
    lib = _require()
    return bool(lib.ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_GET_READ_AHEAD, 0, None))


def set_session_timeout(ctx: ssl.SSLContext, seconds: int) -> None:
    """``SSL_CTX_set_timeout``: session (and ticket) lifetime."""
    _require().ssl.SSL_CTX_set_timeout(_ctx_ptr(ctx), seconds)


def set_session_cache_size(ctx: ssl.SSLContext, sessions: int) -> None:
    """``SSL_CTX_sess_set_cache_size``: how many sessions the server-side cache holds (OpenSSL: 20,480).

    Raises:
        ValueError: ``sessions`` is not positive (0 would make OpenSSL's cache unbounded).
    """
    if sessions < 1:
        raise ValueError(f"a session cache holds at least one session, not {sessions}")
    _require().ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_SET_SESS_CACHE_SIZE, sessions, None)


def session_cache_size(ctx: ssl.SSLContext) -> int:
    """``SSL_CTX_sess_get_cache_size``: the sessions the context's cache holds at most."""
    return int(_require().ssl.SSL_CTX_ctrl(_ctx_ptr(ctx), _SSL_CTRL_GET_SESS_CACHE_SIZE, 0, None))


def add_client_ca(ctx: ssl.SSLContext, der: bytes) -> None:
    """``SSL_CTX_add_client_CA``: announce this CA's name in CertificateRequests (docs/tls-stack.md §3).

    Raises:
        ShimUnavailable: the layout check failed.
        ConfigError: OpenSSL could not parse or add the certificate.
    """
    lib = _require()
    buf = ctypes.c_char_p(der)
    x509 = lib.crypto.d2i_X509(None, ctypes.byref(buf), len(der))
    if not x509:
        raise ConfigError("OpenSSL could not parse a CA certificate to announce")
    try:
        if lib.ssl.SSL_CTX_add_client_CA(_ctx_ptr(ctx), x509) != 1:
            raise ConfigError("OpenSSL refused to announce a CA certificate")
    finally:
        lib.crypto.X509_free(x509)  # SSL_CTX_add_client_CA copies the name


# --- per connection ---------------------------------------------------------------


def _ssl_ptr(sslobj: Any) -> int:
    """The ``SSL*`` of an ``ssl.SSLObject`` (0 when it has no ``_ssl._SSLSocket``)."""
    inner = getattr(sslobj, "_sslobj", None)
    if _SSL_SOCKET_TYPE is None or type(inner) is not _SSL_SOCKET_TYPE:
        return 0
    return ctypes.c_void_p.from_address(id(inner) + _SSL_PTR_OFFSET).value or 0


@lru_cache(maxsize=1)
def connection_shim_available() -> bool:
    """Whether :func:`set_verify_none` can work here (the once-per-process layout proof).

    Cheap after the first call; call it off the event loop first (it builds
    two contexts and two ``SSLObject`` s, about a millisecond).
    """
    lib = _lib()
    if lib is None or object.__basicsize__ != _PTR_OFFSET:
        return False
    optional = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    optional.verify_mode = ssl.CERT_OPTIONAL
    required = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    required.verify_mode = ssl.CERT_REQUIRED
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for ctx, other in ((optional, plain), (required, plain)):
        obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
        p = _ssl_ptr(obj)
        if not p or lib.ssl.SSL_get_SSL_CTX(p) != _ctx_ptr(ctx):
            return False
        if lib.ssl.SSL_get_verify_mode(p) & ~_SSL_VERIFY_POST_HANDSHAKE != _VERIFY_BITS[ctx.verify_mode]:
            return False
        obj.context = other  # what the SNI callback does: SSL_set_SSL_CTX
        if _ssl_ptr(obj) != p or lib.ssl.SSL_get_SSL_CTX(p) != _ctx_ptr(other):
            return False
    return True


def set_verify_none(sslobj: Any, listener_ctx: ssl.SSLContext) -> bool:
    """``SSL_set_verify(ssl, SSL_VERIFY_NONE)``: this handshake asks for no client certificate.

    Call it from the SNI callback (before the CertificateRequest is built;
    TLS 1.2 and 1.3), after any change of ``sslobj.context``.

    Args:
        sslobj: the ``ssl.SSLObject`` being handshaken.
        listener_ctx: the context the connection was created with (it set
            the connection's verify mode).

    Returns:
        True when the verify mode was changed; False — nothing changed, the
        listener's mode stands — when the shim is unavailable, the layout
        check fails, or the connection's ``SSL*`` does not prove to be the
        object's (its ``SSL_CTX`` is not the object's current context, or its
        verify mode is not the listener context's).  Never raises.
    """
    try:
        if not connection_shim_available():
            return False
        lib = _lib()
        p = _ssl_ptr(sslobj)
        if lib is None or not p or lib.ssl.SSL_get_SSL_CTX(p) != _ctx_ptr(sslobj.context):
            return False
        mode = lib.ssl.SSL_get_verify_mode(p) & ~_SSL_VERIFY_POST_HANDSHAKE
        if mode != _VERIFY_BITS.get(listener_ctx.verify_mode, -1):
            return False
        lib.ssl.SSL_set_verify(p, SSL_VERIFY_NONE, lib.ssl.SSL_get_verify_callback(p))
        return True
    except Exception:  # noqa: BLE001 — a handshake must never fail because of the shim
        return False


def proven_ssl_pointer(sslobj: Any) -> int:
    """The ``SSL*`` of an ``ssl.SSLObject``, for other shims, or 0 when it does not prove to be its own.

    The once-per-process proof (:func:`connection_shim_available`) must hold,
    and ``SSL_get_SSL_CTX`` of the pointer must be the object's current context.
    Never raises.
    """
    try:
        lib = _lib()
        if lib is None or not connection_shim_available():
            return 0
        p = _ssl_ptr(sslobj)
        if not p or lib.ssl.SSL_get_SSL_CTX(p) != _ctx_ptr(sslobj.context):
            return 0
        return p
    except Exception:  # noqa: BLE001 — callers run inside a handshake
        return 0

