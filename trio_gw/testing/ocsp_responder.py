"""A real OCSP responder for tests: cryptography's ``OCSPResponseBuilder`` behind a small HTTP server.

``openssl ocsp -port`` listens on every interface; this one binds
``127.0.0.1`` port 0 only.  It answers RFC 6960 appendix A requests -- POST
(``application/ocsp-request`` body) and GET (``/{url-encoded base64 request}``)
-- from a table the test controls::

    with OcspResponder(ca) as responder:            # signs with the CA itself
        responder.set(leaf, "revoked", reason=x509.ReasonFlags.key_compromise)
        url = responder.url                          # http://127.0.0.1:PORT/ocsp
        responder.delay = 2.0                        # answer late
        responder.post_only = True                   # GET gets 405
        responder.down = True                        # drop every connection unanswered
        responder.status = ocsp.OCSPResponseStatus.TRY_LATER

A serial number missing from the table is answered ``unknown``; a request
about another issuer gets ``unauthorized``.  ``signer`` makes a delegated
responder (a certificate issued by the CA with ``id-kp-OCSPSigning``).
:func:`ocsp_response_der` builds single responses for unit tests without a server.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from trio_gw.testing.pki import Issued

__all__ = ["OcspEntry", "OcspResponder", "ocsp_response_der"]

_STATUS: Final = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}
_MAX_REQUEST: Final = 16 * 1024
_PATH: Final = "/ocsp"


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def ocsp_response_der(
    issuer: Issued,
    serial: int,
    status: str = "good",
    *,
    now: float | None = None,
    signer: Issued | None = None,
    this_update: float | None = None,
    next_update: float | None = 0.0,
    revoked_at: float | None = None,
    reason: x509.ReasonFlags | None = None,
    name_hash: bytes | None = None,
    key_hash: bytes | None = None,
    by_name: bool = False,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """One signed OCSP response about ``serial`` under ``issuer``.

    Args:
        issuer: the CA the certificate was issued by.
        serial: the certificate's serial number.
        status: ``good``, ``revoked`` or ``unknown``.
        now: reference time (default: the clock); ``thisUpdate`` defaults to an
            hour before it, ``nextUpdate`` to a day after it.
        signer: who signs (default ``issuer``); anything else is shipped in the
            response as a delegated responder certificate.
        this_update, next_update: explicit times; ``next_update=None`` omits it.
        revoked_at, reason: revocation details (``revoked`` only).
        name_hash, key_hash: CertID hashes (default: computed from ``issuer``).
        by_name: identify the responder by name instead of key hash.
        hash_algorithm: the CertID hash (SHA-1 by default).

    Returns:
        The DER response.
    """
    now = time.time() if now is None else now
    signer = signer or issuer
    algorithm = hash_algorithm or hashes.SHA1()
    probe = ocsp.OCSPRequestBuilder().add_certificate(issuer.cert, issuer.cert, algorithm).build()
    revoked = status == "revoked"
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=name_hash if name_hash is not None else _name_hash(issuer, algorithm),
        issuer_key_hash=key_hash if key_hash is not None else probe.issuer_key_hash,
        serial_number=serial,
        algorithm=algorithm,
        cert_status=_STATUS[status],
        this_update=_moment(this_update if this_update is not None else now - 3600),
        next_update=None if next_update is None else _moment(next_update or now + 86400),
        revocation_time=_moment(revoked_at if revoked_at is not None else now - 7200) if revoked else None,
        revocation_reason=reason if revoked else None,
    )
    encoding = ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH
    builder = builder.responder_id(encoding, signer.cert)
    if signer is not issuer:
        builder = builder.certificates([signer.cert])
    algorithm_for_key = None if type(signer.key).__name__.startswith("Ed") else hashes.SHA256()
    return builder.sign(signer.key, algorithm_for_key).public_bytes(serialization.Encoding.DER)


def _name_hash(issuer: Issued, algorithm: hashes.HashAlgorithm) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(issuer.cert.subject.public_bytes())
    return digest.finalize()


@dataclass
class OcspEntry:
    """What the responder says about one serial number."""

    status: str = "good"
    reason: x509.ReasonFlags | None = None
    revoked_at: float | None = None


class OcspResponder:
    """The HTTP responder (see the module docstring); a context manager that stops itself."""

    def __init__(
        self,
        issuer: Issued,
        *,
        signer: Issued | None = None,
        validity: float = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.signer = signer
        self.validity = validity
        self.clock = clock
        self.entries: dict[int, OcspEntry] = {}
        self.delay = 0.0
        self.down = False
        self.status: ocsp.OCSPResponseStatus | None = None
        #: Refuse GET with 405, as a POST-only responder does.
        self.post_only = False
        self.requests = 0
        self.methods: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ocsp-responder", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The responder URL to put in AIA or ``ssl_stapling_responder``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{_PATH}"

    def set(self, cert: Issued | x509.Certificate, status: str, *, reason: x509.ReasonFlags | None = None) -> None:
        """Make the responder answer ``status`` (good, revoked, unknown) about ``cert``."""
        serial = (cert.cert if isinstance(cert, Issued) else cert).serial_number
        self.entries[serial] = OcspEntry(status, reason, self.clock() - 7200 if status == "revoked" else None)

    def answer(self, request_der: bytes) -> bytes:
        """The DER response to one DER request (what the HTTP handler sends)."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        if self.status is not None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(self.status).public_bytes(serialization.Encoding.DER)
        expected = _name_hash(self.issuer, request.hash_algorithm)
        probe = ocsp.OCSPRequestBuilder().add_certificate(
            self.issuer.cert, self.issuer.cert, request.hash_algorithm).build()
        if (request.issuer_name_hash, request.issuer_key_hash) != (expected, probe.issuer_key_hash):
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
        entry = self.entries.get(request.serial_number, OcspEntry("unknown"))
        now = self.clock()
        return ocsp_response_der(
            self.issuer, request.serial_number, entry.status, now=now, signer=self.signer,
            this_update=now - 60, next_update=now + self.validity, revoked_at=entry.revoked_at,
            reason=entry.reason, hash_algorithm=request.hash_algorithm,
        )

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OcspResponder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _handler_for(responder: OcspResponder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if responder.post_only:
                self.send_error(405)
                return
            path = self.path.split("?", 1)[0]
            if not path.startswith(_PATH + "/"):
                self.send_error(404)
                return
            try:
                request = base64.b64decode(unquote(path[len(_PATH) + 1:]), validate=True)
            except ValueError:
                self.send_error(400, "not base64")
                return
            self._reply("GET", request)

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            if self.path.split("?", 1)[0].rstrip("/") != _PATH or not 0 < length <= _MAX_REQUEST:
                self.send_error(400)
                return
            self._reply("POST", self.rfile.read(length))

        def _reply(self, method: str, request: bytes) -> None:
            responder.requests += 1
            responder.methods.append(method)
            if responder.down:
                self.close_connection = True
                return
            if responder.delay:
                time.sleep(responder.delay)
            body = responder.answer(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
