"""trio-gw: an API gateway on Trio whose core competence is TLS and mTLS done right."""

from ._version import __version__ as __version__

__all__ = ["__version__"]
