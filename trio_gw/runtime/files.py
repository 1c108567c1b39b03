"""Writing a file so that no reader ever sees it half written, and nobody else can read it."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, readable by the owner only.

    The bytes go to a new file beside ``path`` created with ``mode`` (never
    wider, whatever the umask), are flushed to disk, and the file is renamed
    over ``path``; the directory is then flushed so the rename survives a
    crash.  A reader sees the old file or the new one, never a mix; a crash
    leaves at most a stray ``.tmp`` file, never a torn ``path``.

    Args:
        path: the file to replace (its directory must exist).
        data: the new content.
        mode: permission bits of the new file.

    Raises:
        OSError: the directory is not writable, the disk is full...
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never wider than asked
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
