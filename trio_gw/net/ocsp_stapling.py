"""OCSP stapling on stdlib ``ssl`` contexts through a guarded ctypes shim.

Theory of operation
-------------------
CPython 3.11's ``ssl`` cannot staple.  OpenSSL can: a server context's
*status callback* (``SSL_CTX_set_tlsext_status_cb``, a macro over
``SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB, cb)``, with
its argument set by ``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB_ARG,
0, arg)``) runs during every handshake whose client sent ``status_request``,
and hands the response over with ``SSL_set_tlsext_status_ocsp_resp`` (an
``SSL_ctrl``) in memory from ``OPENSSL_malloc`` -- OpenSSL frees it with the
connection.

OpenSSL reads the callback from the connection's *current* ``SSL_CTX``: after
the SNI callback swaps ``sslobj.context`` (``SSL_set_SSL_CTX``) it is the
certificate context's callback that runs, so :func:`install` must be called on
every certificate context (the listener's default one included), each with the
:data:`StapleSource` of its own certificate.

Safety, in order:

* the ``SSL_CTX*`` of an ``ssl.SSLContext`` is taken only after
  :mod:`trio_gw.net.openssl_shim`'s layout proof (``SSL_CTX_get_options``
  must match ``ctx.options``); then the installation is read back
  (``SSL_CTRL_GET_TLSEXT_STATUS_REQ_CB``/``_CB_ARG``) on a scratch context.
  If either proof fails stapling is off: :func:`install` returns False and
  logs one warning per process, handshakes go on without staples;
* the callback's argument is a token, not a pointer: it is looked up in a
  registry that forgets a context when it is collected, and the connection's
  ``SSL_get_SSL_CTX`` must be the registered context, else nothing is stapled;
* the ctypes callback object is module-level (never collected), and every
  Python exception is caught inside it: OpenSSL only ever sees OK (staple
  set), NOACK (no staple) or ALERT_FATAL (the pure decision said ``refuse``).

The callback decides nothing: the source (a closure over the current OCSP
answer) returns :class:`~trio_gw.tls.stapling.StapleDecision`, from
:func:`~trio_gw.tls.stapling.decide_staple`.  It runs inside the handshake on
the event loop, so it must only read memory (no IO, no parsing).

A context serving two certificates (Kong's ``cert`` and ``cert_alt``: RSA and
ECDSA, OpenSSL picks by the client's signature algorithms) gets one source per
certificate, keyed by the leaf's SHA-256 fingerprint: the callback asks
OpenSSL which certificate this handshake serves (``SSL_get_certificate``,
``i2d_X509``) and staples only that certificate's answer -- a response about
the other one would fail the client's CertID check.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from trio_gw.net.openssl_shim import ShimUnavailable, proven_ctx_pointer
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.tls.ocsp import OcspAnswer
from trio_gw.tls.stapling import StapleAction, StapleDecision, StaplingPolicy, decide_staple
from trio_gw.tls.stapling_plan import StaplingPlan, StapleTarget

__all__ = ["StapleSource", "StapleSources", "cache_source", "install", "install_plan", "installed_source",
           "stapling_available"]

log = logging.getLogger("trio_gw.ocsp_stapling")

#: Returns the decision for one handshake; must only read memory.
StapleSource = Callable[[], StapleDecision]
#: Sources by the SHA-256 fingerprint (lowercase hex) of the leaf they are about.
StapleSources = Mapping[str, StapleSource]

# OpenSSL 3.0 <openssl/ssl.h> and <openssl/tls1.h> (stable ABI values).
_SET_STATUS_CB: Final = 63
_SET_STATUS_CB_ARG: Final = 64
_SET_STATUS_OCSP_RESP: Final = 71
_GET_STATUS_CB: Final = 128
_GET_STATUS_CB_ARG: Final = 129
_ERR_OK: Final = 0
_ERR_ALERT_FATAL: Final = 2
_ERR_NOACK: Final = 3

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_VOID_FN = ctypes.CFUNCTYPE(None)


@dataclass(frozen=True)
class _Entry:
    ctx_ptr: int
    source: StapleSource | None
    by_fingerprint: StapleSources


_REGISTRY: dict[int, _Entry] = {}
_TOKENS = itertools.count(1)


class _Lib:
    def __init__(self) -> None:
        self.ssl = ctypes.CDLL("libssl.so.3")
        self.ssl.SSL_CTX_callback_ctrl.restype = ctypes.c_long
        self.ssl.SSL_CTX_callback_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, _VOID_FN]
        self.ssl.SSL_CTX_ctrl.restype = ctypes.c_long
        self.ssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.ssl.SSL_ctrl.restype = ctypes.c_long
        self.ssl.SSL_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.ssl.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        self.ssl.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        self.ssl.SSL_get_certificate.restype = ctypes.c_void_p
        self.ssl.SSL_get_certificate.argtypes = [ctypes.c_void_p]
        self.crypto = ctypes.CDLL("libcrypto.so.3")
        self.crypto.i2d_X509.restype = ctypes.c_int
        self.crypto.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        self.crypto.CRYPTO_malloc.restype = ctypes.c_void_p
        self.crypto.CRYPTO_malloc.argtypes = [ctypes.c_size_t, ctypes.c_char_p, ctypes.c_int]
        self.crypto.CRYPTO_free.restype = None
        self.crypto.CRYPTO_free.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]


def _status_callback(ssl_ptr: int | None, arg: int | None) -> int:
    """OpenSSL's status callback: never raises, never blocks (see the module docstring)."""
    try:
        lib = _lib()
        entry = _REGISTRY.get(arg or 0)
        if lib is None or entry is None or not ssl_ptr or lib.ssl.SSL_get_SSL_CTX(ssl_ptr) != entry.ctx_ptr:
            return _ERR_NOACK
        source = entry.source if entry.source is not None else entry.by_fingerprint.get(_served(lib, ssl_ptr))
        if source is None:
            return _ERR_NOACK
        decision = source()
        if decision.action is StapleAction.REFUSE:
            return _ERR_ALERT_FATAL
        if decision.action is not StapleAction.STAPLE or not decision.response_der:
            return _ERR_NOACK
        return _ERR_OK if _hand_over(lib, ssl_ptr, decision.response_der) else _ERR_NOACK
    except BaseException:  # noqa: BLE001 — nothing may unwind through OpenSSL's stack
        return _ERR_NOACK


