"""The access log: one line per request, text or JSON."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.exchange import Exchange


class AccessLog:
    """Writes one line per finished request to stdout, stderr, a file, or nowhere."""

    def __init__(self, destination: str, fmt: str) -> None:
        self.fmt = fmt
        self._own = False
        self.out: TextIO | None
        if destination == "off":
            self.out = None
        elif destination == "stdout":
            self.out = sys.stdout
        elif destination == "stderr":
            self.out = sys.stderr
        else:
            self.out = open(destination, "a", buffering=1)  # noqa: SIM115 - lives as long as the node
            self._own = True

    def record(self, info: ConnectionFacts, ex: Exchange) -> None:
        if self.out is None:
            return
        latency_ms = round((time.monotonic() - ex.started) * 1000, 2)
        upstream_ms = None if ex.upstream_time is None else round(ex.upstream_time * 1000, 2)
        if self.fmt == "json":
            line = json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "client_ip": info.client_ip,
                    "method": ex.method,
                    "path": ex.target,
                    "protocol": ex.protocol,
                    "status": ex.status,
                    "reason": ex.reason,
                    "latency_ms": latency_ms,
                    "route": ex.route,
                    "service": ex.service,
                    "upstream_addr": ex.upstream,
                    "upstream_ms": upstream_ms,
                    "bytes_in": ex.bytes_in,
                    "bytes_out": ex.bytes_out,
                    "tls_version": info.tls_version,
                    "tls_cipher": info.cipher,
                    "sni": info.sni,
                },
                separators=(",", ":"),
            )
        else:
            tls = f"{info.tls_version} {info.cipher} sni={info.sni or '-'}" if info.tls else "-"
            line = (
                f'{info.client_ip} - - [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{ex.method} {ex.target} {ex.protocol}" '
                f"{ex.status} {ex.bytes_out} in={ex.bytes_in} {latency_ms}ms "
                f"upstream={ex.upstream or '-'} {upstream_ms if upstream_ms is not None else '-'}ms "
                f"tls=[{tls}] reason={ex.reason or '-'}"
            )
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._own and self.out is not None:
            self.out.close()
