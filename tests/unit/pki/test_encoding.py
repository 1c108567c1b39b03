"""PEM blocks as AWS ALB form-encodes them: "+" for every space and line break, and "+" in base64 too."""

from __future__ import annotations

import base64
import textwrap
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.pki.encoding import find_pem_blocks, pem_block_readings


def _alb(der: bytes) -> str:
    """``der`` as PEM, line breaks turned to spaces, form-encoded (what ALB puts in its header), then
    percent-decoded as ``parse_certificates`` does first: "+" is now both a line break and base64."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    return urllib.parse.unquote(urllib.parse.quote_plus(pem.replace("\n", " "), safe="/="))


def _readings(der: bytes) -> list[bytes]:
    blocks = find_pem_blocks(_alb(der))
    assert [b.label for b in blocks] == ["CERTIFICATE"]
    return pem_block_readings(blocks[0])


@pytest.mark.parametrize("tail", [b"\x00\x00\x3e", b"\xfb\xef\xbe", b"\x00\x00\x3f"], ids=["+", "++++", "/"])
@pytest.mark.parametrize("size", [60, 48 * 3, 200 * 3])  # one line, exactly full lines, several lines
def test_a_body_ending_in_base64_plus_keeps_it(size: int, tail: bytes) -> None:
    # No padding (the length is a multiple of 3) and the last base64 character is "+": the
    # trailing "+" that was the line break sits right after a "+" that is data.
    der = (bytes(range(256)) * 3)[: size - 3] + tail
    assert len(der) % 3 == 0
    assert der in _readings(der)


@given(st.binary(min_size=1, max_size=400))
def test_every_body_survives_alb_encoding(der: bytes) -> None:
    assert der in _readings(der)
