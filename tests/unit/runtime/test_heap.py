"""The collector settings of a node's process (``runtime/heap.py``), and the property they rely on.

``settle()`` changes process-wide state, so it runs in a fresh interpreter. What makes freezing
safe: a generation the node replaces is freed by reference counting, with no help from the
collector, since frozen objects in a cycle would never be collected.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
import yaml

from trio_gw.model.declarative import load_declarative_text
from trio_gw.model.entities import Entities
from trio_gw.net.contexts import ALPN_HTTP11
from trio_gw.net.generation import Generation, GenerationBuilder, GenerationHolder
from trio_gw.runtime import heap
from trio_gw.settings import default_settings

PROBE = """
import gc, json
from trio_gw.runtime import heap
import trio_gw.runtime.gateway
before = gc.get_threshold()
frozen = heap.settle()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": frozen,
                  "frozen_now": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_settle_freezes_what_start_up_built_and_raises_the_young_threshold() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(done.stdout)
    assert seen["after"] == [heap.YOUNG_THRESHOLD, *seen["before"][1:]]
    assert seen["before"][0] != heap.YOUNG_THRESHOLD
    # the gateway's modules alone are tens of thousands of objects; the collector now sees almost none
    assert seen["frozen"] == seen["frozen_now"] > 20_000
    assert seen["tracked"] < 1_000


def test_this_process_was_left_alone() -> None:
    # the gateways the other tests start in-process do not own it (ProcessRole.owns_process)
    assert gc.get_threshold()[0] != heap.YOUNG_THRESHOLD


@pytest.fixture(scope="module")
def certificates() -> list[dict[str, Any]]:
    ca = trustme.CA()
    made = []
    for i in range(3):
        leaf = ca.issue_cert(f"h{i}.example")
        made.append({"cert": leaf.cert_chain_pems[0].bytes().decode(),
                     "key": leaf.private_key_pem.bytes().decode(), "snis": [f"h{i}.example"]})
    return made


def _entities(certificates: list[dict[str, Any]], services: int) -> Entities:
    config = {
        "_format_version": "3.0",
        "certificates": certificates,
        "services": [{"name": f"s{j}", "url": f"https://127.0.0.1:{9000 + j}",
                      "routes": [{"name": f"r{j}", "paths": [f"/p{j}"], "hosts": [f"h{j % 3}.example"]}]}
                     for j in range(services)],
    }
    return load_declarative_text(yaml.safe_dump(config), now=int(time.time()))


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_replaced_generation_is_freed_without_the_collector(
    certificates: list[dict[str, Any]], collector_off: None,
) -> None:
    builder = GenerationBuilder(default_settings())
    holder = GenerationHolder()
    first = builder.build(_entities(certificates, 3))
    holder.install(first)
    for cert in first.snapshot.certificates.values():  # contexts built on first use, as the SNI callback does
        first.server_tls.certificate_context(cert, ALPN_HTTP11)
    assert first.server_tls.lazy_contexts() or first.server_tls.prebuilt
    parts: list[weakref.ref[Any]] = [weakref.ref(first), weakref.ref(first.snapshot), weakref.ref(first.server_tls)]
    second = builder.build(_entities(certificates, 4), previous=first, lazy_contexts=first.server_tls.lazy_contexts())
    holder.install(second)
    del first
    assert [part() for part in parts] == [None, None, None]


def test_the_check_sees_a_cycle(certificates: list[dict[str, Any]], collector_off: None) -> None:
    # the same check on a generation caught in a cycle: without the collector it stays
    builder = GenerationBuilder(default_settings())
    first = builder.build(_entities(certificates, 1))

    class Loop:
        generation: Generation
        me: Loop

    loop = Loop()
    loop.generation, loop.me = first, loop
    part = weakref.ref(first)
    del first, loop
    assert part() is not None
    gc.collect()
    assert part() is None

