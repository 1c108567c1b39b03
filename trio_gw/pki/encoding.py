"""Low-level encodings under :mod:`trio_gw.pki.parse`: PEM blocks, base64, DER headers.

Everything here is linear in the input and returns ``None`` (or an empty
list) instead of raising; :mod:`trio_gw.pki.parse` turns that into
:class:`~trio_gw.errors.CertificateError` messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

# "+" between label words: AWS ALB form-encodes the spaces of "BEGIN CERTIFICATE".
# Markers are found in one linear pass and paired afterwards: a single regex
# spanning BEGIN..END is quadratic on many unclosed BEGINs (41 s for 272 KB).
_PEM_MARKER: Final = re.compile(r"-----(BEGIN|END)[ +]([A-Z0-9][A-Z0-9 +]{0,63}?)-----")
_WHITESPACE: Final = re.compile(r"\s+")
_B64_BODY: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64URL_BODY: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


@dataclass(frozen=True)
class PemBlock:
    """One ``-----BEGIN label-----`` block: its label and raw body text."""

    label: str
    body: str

    @property
    def has_headers(self) -> bool:
        """RFC 1421 headers (``Proc-Type: 4,ENCRYPTED``): a legacy encrypted key."""
        return ":" in self.body


def find_pem_blocks(text: str) -> list[PemBlock]:
    """Find every well-formed PEM block (``BEGIN x`` closed by ``END x``).

    A BEGIN closed by a different END label is dropped; a BEGIN followed by
    another BEGIN is abandoned for the newer one.  Text between blocks is
    ignored, as OpenSSL does.

    Args:
        text: PEM text (labels may use "+" for spaces).

    Returns:
        The blocks, in order.
    """
    blocks = []
    opened: tuple[str, int] | None = None  # label and body start of the last BEGIN
    for marker in _PEM_MARKER.finditer(text):
        label = marker.group(2).replace("+", " ")
        if marker.group(1) == "BEGIN":
            opened = (label, marker.end())
        elif opened is not None:
            if opened[0] == label:
                blocks.append(PemBlock(label, text[opened[1] : marker.start()]))
            opened = None
    return blocks


def pem_block_readings(block: PemBlock) -> list[bytes]:
    """The DER a block's body may stand for: as is, then with "+" line breaks dropped.

    Form encoding (ALB) can turn line breaks into "+", which is also a base64
    character; the other readings drop one "+" at the start and one at the end
    (the line breaks after BEGIN and before END — one each, never more: the
    body's own last character may be a "+" too), each or both, and the "+"
    found at every 65th position of a 64-column body.  The caller keeps the
    first reading that parses, so DER's strictness settles the ambiguity.
    """
    body = _WHITESPACE.sub("", block.body)
    readings = [body]
    if "+" in body:
        starts = (1, 0) if body.startswith("+") else (0,)
        ends = (len(body) - 1, len(body)) if body.endswith("+") else (len(body),)
        for start in starts:
            for end in ends:
                core = body[start:end]
                breaks = range(64, len(core), 65)
                if all(core[i] == "+" for i in breaks):
                    core = "".join(c for i, c in enumerate(core) if i % 65 != 64)
                if core not in readings:
                    readings.append(core)
    decoded = (strict_b64decode(r, require_padding=True) for r in readings)
    return [d for d in decoded if d is not None]


def legacy_pem(block: PemBlock) -> bytes:
    """Re-emit a block with headers as clean PEM for OpenSSL's legacy PEM reader.

    Args:
        block: a block whose body carries RFC 1421 headers.

    Returns:
        PEM bytes with stripped lines.
    """
    lines = [line.strip() for line in block.body.replace("\r", "").split("\n")]
    body = "\n".join(lines).strip("\n")
    return f"-----BEGIN {block.label}-----\n{body}\n-----END {block.label}-----\n".encode(
        "latin-1"
    )


def decode_base64(text: str) -> bytes | None:
    """Decode base64 (standard or URL-safe, padding optional), ignoring whitespace.

    Args:
        text: the encoded text.

    Returns:
        The bytes, or None when the text is not base64.
    """
    compact = _WHITESPACE.sub("", text)
    if not compact:
        return None
    if _B64_BODY.fullmatch(compact):
        return strict_b64decode(compact)
    if _B64URL_BODY.fullmatch(compact):
        return strict_b64decode(compact.replace("-", "+").replace("_", "/"))
    return None


def strict_b64decode(body: str, *, require_padding: bool = False) -> bytes | None:
    """Decode standard base64 with no whitespace.

    Args:
        body: the encoded text.
        require_padding: refuse a length that is not a multiple of 4.

    Returns:
        The bytes, or None when ``body`` is not base64.
    """
    if not _B64_BODY.fullmatch(body) or (require_padding and len(body) % 4):
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def der_serial_sign(der: bytes) -> str | None:
    """Read the sign of a DER certificate's serial number without cryptography.

    Walks Certificate → TBSCertificate → [0] version (optional) → INTEGER.

    Args:
        der: a DER certificate (possibly malformed).

    Returns:
        ``"positive"``, ``"not positive"`` (zero or negative), or None when
        the structure cannot be walked (cryptography will then explain).
    """
    position = 0
    for expected in (0x30, 0x30):
        header = _der_header(der, position)
        if header is None or header[0] != expected:
            return None
        position = header[1]
    header = _der_header(der, position)
    if header is not None and header[0] == 0xA0:
        position = header[1] + header[2]
        header = _der_header(der, position)
    if header is None or header[0] != 0x02 or header[2] == 0:
        return None
    content = der[header[1] : header[1] + header[2]]
    if not content or content[0] & 0x80 or not any(content):
        return "not positive" if content else None
    return "positive"


def _der_header(der: bytes, position: int) -> tuple[int, int, int] | None:
    """``(tag, content start, content length)`` of the DER element at ``position``."""
    if position + 2 > len(der):
        return None
    tag, first = der[position], der[position + 1]
    if first < 0x80:
        return tag, position + 2, first
    count = first & 0x7F
    if count == 0 or count > 4 or position + 2 + count > len(der):
        return None
    length = int.from_bytes(der[position + 2 : position + 2 + count], "big")
    return tag, position + 2 + count, length
