"""Request-phase plugins; importing this package registers every plugin."""

from trio_gw.plugins import ssl as ssl
from trio_gw.plugins.base import REGISTRY as REGISTRY

__all__ = ["REGISTRY", "ssl"]
