"""Why a connection to PostgreSQL failed, in one line naming the setting to fix.

libpq reports a failed connection as text (SSL failures carry no SQLSTATE).
:func:`explain_connect_error` turns the messages of the failures a
configuration causes (wrong CA, missing or refused client certificate, TLS
required of a server without it, no common version, host name...) into one
line naming the setting, and tells them apart from a server that is merely
unreachable, which a node survives on its last good configuration (issue 14).
This is the only place trio-gw reads libpq's wording; each rule is pinned by a
test with libpq 18's message against PostgreSQL 15.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from trio_gw.tls.postgres import PgTlsPolicy

__all__ = ["FailureKind", "PgConnectFailure", "explain_connect_error"]


class FailureKind(Enum):
    """What a failed connection means for the node."""

    #: The settings are wrong: start-up stops with the message (retrying cannot help).
    MISCONFIGURED = "misconfigured"
    #: The server cannot be reached now: retry with backoff; serve the last good configuration meanwhile.
    UNREACHABLE = "unreachable"
    #: Anything else (left to the caller; today: start-up stops).
    OTHER = "other"


@dataclass(frozen=True)
class PgConnectFailure:
    """A failed connection explained: which setting to fix (or that the server is away), in one line."""

    kind: FailureKind
    setting: str
    message: str


#: (pattern in libpq's text, kind, setting, message) — first match wins.  Each line is pinned by a test.
_RULES: Final[tuple[tuple[str, FailureKind, str, str], ...]] = (
    (r"certificate verify failed", FailureKind.MISCONFIGURED, "lua_ssl_trusted_certificate",
     "PostgreSQL's certificate is not issued by a CA of lua_ssl_trusted_certificate"),
    (r"does not match host name|server certificate for .* does not match", FailureKind.MISCONFIGURED, "pg_host",
     "PostgreSQL's certificate does not name pg_host (pg_ssl_verify checks the host name)"),
    (r"server does not support SSL, but SSL was required", FailureKind.MISCONFIGURED, "{required_by}",
     "PostgreSQL does not offer TLS, and {required_by} = on requires it"),
    (r"connection requires a valid client certificate|alert certificate required", FailureKind.MISCONFIGURED,
     "pg_ssl_cert", "PostgreSQL requires a client certificate: set pg_ssl_cert and pg_ssl_cert_key"),
    (r"certificate authentication failed", FailureKind.MISCONFIGURED, "pg_ssl_cert",
     "PostgreSQL refused the client certificate for pg_user (its CN must be the user name, or mapped to it)"),
    (r"alert unknown ca|alert bad certificate|alert certificate unknown|alert unsupported certificate",
     FailureKind.MISCONFIGURED, "pg_ssl_cert", "PostgreSQL does not trust the client certificate of pg_ssl_cert"),
    (r"alert certificate expired|certificate has expired", FailureKind.MISCONFIGURED, "pg_ssl_cert",
     "a certificate has expired (PostgreSQL's or pg_ssl_cert's)"),
    (r"protocol version|unsupported protocol|no protocols available|wrong version number",
     FailureKind.MISCONFIGURED, "pg_ssl_version", "PostgreSQL and pg_ssl_version have no TLS version in common"),
    (r"(no pg_hba\.conf entry|pg_hba\.conf rejects connection) .*no encryption", FailureKind.MISCONFIGURED,
     "pg_ssl", "PostgreSQL accepts only TLS connections from this host: set pg_ssl = on"),
    (r"no pg_hba\.conf entry|pg_hba\.conf rejects connection", FailureKind.MISCONFIGURED, "pg_user",
     "PostgreSQL's pg_hba.conf admits no connection from this host for pg_user and pg_database"),
    (r"password authentication failed|no password supplied", FailureKind.MISCONFIGURED, "pg_password",
     "PostgreSQL refused the password of pg_user"),
    (r"database \".*\" does not exist", FailureKind.MISCONFIGURED, "pg_database", "the database does not exist"),
    (r"role \".*\" does not exist", FailureKind.MISCONFIGURED, "pg_user", "the user does not exist"),
    (r"could not (read|load|open) (certificate|private key|root certificate)|has group or world access",
     FailureKind.MISCONFIGURED, "pg_ssl_cert", "libpq could not read the client certificate or key"),
    (r"connection refused|timeout expired|could not translate host name|no route to host|network is unreachable"
     r"|server closed the connection unexpectedly|the database system is (starting up|shutting down|in recovery)"
     r"|terminating connection|connection reset|could not receive data|server conn crashed|no connection to the server"
     r"|consuming input failed|SSL SYSCALL error|sorry, too many clients",
     FailureKind.UNREACHABLE, "pg_host", "PostgreSQL cannot be reached"),
)  # fmt: skip


def explain_connect_error(text: str, policy: PgTlsPolicy) -> PgConnectFailure:
    """Explain libpq's message of a failed connection in one line naming the setting to fix.

    Args:
        text: ``str()`` of the driver's error (libpq's message, possibly several lines).
        policy: the TLS policy the connection used (names the setting that required TLS).

    Returns:
        The failure; ``message`` ends with libpq's own words (one line) in parentheses.
    """
    detail = _one_line(text)
    required_by = policy.required_by or "pg_ssl_required"
    for pattern, kind, setting, message in _RULES:
        if re.search(pattern, text, re.IGNORECASE):
            setting = setting.format(required_by=required_by)
            return PgConnectFailure(kind, setting, f"{message.format(required_by=required_by)} (libpq: {detail})")
    return PgConnectFailure(FailureKind.OTHER, "database", f"cannot connect to PostgreSQL (libpq: {detail})")


def _one_line(text: str) -> str:
    """libpq's own words on one line: the first line, after ``connection to server at ... failed:``.

    The following lines are hints (``Is the server running on that host...``)
    that the setting-naming message replaces.
    """
    first = text.strip().split("\n", 1)[0]
    reason = first.rsplit(" failed: ", 1)[-1].removeprefix("connection failed: ")
    return re.sub(r"\s+", " ", reason).strip()[:300]
