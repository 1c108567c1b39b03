"""runtime.ticket_keys: nginx's ssl_session_ticket_key files read into a ring, problems named by index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trio_gw.errors import ConfigError
from trio_gw.runtime.ticket_keys import read_ticket_key_files


def test_files_in_order_make_the_ring(tmp_path: Path) -> None:
    a, b = os.urandom(80), os.urandom(48)
    (tmp_path / "a.key").write_bytes(a)
    (tmp_path / "b.key").write_bytes(b)
    ring = read_ticket_key_files([str(tmp_path / "a.key"), str(tmp_path / "b.key")])
    assert ring.encrypting(0).name == a[:16] and ring.find(b[:16]) is not None


def test_every_bad_file_is_named_by_index(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_bytes(b"x" * 10)
    with pytest.raises(ConfigError) as info:
        read_ticket_key_files([str(tmp_path / "missing.key"), str(tmp_path / "short.key")])
    assert [p.path for p in info.value.problems] == ["ssl_session_ticket_key[0]", "ssl_session_ticket_key[1]"]
    assert "cannot read" in info.value.problems[0].message and "got 10" in info.value.problems[1].message
    with pytest.raises(ConfigError, match=r"^ssl_session_ticket_key: no ticket key files"):
        read_ticket_key_files([])
