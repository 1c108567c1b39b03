"""The fuzz targets: one module per target, each with ``fuzz_one(data)``, ``INVARIANT`` and ``SEEDS``.

A target module may also define ``generated_seeds() -> dict[str, bytes]`` for
seeds that must not be committed (certificates, keys): ``fuzz/run`` writes
them to ``fuzz/corpus/<target>/generated/`` (gitignored) at run time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: target name (as given to ``fuzz/run``) → module.
TARGETS: dict[str, str] = {
    "proxy-request-head": "fuzz.targets.proxy_request_head",
    "proxy-h2": "fuzz.targets.proxy_h2",
    "upstream-h2": "fuzz.targets.upstream_h2",
    "http-guards": "fuzz.targets.http_guards",
    "pki-parse": "fuzz.targets.pki_parse",
    "sni-select": "fuzz.targets.sni_select",
    "declarative": "fuzz.targets.declarative_config",
    "tls-policy": "fuzz.targets.tls_policy",
    "forwarded-cert": "fuzz.targets.forwarded_cert",
    "cert-upload": "fuzz.targets.cert_upload",
}


def load_target(name: str) -> ModuleType:
    """Import the module of target ``name``.

    Raises:
        KeyError: no such target.
    """
    return importlib.import_module(TARGETS[name])
