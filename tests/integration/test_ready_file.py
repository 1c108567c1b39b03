"""The ready file is the last thing a node does at start: SIGTERM is handled by then.

A process manager (systemd, Kubernetes, the tests) may stop the node the moment
the file appears.  Written before the signal handlers were in place, that
SIGTERM killed the process (exit -15, nothing drained) instead of stopping it;
``test_cli.py::test_run_serves_then_stops_on_sigterm`` caught it once in a
fresh-clone CI run.  Here the order is checked directly, at the moment the file
is written, in the gateway's own process.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from trio_gw.runtime.gateway import READY_FILE, Gateway

from .conftest import StartGateway


async def test_sigterm_is_handled_when_the_ready_file_is_written(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    write = Gateway._write_ready_file

    def recording(self: Gateway) -> None:
        seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), self.serving.is_set()))
        write(self)

    monkeypatch.setattr(Gateway, "_write_ready_file", recording)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)  # whatever this process had
    gw = await start_gateway({"_format_version": "3.0"})
    assert len(seen) == 1
    sigterm, sigint, serving = seen[0]
    # The node's own handlers (trio's open_signal_receiver installs a new one), not what was there before.
    assert callable(sigterm) and sigterm is not before[0]
    assert callable(sigint) and sigint is not before[1]
    assert serving
    assert Path(gw.settings.prefix, READY_FILE).exists()
