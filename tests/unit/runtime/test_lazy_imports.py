"""What a node that does not use a feature leaves unimported (each worker process pays for every import).

Run in a fresh interpreter: this test process has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import trio_gw.runtime.cli, trio_gw.runtime.gateway
print(" ".join(sorted(name for name in {modules} if name in sys.modules)))
"""


@pytest.mark.parametrize("modules", [("h2", "trio_gw.net.http2"), ("acme", "josepy", "OpenSSL")])
def test_the_gateway_imports_these_only_when_configured(modules: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(modules=set(modules))], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == [], f"imported at start: {done.stdout.strip()}"


def test_the_probe_sees_an_import() -> None:
    # the same probe, on a module the gateway does import: the check above can fail
    done = subprocess.run([sys.executable, "-c", PROBE.format(modules={"h11", "trio_gw.net.http1"})],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["h11", "trio_gw.net.http1"]
