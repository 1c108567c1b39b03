"""What one step produced, in a form every expectation can read.

Client output is parsed here once: HTTP responses from curl's header dump or
raw socket bytes, TLS facts from ``curl -v`` or ``openssl s_client`` output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Response:
    """One HTTP response head."""

    status: int
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The value of ``name`` (case-insensitive); repeated fields joined with ``, ``."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class TlsFacts:
    """What the client reported about the handshake."""

    version: str | None = None
    cipher: str | None = None
    subject: str | None = None
    issuer: str | None = None
    verify_code: int | None = None
    alpn: str | None = None


@dataclass
class Outcome:
    """Everything a step produced."""

    command: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: str = ""
    body: bytes = b""
    responses: list[Response] = field(default_factory=list)  # final responses, in order
    interim: list[Response] = field(default_factory=list)  # 1xx responses
    tls: TlsFacts = field(default_factory=TlsFacts)
    closed: bool | None = None
    duration: float = 0.0
    note: str = ""  # anything the step wants in a failure message

    @property
    def stdout_text(self) -> str:
        """Stdout decoded leniently."""
        return self.stdout.decode(errors="replace")

    @property
    def last(self) -> Response | None:
        """The last final response, if any."""
        return self.responses[-1] if self.responses else None


def parse_heads(text: str) -> tuple[list[Response], list[Response]]:
    """Split a header dump (``curl -D``) or raw response heads into final and 1xx responses."""
    final: list[Response] = []
    interim: list[Response] = []
    current: Response | None = None
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = re.match(r"^HTTP/\d(?:\.\d)? (\d{3})", line)
        if m:
            current = Response(int(m.group(1)), [])
            (interim if 100 <= current.status < 200 else final).append(current)
        elif current is not None and ":" in line:
            name, _, value = line.partition(":")
            current.headers.append((name.strip(), value.strip()))
    return final, interim


def parse_raw_response(data: bytes) -> tuple[list[Response], list[Response], bytes]:
    """Parse the responses in bytes read from a raw socket: heads plus the first final body.

    The body is de-chunked when the response is chunked and cut at
    ``Content-Length`` when it has one; otherwise it is the rest of the bytes.
    """
    final: list[Response] = []
    interim: list[Response] = []
    rest = data
    while rest.startswith(b"HTTP/"):
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            head, after = rest, b""
        f, i = parse_heads(head.decode("latin-1"))
        final += f
        interim += i
        rest = after
        if f:
            return final, interim, _body(f[0], rest)
    return final, interim, rest


def _body(response: Response, rest: bytes) -> bytes:
    if "chunked" in (response.header("transfer-encoding") or "").lower():
        out = bytearray()
        while True:
            line, sep, rest = rest.partition(b"\r\n")
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                return bytes(out)
            if not sep or size == 0:
                return bytes(out)
            out += rest[:size]
            rest = rest[size + 2:]
    length = response.header("content-length")
    if length and length.isdigit():
        return rest[: int(length)]
    return rest


def normalise_dn(text: str) -> str:
    """``CN = a, O = b`` (openssl) and ``CN=a,O=b`` (RFC 4514) compare equal after this."""
    return re.sub(r"\s*([=,/])\s*", r"\1", text)


def parse_curl_tls(stderr: str) -> TlsFacts:
    """TLS facts from ``curl -v`` output."""
    facts = TlsFacts()
    m = re.search(r"SSL connection using (\S+) / (\S+)", stderr)
    if m:
        facts.version, facts.cipher = m.group(1), m.group(2)
    m = re.search(r"^\*\s+subject: (.*)$", stderr, re.MULTILINE)
    if m:
        facts.subject = normalise_dn(m.group(1))
    m = re.search(r"^\*\s+issuer: (.*)$", stderr, re.MULTILINE)
    if m:
        facts.issuer = normalise_dn(m.group(1))
    m = re.search(r"ALPN[:,] server accepted(?: to use)? (\S+)", stderr)
    if m:
        facts.alpn = m.group(1)
    return facts


def parse_openssl_tls(stdout: str) -> TlsFacts:
    """TLS facts from ``openssl s_client`` output."""
    facts = TlsFacts()
    m = re.search(r"^New, (\S+), Cipher is (\S+)", stdout, re.MULTILINE)
    if m:
        facts.version, facts.cipher = m.group(1).rstrip(","), m.group(2)
    m = re.search(r"^\s*Protocol\s*: (\S+)", stdout, re.MULTILINE)
    if m:
        facts.version = m.group(1)
    m = re.search(r"^\s*Cipher\s*: (\S+)", stdout, re.MULTILINE)
    if m and m.group(1) != "0000":
        facts.cipher = m.group(1)
    m = re.search(r"^subject=(.*)$", stdout, re.MULTILINE)
    if m:
        facts.subject = normalise_dn(m.group(1))
    m = re.search(r"^issuer=(.*)$", stdout, re.MULTILINE)
    if m:
        facts.issuer = normalise_dn(m.group(1))
    m = re.search(r"Verify return code: (\d+)", stdout)
    if m:
        facts.verify_code = int(m.group(1))
    m = re.search(r"^ALPN protocol: (\S+)", stdout, re.MULTILINE)
    if m:
        facts.alpn = m.group(1)
    return facts