def _served(lib: _Lib, ssl_ptr: int) -> str:
    """SHA-256 (hex) of the certificate this handshake serves; ``""`` when OpenSSL has none."""
    x509 = lib.ssl.SSL_get_certificate(ssl_ptr)
    size = lib.crypto.i2d_X509(x509, None) if x509 else 0
    if size <= 0:
        return ""
    buf = ctypes.create_string_buffer(size)
    cursor = ctypes.c_void_p(ctypes.addressof(buf))
    if lib.crypto.i2d_X509(x509, ctypes.byref(cursor)) != size:
        return ""
    return hashlib.sha256(buf.raw).hexdigest()


def _hand_over(lib: _Lib, ssl_ptr: int, der: bytes) -> bool:
    """Copy ``der`` into OPENSSL_malloc'd memory that the connection then owns."""
    buf = lib.crypto.CRYPTO_malloc(len(der), b"ocsp_stapling", 0)
    if not buf:
        return False
    ctypes.memmove(buf, der, len(der))
    if lib.ssl.SSL_ctrl(ssl_ptr, _SET_STATUS_OCSP_RESP, len(der), buf) != 1:
        lib.crypto.CRYPTO_free(buf, b"ocsp_stapling", 0)
        return False
    return True


#: The one C callback; module-level so it is never collected while OpenSSL holds it.
_C_CALLBACK: Final = _CALLBACK_TYPE(_status_callback)


@lru_cache(maxsize=1)
def _lib() -> _Lib | None:
    """The library, once the context layout and the callback installation are proven."""
    try:
        lib = _Lib()
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        return lib if _set(lib, proven_ctx_pointer(probe), 0) else None
    except (OSError, AttributeError, ShimUnavailable):
        return None


def _set(lib: _Lib, ctx_ptr: int, token: int) -> bool:
    """Install the callback with ``token`` and prove it by reading both back."""
    lib.ssl.SSL_CTX_callback_ctrl(ctx_ptr, _SET_STATUS_CB, ctypes.cast(_C_CALLBACK, _VOID_FN))
    lib.ssl.SSL_CTX_ctrl(ctx_ptr, _SET_STATUS_CB_ARG, 0, token or None)
    fn, arg = ctypes.c_void_p(), ctypes.c_void_p()
    lib.ssl.SSL_CTX_ctrl(ctx_ptr, _GET_STATUS_CB, 0, ctypes.addressof(fn))
    lib.ssl.SSL_CTX_ctrl(ctx_ptr, _GET_STATUS_CB_ARG, 0, ctypes.addressof(arg))
    expected = ctypes.cast(_C_CALLBACK, ctypes.c_void_p).value
    return fn.value == expected and (arg.value or 0) == token


def stapling_available() -> bool:
    """Whether this interpreter's ``ssl`` can staple (the layout and installation proofs hold)."""
    return _lib() is not None


