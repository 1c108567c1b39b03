"""Session-ticket keys from nginx's ``ssl_session_ticket_key`` files (``database: off``).

With a datastore, the ring lives there (sealed, rotated: ``trio_gw.store.ticket_keys``).
Without one, an operator who wants tickets to resume across nodes gives every
node the same files, as with nginx: the first encrypts, all decrypt, and
rotating means replacing the files and reloading (SIGHUP).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.ticket_keys import TicketKeyRing, ring_from_nginx_files

__all__ = ["read_ticket_key_files"]


def read_ticket_key_files(paths: Sequence[str], *, setting: str = "ssl_session_ticket_key") -> TicketKeyRing:
    """Read nginx ticket-key files into a ring (blocking: call it in a worker thread).

    Args:
        paths: the files, in the setting's order (the first encrypts).
        setting: the setting they came from, for messages.

    Returns:
        The ring.

    Raises:
        ConfigError: every unreadable or malformed file, named ``setting[i]``; key bytes are never shown.
    """
    files: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for i, path in enumerate(paths):
        try:
            files.append((f"{setting}[{i}]", Path(path).read_bytes()))
        except OSError as exc:
            problems.append(Problem(f"{setting}[{i}]", f"cannot read {path}: {exc.strerror}"))
    ring: TicketKeyRing | None = None
    try:
        ring = ring_from_nginx_files(files) if files else None
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or ring is None:
        raise ConfigError(problems or [Problem(setting, "no ticket key files")])
    return ring
