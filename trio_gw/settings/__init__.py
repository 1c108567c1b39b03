"""Node settings: the table, their parsers and the typed :class:`Settings` (pure: no file or environment IO).

Reading the YAML file, the environment and ``--set`` flags is :mod:`trio_gw.runtime.settings`.
"""

from trio_gw.settings.node import Settings as Settings
from trio_gw.settings.node import default_settings as default_settings
from trio_gw.settings.node import parse_settings as parse_settings
from trio_gw.settings.reference import settings_reference_markdown as settings_reference_markdown
from trio_gw.settings.table import ALIASES as ALIASES
from trio_gw.settings.table import BY_NAME as BY_NAME
from trio_gw.settings.table import SECRET_SETTINGS as SECRET_SETTINGS
from trio_gw.settings.table import SETTINGS as SETTINGS
from trio_gw.settings.table import Setting as Setting
from trio_gw.settings.values import ListenAddress as ListenAddress
from trio_gw.settings.values import http2_flag_warnings as http2_flag_warnings
from trio_gw.settings.values import parse_listen as parse_listen
from trio_gw.settings.values import serves_http2 as serves_http2

__all__ = [
    "ALIASES",
    "BY_NAME",
    "SECRET_SETTINGS",
    "SETTINGS",
    "ListenAddress",
    "Setting",
    "Settings",
    "default_settings",
    "http2_flag_warnings",
    "parse_listen",
    "parse_settings",
    "serves_http2",
    "settings_reference_markdown",
]