@lru_cache(maxsize=1)
def _warn_unavailable() -> None:
    log.warning("OCSP stapling is off: this Python's ssl module cannot be extended safely "
                "(the OpenSSL layout check failed); handshakes continue without staples")


def install(ctx: ssl.SSLContext, source: StapleSource | StapleSources) -> bool:
    """Staple what ``source`` decides on every handshake that uses ``ctx``.

    Call it once per certificate context when building them (off the event
    loop), on every context the SNI callback may pick and on the listener's
    default one.  Installing again replaces the source.

    Args:
        ctx: a server context.
        source: returns the decision for one handshake (reads memory only);
            for a context with two certificates, a mapping from each leaf's
            SHA-256 fingerprint (lowercase hex) to its source.

    Returns:
        True when installed; False -- stapling off, one warning logged per
        process -- when the shim cannot be used here.
    """
    lib = _lib()
    if lib is None:
        _warn_unavailable()
        return False
    ctx_ptr = proven_ctx_pointer(ctx)
    token = next(_TOKENS)
    if callable(source):
        _REGISTRY[token] = _Entry(ctx_ptr, source, {})
    else:
        _REGISTRY[token] = _Entry(ctx_ptr, None, {k.lower(): v for k, v in source.items()})
    if not _set(lib, ctx_ptr, token):  # pragma: no cover - proven on the probe context
        _REGISTRY.pop(token, None)
        _warn_unavailable()
        return False
    weakref.finalize(ctx, _REGISTRY.pop, token, None)
    return True


def installed_source(ctx: ssl.SSLContext) -> StapleSource | StapleSources | None:
    """The source installed on ``ctx`` (tests, diagnostics), ``None`` when none or unavailable."""
    lib = _lib()
    if lib is None:
        return None
    arg = ctypes.c_void_p()
    lib.ssl.SSL_CTX_ctrl(proven_ctx_pointer(ctx), _GET_STATUS_CB_ARG, 0, ctypes.addressof(arg))
    entry = _REGISTRY.get(arg.value or 0)
    if entry is None:
        return None
    return entry.source if entry.source is not None else entry.by_fingerprint


def cache_source(
    cache: OcspCache, key: str, policy: StaplingPolicy, *, must_staple: bool,
    clock: Callable[[], float] = time.time,
) -> StapleSource:
    """The source of one certificate context: :func:`decide_staple` over the cache's current answer.

    Args:
        cache: the node's stapling cache (filled by :func:`trio_gw.net.ocsp_fetch.serve_ocsp_refresh`).
        key: what :meth:`OcspCache.track` (or ``load_static``) returned for the certificate.
        policy: ``ocsp_staple_policy``.
        must_staple: :func:`trio_gw.tls.ocsp.is_must_staple` of the certificate.
        clock: Unix time.
    """

    def source() -> StapleDecision:
        return decide_staple(policy, cache.current(key), must_staple=must_staple, now=clock())

    return source


def static_source(
    answer: OcspAnswer, policy: StaplingPolicy, *, must_staple: bool, clock: Callable[[], float] = time.time,
) -> StapleSource:
    """The source of a certificate whose answer was read from ``ssl_stapling_file`` (never refetched)."""

    def source() -> StapleDecision:
        return decide_staple(policy, answer, must_staple=must_staple, now=clock())

    return source


def install_plan(ctx: ssl.SSLContext, plan: StaplingPlan, certificate_id: str, cache: OcspCache) -> bool:
    """Install the status callback of one certificate context from the generation's stapling plan.

    Called while building the context (off the loop for the generation's own
    contexts, on it for those built on first use); it only closes over
    ``cache``, which the loop's refresher alone writes.

    Args:
        ctx: the certificate context.
        plan: the generation's :class:`~trio_gw.tls.stapling_plan.StaplingPlan`.
        certificate_id: the certificate the context serves (its ``cert`` and ``cert_alt``).
        cache: the node's stapling cache.

    Returns:
        Whether a callback was installed (``False``: nothing to staple, or the shim is unavailable).
    """
    targets = plan.targets.get(certificate_id, ())
    if not targets:
        return False
    sources = {t.fingerprint: _target_source(plan, t, cache) for t in targets}
    return install(ctx, next(iter(sources.values())) if len(sources) == 1 else sources)


def _target_source(plan: StaplingPlan, target: StapleTarget, cache: OcspCache) -> StapleSource:
    static = plan.static.get(target.key)
    if static is not None:
        return static_source(static, plan.policy, must_staple=target.must_staple)
    return cache_source(cache, target.key, plan.policy, must_staple=target.must_staple)
