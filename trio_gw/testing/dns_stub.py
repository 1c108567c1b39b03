"""A DNS server for tests that answers every ``A`` question with ``127.0.0.1``.

An ACME server validates a challenge by resolving the name and connecting to
it.  Pebble asks the resolver given with ``-dnsserver``; this one (UDP,
``127.0.0.1`` port 0, a thread) makes every name resolve to the loopback
address where the test's listeners are, and nothing outside the machine is
ever asked.  ``AAAA`` and every other type get an empty NOERROR answer, so
clients fall back to IPv4.  :attr:`DnsStub.names` records what was asked.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from typing import Final

__all__ = ["DnsStub"]

_TYPE_A: Final = 1
_CLASS_IN: Final = 1


class DnsStub:
    """See the module docstring; a context manager that stops itself."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.names: list[tuple[str, int]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)
        self._thread.start()

    @property
    def server(self) -> str:
        """``127.0.0.1:PORT``, as pebble's ``-dnsserver`` wants it."""
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(query)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one query message (``None``: not a query we can read, dropped)."""
        if len(query) < 12:
            return None
        ident, flags, qdcount = struct.unpack("!HHH", query[:6])
        if flags & 0x8000 or qdcount != 1:
            return None
        end, labels = 12, []
        while end < len(query) and query[end] != 0:
            size = query[end]
            labels.append(query[end + 1: end + 1 + size].decode("ascii", "replace"))
            end += 1 + size
        end += 1
        if end + 4 > len(query):
            return None
        qtype, qclass = struct.unpack("!HH", query[end: end + 4])
        question = query[12: end + 4]
        self.names.append((".".join(labels).lower(), qtype))
        answers = b""
        if qtype == _TYPE_A and qclass == _CLASS_IN:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", _TYPE_A, _CLASS_IN, 5, 4) + socket.inet_aton(self.address)
        header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | 0x0080, 1, 1 if answers else 0, 0, 0)
        return header + question + answers

    def close(self) -> None:
        """Stop answering and release the port."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DnsStub:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
