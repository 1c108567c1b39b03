"""Tell, inside the SNI callback, whether a handshake offers ALPN ``acme-tls/1`` (RFC 8737).

Theory of operation
-------------------
A tls-alpn-01 validation is a handshake for the name with ALPN
``acme-tls/1``; it must get the challenge certificate, and every other
handshake for the name the real one (a renewal must not disturb clients).
Python's SNI callback runs before ALPN selection and cannot see the offer,
and by then OpenSSL has consumed the raw extension.  So a *ClientHello
callback* (``SSL_CTX_set_client_hello_cb``, read from the listener context,
before any extension is parsed) reads the ALPN extension with
``SSL_client_hello_get0_ext``, parses it with the pure
:func:`~trio_gw.tls.acme.parse_alpn_extension`, and when ``acme-tls/1`` is
offered marks the connection in its own ``SSL`` ex_data slot (freed with the
connection: nothing to clean up, nothing to go stale).  The SNI callback then
asks :func:`offers_acme_tls` and swaps in the challenge context.

Guards: the library is used only after :mod:`trio_gw.net.openssl_shim`'s
layout proofs; the ClientHello callback is a module-level ctypes object,
catches everything and always lets the handshake continue; a connection whose
``SSL*`` does not prove to be its own reads as "not offered".  If the shim is
unavailable, :func:`install_alpn_probe` returns False (tls-alpn-01 cannot be
answered; http-01 still can).
"""

from __future__ import annotations

import ctypes
import ssl
from functools import lru_cache
from typing import Any, Final

from trio_gw.net.openssl_shim import ShimUnavailable, proven_ctx_pointer, proven_ssl_pointer
from trio_gw.tls.acme import offers_acme_tls as _offers, parse_alpn_extension

__all__ = ["install_alpn_probe", "offers_acme_tls"]

_TLSEXT_ALPN: Final = 16
_CLIENT_HELLO_SUCCESS: Final = 1
_CRYPTO_EX_INDEX_SSL: Final = 0
_MARK: Final = 1

_HELLO_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p)


class _Lib:
    def __init__(self) -> None:
        self.ssl = ctypes.CDLL("libssl.so.3")
        self.crypto = ctypes.CDLL("libcrypto.so.3")
        self.ssl.SSL_CTX_set_client_hello_cb.restype = None
        self.ssl.SSL_CTX_set_client_hello_cb.argtypes = [ctypes.c_void_p, _HELLO_CB, ctypes.c_void_p]
        self.ssl.SSL_client_hello_get0_ext.restype = ctypes.c_int
        self.ssl.SSL_client_hello_get0_ext.argtypes = [
            ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        self.ssl.SSL_set_ex_data.restype = ctypes.c_int
        self.ssl.SSL_set_ex_data.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.ssl.SSL_get_ex_data.restype = ctypes.c_void_p
        self.ssl.SSL_get_ex_data.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.crypto.CRYPTO_get_ex_new_index.restype = ctypes.c_int
        self.crypto.CRYPTO_get_ex_new_index.argtypes = [
            ctypes.c_int, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.index = self.crypto.CRYPTO_get_ex_new_index(_CRYPTO_EX_INDEX_SSL, 0, None, None, None, None)


@lru_cache(maxsize=1)
def _lib() -> _Lib | None:
    try:
        lib = _Lib()
        proven_ctx_pointer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    except (OSError, AttributeError, ShimUnavailable):
        return None
    return lib if lib.index > 0 else None


def _client_hello(ssl_ptr: int | None, alert: Any, arg: int | None) -> int:
    """OpenSSL's ClientHello callback: mark an ``acme-tls/1`` offer; never fails the handshake."""
    try:
        lib = _lib()
        if lib is None or not ssl_ptr:
            return _CLIENT_HELLO_SUCCESS
        out, size = ctypes.c_void_p(), ctypes.c_size_t()
        if lib.ssl.SSL_client_hello_get0_ext(ssl_ptr, _TLSEXT_ALPN, ctypes.byref(out), ctypes.byref(size)) != 1:
            return _CLIENT_HELLO_SUCCESS
        if out.value and _offers(parse_alpn_extension(ctypes.string_at(out.value, min(size.value, 65535)))):
            lib.ssl.SSL_set_ex_data(ssl_ptr, lib.index, _MARK)
    except BaseException:  # noqa: BLE001 — nothing may unwind through OpenSSL's stack
        pass
    return _CLIENT_HELLO_SUCCESS


_C_HELLO: Final = _HELLO_CB(_client_hello)


def install_alpn_probe(listener_ctx: ssl.SSLContext) -> bool:
    """Install the ClientHello callback on a listener context (the one connections are created with).

    Returns:
        False when the shim cannot be used here (tls-alpn-01 then cannot be answered).
    """
    lib = _lib()
    if lib is None:
        return False
    lib.ssl.SSL_CTX_set_client_hello_cb(proven_ctx_pointer(listener_ctx), _C_HELLO, None)
    return True


def offers_acme_tls(sslobj: Any) -> bool:
    """Whether this handshake offered ALPN ``acme-tls/1`` (call it from the SNI callback). Never raises."""
    lib = _lib()
    if lib is None:
        return False
    pointer = proven_ssl_pointer(sslobj)
    return bool(pointer) and lib.ssl.SSL_get_ex_data(pointer, lib.index) == _MARK
