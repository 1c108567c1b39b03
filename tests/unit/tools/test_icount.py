"""tools/icount.py's parsing of callgrind dumps."""

from __future__ import annotations


import pytest

from tool_loader import load_tool


icount = load_tool("icount")

DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /usr/bin/python3 -m trio_gw run -c settings.yaml
part: 2

desc: I1 cache:
desc: Timerange: Basic block 27241763 - 52934110
desc: Trigger: Client Request: Dump

positions: line
events: Ir
summary: 135049392

fl=(1) ???
fn=(1) 0x0000000000001234
0 17
totals: 135049392
"""


def test_totals_line_of_a_dump() -> None:
    assert icount.parse_totals(DUMP) == 135_049_392


def test_summary_line_when_totals_is_absent() -> None:
    assert icount.parse_totals(DUMP.replace("totals: 135049392\n", "")) == 135_049_392


def test_event_counts_in_the_body_are_not_mistaken_for_totals() -> None:
    body_only = "events: Ir\nfn=(1) f\n0 17\n"
    with pytest.raises(ValueError, match="no 'totals:' line"):
        icount.parse_totals(body_only)


@pytest.mark.parametrize(("text", "expected"), [
    ("ssl_session_tickets=off", ("ssl_session_tickets", "off")),
    ("workers=2", ("workers", 2)),
    ('ssl_cert=["a.pem"]', ("ssl_cert", ["a.pem"])),
    ("proxy_listen=127.0.0.1:0 ssl", ("proxy_listen", "127.0.0.1:0 ssl")),
])
def test_set_reads_json_else_a_string(text: str, expected: tuple[str, object]) -> None:
    assert icount.setting(text) == expected


@pytest.mark.parametrize("text", ["no-equals-sign", "=value"])
def test_set_without_a_name_is_refused(text: str) -> None:
    with pytest.raises(icount.argparse.ArgumentTypeError):
        icount.setting(text)


def test_unknown_scenario_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        icount.main(["--scenarios", "handshake,mtl"])
    assert exc.value.code == 2
    assert "unknown scenario(s): mtl" in capsys.readouterr().err
