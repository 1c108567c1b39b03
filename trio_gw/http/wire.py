"""HTTP/1.1 heads the gateway builds itself, serialised directly; h11 still decides the framing.

Theory of operation
-------------------
h11 parses every byte a client or an upstream sends, and keeps the state of
both connections.  Serialising what the gateway *builds itself* through h11 —
the upstream request head, the head of the answer relayed to the client — costs
an event object whose fields h11 validates and normalises, a copy of the header
list, and h11's writer: about half of h11's share of a proxied request, for
fields h11 already validated when it parsed them (the client's and the
upstream's) or that the gateway made (``X-Forwarded-*``, identity headers,
sanitised).

So a head is split in two (:func:`split_framing`):

* the **framing fields** — ``Content-Length``, ``Transfer-Encoding``,
  ``Connection`` — go to h11 in a small event, so that h11's state machine
  knows what was sent and h11 still applies its framing rules: it refuses two
  lengths, adds ``Connection: close`` when the peer is HTTP/1.0 or asked for
  it, chunks a body of unknown length for an HTTP/1.1 peer, writes no body for
  ``HEAD`` — and the bytes h11 writes for that event are the status or
  request line and the framing fields;
* **every other field** is written here, once, as ``name: value\\r\\n`` lines,
  and spliced in before the blank line that ends h11's head (:func:`splice`).

The output is what h11 would write for the whole list (field order aside:
framing fields first), which ``tests/unit/http/test_wire.py`` checks against
h11 itself over generated heads.  Nothing here validates: callers pass fields
that h11 parsed, or that the gateway built from validated values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["FRAMING_FIELDS", "field_lines", "request_head", "splice", "split_framing"]

Header = tuple[bytes, bytes]

#: The fields h11 must see to frame a message and keep its connection state (``upgrade``: a
#: WebSocket handshake's switch proposal, which h11 must know of to take the upstream's 101).
FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"upgrade"})


def field_lines(headers: Iterable[Header]) -> bytes:
    """``name: value\\r\\n`` for each field, in order."""
    return b"".join([name + b": " + value + b"\r\n" for name, value in headers])


def split_framing(headers: Sequence[Header]) -> tuple[list[Header], bytes]:
    """The framing fields (for h11), and every other field already serialised.

    Args:
        headers: lowercase names (as h11 gives them, or as the gateway built them).

    Returns:
        ``(framing, lines)``: the ``Content-Length``/``Transfer-Encoding``/``Connection``/``Upgrade``
        fields in order, and :func:`field_lines` of the rest.
    """
    framing: list[Header] = []
    lines: list[bytes] = []
    for name, value in headers:
        if name in FRAMING_FIELDS:
            framing.append((name, value))
        else:
            lines.append(name + b": " + value + b"\r\n")
    return framing, b"".join(lines)


def splice(h11_head: bytes, lines: bytes) -> bytes:
    """Insert serialised fields before the blank line that ends ``h11_head``.

    Raises:
        ValueError: ``h11_head`` is not a complete head (no final ``\\r\\n\\r\\n``).
    """
    if not h11_head.endswith(b"\r\n\r\n"):
        raise ValueError("not a complete HTTP head")
    return h11_head[:-2] + lines + b"\r\n"


def request_head(method: bytes, target: bytes, headers: Sequence[Header]) -> bytes:
    """A whole HTTP/1.1 request head (request line, fields, blank line), ``host`` where given.

    h11 writes ``Host`` first; the gateway's upstream headers start with it already.
    """
    return b"".join([method, b" ", target, b" HTTP/1.1\r\n", field_lines(headers), b"\r\n"])
