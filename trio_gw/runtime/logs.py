"""The error log: levels with nginx's and Kong's names, and its one configuration.

Python has no NOTICE level; nginx and Kong do (between info and warn), and
``log_level: notice`` is Kong's default.  Lifecycle facts a user does not act
on (a listener is up) are INFO, hidden by default; events worth seeing in a
default log (a reload, a signal, an Admin API change) are NOTICE; WARNING and
above are things to act on.
"""

from __future__ import annotations

import logging
from typing import Final

NOTICE: Final = 25
logging.addLevelName(NOTICE, "NOTICE")

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE, "warn": logging.WARNING,
                 "error": logging.ERROR, "crit": logging.CRITICAL}


def configure_logging(level: str, *, process: str | None = None) -> None:
    """Send the error log to stderr at ``level`` (one of :data:`LEVELS`' names).

    Args:
        level: the ``log_level`` setting.
        process: which process of a node with workers writes (``supervisor``, ``worker 1``), shown on every line.
    """
    where = f" ({process})" if process else ""
    logging.basicConfig(level=LEVELS.get(level, NOTICE),
                        format=f"%(asctime)s [%(levelname)s] %(name)s{where}: %(message)s")
