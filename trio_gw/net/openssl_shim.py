"""A guarded ctypes shim for the few OpenSSL calls CPython 3.11's ``ssl`` lacks.

Theory of operation
-------------------
``SSL_CTX_set_ciphersuites`` (TLS 1.3 suites), ``SSL_CTX_set_verify_depth`` and
``SSL_CTX_add_client_CA`` have no Python API before 3.13 (tls-stack-notes §3,
§4).  The ``SSL_CTX*`` of an ``ssl.SSLContext`` sits right after
``PyObject_HEAD`` (``id(ctx) + 16`` on 64-bit CPython).  That layout is private,
so before first use we prove the pointer is right: ``SSL_CTX_get_options(p)``
must equal ``ctx.options`` for two contexts with different options.  A wrong
pointer would crash instead of raising, so nothing is called until the check
passes; if it fails, every function raises :class:`ShimUnavailable` and callers
report a clear configuration error (or fall back, where one exists).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl
import sys
from functools import lru_cache

from trio_gw.errors import ConfigError

_PTR_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p)  # ob_refcnt + ob_type


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
        self.ssl.SSL_CTX_get_verify_depth.restype = ctypes.c_int
        self.ssl.SSL_CTX_get_verify_depth.argtypes = [ctypes.c_void_p]
        self.crypto = ctypes.CDLL("libcrypto.so.3")
        self.crypto.d2i_X509.restype = ctypes.c_void_p
        self.crypto.d2i_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        self.crypto.X509_free.restype = None
        self.crypto.X509_free.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_CTX_add_client_CA.restype = ctypes.c_int
        self.ssl.SSL_CTX_add_client_CA.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.ssl.SSL_CTX_set_timeout.restype = ctypes.c_long
        self.ssl.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        self.ssl.SSL_CTX_get_timeout.restype = ctypes.c_long
        self.ssl.SSL_CTX_get_timeout.argtypes = [ctypes.c_void_p]


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


def shim_available() -> bool:
    return _lib() is not None


def _require() -> _Lib:
    lib = _lib()
    if lib is None:
        raise ShimUnavailable(
            "this Python's ssl module cannot set TLS 1.3 cipher suites or verify depth "
            f"(layout check failed on {sys.version.split()[0]}, {ssl.OPENSSL_VERSION})"
        )
    return lib


def set_tls13_ciphersuites(ctx: ssl.SSLContext, suites: str) -> None:
    """``SSL_CTX_set_ciphersuites``: restrict TLS 1.3 suites (colon-separated IANA names).

    Raises:
        ShimUnavailable: the layout check failed.
        ConfigError: OpenSSL refused the list.
    """
    lib = _require()
    if lib.ssl.SSL_CTX_set_ciphersuites(_ctx_ptr(ctx), suites.encode("ascii")) != 1:
        raise ConfigError(f"OpenSSL refused the TLS 1.3 cipher suites {suites!r}")


def set_verify_depth(ctx: ssl.SSLContext, depth: int) -> None:
    """``SSL_CTX_set_verify_depth``: at most ``depth`` intermediates between leaf and anchor."""
    lib = _require()
    lib.ssl.SSL_CTX_set_verify_depth(_ctx_ptr(ctx), depth)


def get_verify_depth(ctx: ssl.SSLContext) -> int:
    return int(_require().ssl.SSL_CTX_get_verify_depth(_ctx_ptr(ctx)))


def set_session_timeout(ctx: ssl.SSLContext, seconds: int) -> None:
    """``SSL_CTX_set_timeout``: session (and ticket) lifetime."""
    _require().ssl.SSL_CTX_set_timeout(_ctx_ptr(ctx), seconds)


def get_session_timeout(ctx: ssl.SSLContext) -> int:
    return int(_require().ssl.SSL_CTX_get_timeout(_ctx_ptr(ctx)))


def add_client_ca(ctx: ssl.SSLContext, der: bytes) -> None:
    """``SSL_CTX_add_client_CA``: announce this CA's name in CertificateRequests (notes §3).

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
