#!/usr/bin/env python3
"""Generate ``trio_gw/tls/cipher_table.json`` from the local ``openssl`` CLI.

The gateway accepts cipher suites by IANA name (Tyk, Go, RFCs) or by OpenSSL
name (Kong, nginx), but stdlib ``ssl`` knows only OpenSSL names and silently
drops names it does not know (``docs/tls-stack.md`` §4).  So trio-gw
checks every configured name against a vendored table, generated once by this
tool rather than by calling the CLI at runtime.

The table is the output of::

    openssl ciphers -V -stdname -ciphersuites <all TLS 1.3 suites> \
        'ALL:COMPLEMENTOFALL:@SECLEVEL=0'

``-ciphersuites`` lists all five TLS 1.3 suites OpenSSL implements, so the two
CCM suites that are off by default (``TLS_AES_128_CCM_SHA256``,
``TLS_AES_128_CCM_8_SHA256``) are in the table too: they can be enabled with
``SSL_CTX_set_ciphersuites``.  Without that option the command prints 158 rows;
with it, 160 on OpenSSL 3.0.

Usage::

    python tools/gen_cipher_table.py            # rewrite the vendored table
    python tools/gen_cipher_table.py --check    # exit 1 if it is out of date

``tests/unit/tls/test_cipher_table.py`` loads this file to compare the vendored
table with the local CLI.  It is never imported by ``trio_gw``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE_PATH = ROOT / "trio_gw" / "tls" / "cipher_table.json"

#: Every TLS 1.3 suite OpenSSL 3 implements (RFC 8446 appendix B.4).
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
CIPHER_STRING = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
COMMAND = (
    "openssl", "ciphers", "-V", "-stdname",
    "-ciphersuites", ":".join(TLS13_SUITES),
    CIPHER_STRING,
)  # fmt: skip

# "0xC0,0x2F - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 - ECDHE-RSA-AES128-GCM-SHA256
#  TLSv1.2 Kx=ECDH Au=RSA Enc=AESGCM(128) Mac=AEAD"
_ROW = re.compile(
    r"^\s*0x(?P<hi>[0-9A-F]{2}),0x(?P<lo>[0-9A-F]{2})\s+-\s+(?P<iana>\S+)\s+-\s+"
    r"(?P<openssl>\S+)\s+(?P<protocol>\S+)\s+Kx=(?P<kx>\S+)\s+Au=(?P<au>\S+)\s+"
    r"Enc=(?P<enc>\S+)\s+Mac=(?P<mac>\S+)\s*$"
)


def parse_rows(output: str) -> list[dict[str, str]]:
    """Parse ``openssl ciphers -V -stdname`` output into table rows.

    Args:
        output: the command's standard output.

    Returns:
        One dict per suite, sorted by code point, with keys ``code`` ("0xC02F"),
        ``iana``, ``openssl``, ``protocol``, ``kx``, ``au``, ``enc``, ``mac``.

    Raises:
        ValueError: a line does not have the expected shape, or a suite has no
            IANA name (OpenSSL prints ``(NONE)``).
    """
    rows = []
    for line in output.splitlines():
        if not line.strip():
            continue
        match = _ROW.match(line)
        if match is None:
            raise ValueError(f"unexpected line from openssl ciphers: {line!r}")
        if match["iana"] == "(NONE)":
            raise ValueError(f"suite without an IANA name: {line!r}")
        row = {"code": f"0x{match['hi']}{match['lo']}"}
        row.update({k: match[k] for k in ("iana", "openssl", "protocol", "kx", "au", "enc", "mac")})
        rows.append(row)
    return sorted(rows, key=lambda r: int(r["code"], 16))


def openssl_version() -> str:
    """Return the local CLI's ``openssl version`` line."""
    return subprocess.run(
        ["openssl", "version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def build_table() -> dict[str, Any]:
    """Run the CLI and return the table document written to ``cipher_table.json``."""
    output = subprocess.run(COMMAND, check=True, capture_output=True, text=True).stdout
    return {
        "generated_by": "tools/gen_cipher_table.py",
        "command": " ".join(f"'{a}'" if ":" in a else a for a in COMMAND),
        "openssl_version": openssl_version(),
        "suites": parse_rows(output),
    }


def render(table: dict[str, Any]) -> str:
    """Serialise the table: one suite per line, so diffs stay readable."""
    head = {k: v for k, v in table.items() if k != "suites"}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "suites": [')
    suites = [f"    {json.dumps(row)}" for row in table["suites"]]
    lines.append(",\n".join(suites))
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the vendored table differs")
    parser.add_argument("--output", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = build_table()
    if args.check:
        current = json.loads(args.output.read_text(encoding="utf-8"))
        if current["suites"] != table["suites"]:
            print(f"{args.output} is out of date; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(render(table), encoding="utf-8")
    print(f"wrote {len(table['suites'])} suites to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
