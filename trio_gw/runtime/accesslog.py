"""The access log: one line per request, text or JSON.

Besides the request, its TLS facts and its upstream, a line names who made the
request when it is known (:class:`RequestIdentity`): the client certificate's
SHA-256 fingerprint and subject (computed once per connection, after the
handshake, with :func:`trio_gw.pki.info.peer_identity`, and kept in the
connection's facts) and the consumer the plugins authenticated (carried by the
decision into the request's :class:`~trio_gw.net.exchange.Exchange`).  Those
come from the client: the text format escapes them (``\\xHH``) so they cannot
break or forge a line; JSON escapes by itself.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import trio

from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.exchange import Exchange


@dataclass(frozen=True)
class RequestIdentity:
    """Who made a request: the client certificate (per connection) and the consumer (per request)."""

    #: Lowercase hex SHA-256 of the client certificate's DER, as ``openssl x509 -fingerprint -sha256``.
    client_cert_fingerprint: str | None = None
    #: Its subject, RFC 4514.
    client_cert_subject: str | None = None
    #: The consumer's username, else its custom id, else its id.
    consumer: str | None = None


    @classmethod
    def of(cls, info: ConnectionFacts, ex: Exchange) -> RequestIdentity:
        """The identity a request's facts carry: the connection's client certificate, the exchange's consumer."""
        consumer = ex.consumer
        return cls(info.client_cert_fingerprint, info.client_cert_subject,
                   (consumer.username or consumer.custom_id or consumer.id) if consumer is not None else None)


def quote_field(value: str | None) -> str:
    """A client-supplied value for the text format: ``-`` when absent, else double-quoted with ``"``, ``\\``
    and every non-printable or non-ASCII character escaped as ``\\xHH`` (nginx's ``escape=default``)."""
    if value is None:
        return "-"
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        out.append(char if 0x20 <= byte < 0x7F and char not in '"\\' else f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


#: How often buffered access-log lines are written (seconds), and how many lines wake the writer early.
FLUSH_INTERVAL = 0.1
FLUSH_LINES = 2048


class AccessLog:
    """One line per finished request to stdout, stderr, a file, or nowhere — buffered, written off the loop.

    :meth:`record` only formats the line and appends it to a buffer; :meth:`run`
    (a task of the node) writes the buffer every :data:`FLUSH_INTERVAL` seconds,
    or as soon as :data:`FLUSH_LINES` are waiting, in a worker thread, so a slow
    disk or a blocked stdout pipe never stalls the event loop.  :meth:`close`
    writes what is left: a line recorded before SIGTERM is never lost.  Each
    line is written whole, with the batch, in one ``write``.
    """

    def __init__(self, destination: str, fmt: str) -> None:
        self.fmt = fmt
        self._own = False
        self.out: TextIO | None
        if destination == "off":
            self.out = None
        elif destination == "stdout":
            self.out = sys.stdout
        elif destination == "stderr":
            self.out = sys.stderr
        else:
            self.out = open(destination, "a")  # noqa: SIM115 - lives as long as the node
            self._own = True
        self._lines: list[str] = []
        self._wake = trio.Event()
        self._stamp_second = -1
        self._stamps = ("", "")

    def _now(self) -> tuple[str, str]:
        """The text and the JSON time stamps of this second (formatted once per second, not per line)."""
        second = int(time.time())
        if second != self._stamp_second:
            local = time.localtime(second)
            self._stamp_second = second
            self._stamps = (time.strftime("%d/%b/%Y:%H:%M:%S %z", local), time.strftime("%Y-%m-%dT%H:%M:%S%z", local))
        return self._stamps

    async def run(self) -> None:
        """Write the buffered lines until cancelled (then :meth:`close` writes the rest)."""
        while True:
            with trio.move_on_after(FLUSH_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._lines:
                batch, self._lines = self._lines, []
                await trio.to_thread.run_sync(self._write, batch)

    def _write(self, batch: list[str]) -> None:
        assert self.out is not None
        self.out.write("".join(batch))
        self.out.flush()

    def record(self, info: ConnectionFacts, ex: Exchange, identity: RequestIdentity | None = None) -> None:
        """Write the line of one finished request.

        Args:
            info: the connection's facts.
            ex: the request's facts.
            identity: the client certificate and consumer; by default what ``info`` and ``ex`` carry
                (:meth:`RequestIdentity.of`).
        """
        if self.out is None:
            return
        if identity is None:
            identity = RequestIdentity.of(info, ex)
        latency_ms = round((time.monotonic() - ex.started) * 1000, 2)
        upstream_ms = None if ex.upstream_time is None else round(ex.upstream_time * 1000, 2)
        text_time, json_time = self._now()
        if self.fmt == "json":
            line = json.dumps(
                {
                    "time": json_time,
                    "client_ip": info.client_ip,
                    "method": ex.method,
                    "path": ex.target,
                    "protocol": ex.protocol,
                    "status": ex.status,
                    "reason": ex.reason,
                    "latency_ms": latency_ms,
                    "route": ex.route,
                    "service": ex.service,
                    "upstream_addr": ex.upstream,
                    "upstream_ms": upstream_ms,
                    "bytes_in": ex.bytes_in,
                    "bytes_out": ex.bytes_out,
                    "tls_version": info.tls_version,
                    "tls_cipher": info.cipher,
                    "sni": info.sni,
                    "client_cert_fingerprint": identity.client_cert_fingerprint,
                    "client_cert_subject": identity.client_cert_subject,
                    "consumer": identity.consumer,
                },
                separators=(",", ":"),
            )
        else:
            tls = f"{info.tls_version} {info.cipher} sni={info.sni or '-'}" if info.tls else "-"
            line = (
                f'{info.client_ip} - - [{text_time}] "{ex.method} {ex.target} {ex.protocol}" '
                f"{ex.status} {ex.bytes_out} in={ex.bytes_in} {latency_ms}ms "
                f"upstream={ex.upstream or '-'} {upstream_ms if upstream_ms is not None else '-'}ms "
                f"tls=[{tls}] reason={ex.reason or '-'} "
                f"client_cert={identity.client_cert_fingerprint or '-'} "
                f"client_subject={quote_field(identity.client_cert_subject)} consumer={quote_field(identity.consumer)}"
            )
        self._lines.append(line + "\n")
        if len(self._lines) >= FLUSH_LINES:
            self._wake.set()

    def close(self) -> None:
        """Write every buffered line, then close the file (if it is ours)."""
        if self.out is not None and self._lines:
            batch, self._lines = self._lines, []
            self._write(batch)
        if self._own and self.out is not None:
            self.out.close()
