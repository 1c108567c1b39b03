"""Session tickets under shared, rotated keys: a guarded ctypes shim over OpenSSL's ticket-key callback.

Theory of operation
-------------------
CPython's ``ssl`` has no API for ticket keys: every ``SSLContext`` encrypts
tickets under random keys of its own, so a ticket resumes only on the context,
hence the worker process, that issued it.  This module installs OpenSSL's
ticket-key callback on a context, over a :class:`TicketKeys` holder whose ring
(``trio_gw.tls.ticket_keys``) every worker and node shares.

**Which callback.**  OpenSSL 3.0 offers ``SSL_CTX_set_tlsext_ticket_key_evp_cb``
(HMAC through an ``EVP_MAC_CTX`` set with ``OSSL_PARAM``s) and the older
``SSL_CTX_set_tlsext_ticket_key_cb`` (``HMAC_Init_ex`` on an ``HMAC_CTX``).  The
old one is a macro over ``SSL_CTX_callback_ctrl`` and its HMAC functions are
deprecated in 3.0; the EVP one is an exported function (checked with ``nm`` on
this libssl), is what nginx uses on OpenSSL 3, and its only extra cost is an
``OSSL_PARAM`` array — a public, fixed C struct (``openssl/core.h``) built
here with ``ctypes.Structure``.  So: the EVP callback.

**The callback** (``cb(ssl, key_name[16], iv[16], cipher_ctx, mac_ctx, enc)``):

* ``enc = 1`` (a new ticket): the ring's encrypting key at this moment writes
  its name, a random IV, AES-CBC and HMAC-SHA256 keys; returns 1.
* ``enc = 0`` (a presented ticket): the key of that name, if the ring has it,
  sets AES and HMAC; returns 1 when it is the encrypting key, 2 ("renew":
  resume, and issue a ticket under the current key) otherwise; returns 0 for an
  unknown name — a full handshake, never an error.
* Never a Python exception into OpenSSL: anything raised returns 0 (no ticket,
  or a full handshake).  A negative value would abort the handshake, so it is
  never returned.

**Lifetimes.**  OpenSSL keeps a bare function pointer: the ctypes callback
object is stored on the ``SSLContext`` itself (which every ``SSLObject``
references, so it lives as long as any connection of that context can call
it), and in the module's registry until the context is collected.

**Guard.**  The ``SSL_CTX*`` comes from the layout proof of
``net/openssl_shim.py`` (notes §3).  When it fails, :func:`install_ticket_keys`
says so once in the log, changes nothing and returns ``False``: the context
keeps OpenSSL's own per-context keys (resumption per worker only).

**Scope.**  Each context passes the digest of its listener policy; the ring is
derived for it (:meth:`~trio_gw.tls.ticket_keys.TicketKey.scoped`) once per
ring swap, not per handshake.
"""

from __future__ import annotations

import ctypes
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

from trio_gw.net.openssl_shim import proven_context_pointer, proven_libraries
from trio_gw.tls.ticket_keys import NAME_SIZE, TicketKey, TicketKeyRing

__all__ = ["TicketKeys", "install_ticket_keys", "ticket_keys_supported"]

log = logging.getLogger("trio_gw.tls")

_IV_SIZE: Final = 16
_OSSL_PARAM_UTF8_STRING: Final = 4
_OSSL_PARAM_OCTET_STRING: Final = 5
_OSSL_PARAM_UNMODIFIED: Final = ctypes.c_size_t(-1).value
_ATTRIBUTE: Final = "_trio_gw_ticket_key_callback"

_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
)


class _OsslParam(ctypes.Structure):
    """``OSSL_PARAM`` (openssl/core.h): key, data type, data, data size, return size."""

    _fields_ = [
        ("key", ctypes.c_char_p),
        ("data_type", ctypes.c_uint),
        ("data", ctypes.c_void_p),
        ("data_size", ctypes.c_size_t),
        ("return_size", ctypes.c_size_t),
    ]


class _Api:
    """The OpenSSL functions the callback needs, with prototypes of their own."""

    def __init__(self, libssl: ctypes.CDLL, libcrypto: ctypes.CDLL) -> None:
        c_void_p, c_int = ctypes.c_void_p, ctypes.c_int
        self.set_cb = ctypes.CFUNCTYPE(c_int, c_void_p, _Callback)(("SSL_CTX_set_tlsext_ticket_key_evp_cb", libssl))
        init = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)
        self.encrypt_init = init(("EVP_EncryptInit_ex", libcrypto))
        self.decrypt_init = init(("EVP_DecryptInit_ex", libcrypto))
        self.mac_set_params = ctypes.CFUNCTYPE(c_int, c_void_p, ctypes.POINTER(_OsslParam))(
            ("EVP_MAC_CTX_set_params", libcrypto)
        )
        self.ciphers = {
            "AES-256-CBC": ctypes.CFUNCTYPE(c_void_p)(("EVP_aes_256_cbc", libcrypto))(),
            "AES-128-CBC": ctypes.CFUNCTYPE(c_void_p)(("EVP_aes_128_cbc", libcrypto))(),
        }
        if not all(self.ciphers.values()):
            raise OSError("OpenSSL has no AES-CBC")

    def set_hmac_key(self, mac_ctx: int, key: bytes) -> bool:
        buf = ctypes.create_string_buffer(key, len(key))
        digest = ctypes.create_string_buffer(b"SHA256")
        params = (_OsslParam * 3)(
            _OsslParam(b"key", _OSSL_PARAM_OCTET_STRING, ctypes.cast(buf, ctypes.c_void_p), len(key),
                       _OSSL_PARAM_UNMODIFIED),
            _OsslParam(b"digest", _OSSL_PARAM_UTF8_STRING, ctypes.cast(digest, ctypes.c_void_p), 6,
                       _OSSL_PARAM_UNMODIFIED),
            _OsslParam(None, 0, None, 0, 0),
        )  # fmt: skip
        return bool(self.mac_set_params(mac_ctx, params) == 1)

    def cipher_init(self, cipher_ctx: int, key: TicketKey, iv: bytes, *, encrypt: bool) -> bool:
        init = self.encrypt_init if encrypt else self.decrypt_init
        return bool(init(cipher_ctx, self.ciphers[key.cipher], None, key.aes_key, iv) == 1)


