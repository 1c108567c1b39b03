"""The project's declared error types.

Every input the gateway accepts from outside (settings, declarative files, Admin
API bodies, certificates, forwarded-certificate headers, request heads) either
gives a value or raises one of these.  Fuzz harnesses treat any other exception
as a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a path such as ``services[0].routes[1].paths[0]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class GatewayError(Exception):
    """Base class of the project's declared errors; never raised itself."""

    def __init__(self, *args: object) -> None:
        if type(self) is GatewayError:
            raise TypeError("GatewayError is abstract; raise a subclass")
        super().__init__(*args)


class ConfigError(GatewayError):
    """Settings or declarative configuration that cannot be used.

    Carries every problem found, so one run of ``trio-gw config check`` reports
    them all.  ``str()`` gives one ``path: message`` line per problem.
    """

    def __init__(self, problems: Iterable[Problem] | str, path: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(path, problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))

    def prefixed(self, prefix: str) -> ConfigError:
        """Return the same error with every path placed under ``prefix``."""
        return ConfigError(
            Problem(_join(prefix, p.path), p.message) for p in self.problems
        )


class CertificateError(GatewayError):
    """Certificate or key material that cannot be parsed or does not fit its role."""


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"