_api_lock = threading.Lock()
_api_state: list[_Api | None] = []  # [] until first use, then [api or None]
_warned = False


def _get_api() -> _Api | None:
    with _api_lock:
        if not _api_state:
            libs = proven_libraries()
            api: _Api | None = None
            if libs is not None:
                try:
                    api = _Api(*libs)
                except (OSError, AttributeError):  # an OpenSSL without the functions: no shared tickets
                    api = None
            _api_state.append(api)
        return _api_state[0]


def ticket_keys_supported() -> bool:
    """Whether this interpreter and OpenSSL can take shared ticket keys (the layout proof passed)."""
    return _get_api() is not None


class TicketKeys:
    """The ring every context of a worker reads, swapped atomically by :meth:`swap`.

    One object per worker process; its contexts (every listener, every ALPN
    offer) hold it.  The callback reads :attr:`ring` once per call, so a swap
    is seen whole by the next handshake.
    """

    def __init__(self, ring: TicketKeyRing, *, clock: Callable[[], float] = time.time) -> None:
        self._ring = ring
        self.clock = clock

    @property
    def ring(self) -> TicketKeyRing:
        return self._ring

    def swap(self, ring: TicketKeyRing) -> None:
        """Make ``ring`` the one new tickets are encrypted and presented tickets decrypted with."""
        self._ring = ring


class _ScopedCallback:
    """The Python side of one context's callback: the holder, the scope, the derived ring cache."""

    def __init__(self, api: _Api, keys: TicketKeys, scope: bytes) -> None:
        self._api = api
        self._keys = keys
        self._scope = scope
        self._cache: tuple[TicketKeyRing, TicketKeyRing] | None = None
        self.pointer = _Callback(self)

    def _ring(self) -> TicketKeyRing:
        source = self._keys.ring
        cached = self._cache
        if cached is None or cached[0] is not source:
            cached = (source, source.scoped(self._scope))
            self._cache = cached
        return cached[1]

    def __call__(self, _ssl: int, name: int, iv: int, cipher_ctx: int, mac_ctx: int, enc: int) -> int:
        try:
            ring = self._ring()
            current = ring.encrypting(self._keys.clock())
            if enc == 1:
                fresh_iv = os.urandom(_IV_SIZE)
                ctypes.memmove(name, current.name, NAME_SIZE)
                ctypes.memmove(iv, fresh_iv, _IV_SIZE)
                ok = self._api.set_hmac_key(mac_ctx, current.hmac_key) and self._api.cipher_init(
                    cipher_ctx, current, fresh_iv, encrypt=True
                )
                return 1 if ok else 0
            key = ring.find(ctypes.string_at(name, NAME_SIZE))
            if key is None:
                return 0  # unknown (or dropped) key: a full handshake
            ok = self._api.set_hmac_key(mac_ctx, key.hmac_key) and self._api.cipher_init(
                cipher_ctx, key, ctypes.string_at(iv, _IV_SIZE), encrypt=False
            )
            if not ok:
                return 0
            return 1 if key.name == current.name else 2  # 2: resume, and renew the ticket under the current key
        except BaseException:  # noqa: BLE001 — nothing may cross into OpenSSL; 0 = no ticket / full handshake
            return 0


#: Callbacks installed, by context (also held by the context itself): for tests and diagnostics.
_installed: weakref.WeakKeyDictionary[ssl.SSLContext, _ScopedCallback] = weakref.WeakKeyDictionary()


def install_ticket_keys(ctx: ssl.SSLContext, keys: TicketKeys, *, scope: bytes = b"") -> bool:
    """Make ``ctx`` encrypt and decrypt session tickets with ``keys``' ring.

    Call it while building the context, before it serves a handshake.
    Installing again replaces the previous holder and scope.

    Args:
        ctx: a server context (``PROTOCOL_TLS_SERVER``) with tickets on.
        keys: the worker's holder of the shared ring.
        scope: a stable digest of the listener policy of ``ctx`` (``b""``: the
            ring's keys as they are, e.g. nginx-compatible files).

    Returns:
        True when installed; False — nothing changed, the context keeps
        OpenSSL's own keys, and the reason is logged once per process — when
        the layout proof failed or OpenSSL refused.
    """
    api = _get_api()
    pointer = proven_context_pointer(ctx) if api is not None else None
    if api is None or pointer is None:
        _warn_once(
            "shared TLS session-ticket keys are unavailable on this interpreter "
            f"({ssl.OPENSSL_VERSION}; the OpenSSL layout check failed): each worker resumes only its own sessions"
        )
        return False
    callback = _ScopedCallback(api, keys, scope)
    if api.set_cb(pointer, callback.pointer) != 1:
        _warn_once("OpenSSL refused the session-ticket key callback: each worker resumes only its own sessions")
        return False
    setattr(ctx, _ATTRIBUTE, callback)  # lives as long as the context, which every connection references
    _installed[ctx] = callback
    return True


def installed_keys(ctx: ssl.SSLContext) -> TicketKeys | None:
    """The holder installed on ``ctx``, or ``None`` (diagnostics, tests)."""
    callback = _installed.get(ctx)
    return None if callback is None else callback._keys


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("%s", message)
