"""The node's ``plugins`` setting (Kong's ``plugins``, formerly ``plugins_available``), and secret plugin fields."""

from __future__ import annotations

from typing import Any

import pytest

from trio_gw.admin.representation import present
from trio_gw.errors import ConfigError
from trio_gw.plugins.base import REGISTRY, check_plugins_available, public_config
from trio_gw.settings import parse_settings
from trio_gw.snapshot import build_snapshot
from trio_gw.testing.pki import build_certificate

from .conftest import NOW, Pki, document, load


def settings(**values: Any) -> Any:
    return parse_settings([("test", values)])


def test_plugins_setting_bundled_names_and_off() -> None:
    assert settings().plugins == tuple(sorted(REGISTRY))  # default: bundled, as Kong
    assert settings(plugins="bundled").plugins == tuple(sorted(REGISTRY))
    assert settings(plugins="key-auth, ssl").plugins == ("key-auth", "ssl")
    assert settings(plugins=["SSL"]).plugins == ("ssl",)
    assert settings(plugins="off").plugins == ()
    assert settings(plugins=False).plugins == ()  # YAML reads `plugins: off` as false


def test_plugins_setting_refuses_unknown_names_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        settings(plugins="bundled, mtls-auht")
    (problem,) = info.value.problems
    assert problem.path == "plugins"
    assert "unknown plugin 'mtls-auht'" in problem.message and "did you mean 'mtls-auth'" in problem.message


def test_a_plugin_not_enabled_on_the_node_is_refused(pki: Pki) -> None:
    entities = load(document(pki, plugins=[{"name": "ssl", "config": {"only_https": True}}]))
    check_plugins_available(entities)  # no setting: every plugin trio-gw has
    check_plugins_available(entities, ("ssl",))
    with pytest.raises(ConfigError) as info:
        check_plugins_available(entities, ("key-auth",))
    (problem,) = info.value.problems
    assert problem.path.endswith(".name")
    assert problem.message == ("plugin 'ssl' is not enabled on this node; add it to the 'plugins' setting "
                               "(enabled: key-auth)")
    with pytest.raises(ConfigError, match=r"\(enabled: none\)"):
        check_plugins_available(entities, ())


def test_disabled_plugin_entities_count_too(pki: Pki) -> None:
    entities = load(document(pki, plugins=[{"name": "ssl", "enabled": False, "config": {}}]))
    with pytest.raises(ConfigError, match="not enabled on this node"):
        check_plugins_available(entities, ("key-auth",))


def test_snapshot_applies_the_node_setting(pki: Pki) -> None:
    entities = load(document(pki, plugins=[{"name": "ssl", "config": {"only_https": True}}]))
    build_snapshot(settings(plugins="ssl"), entities, now=NOW)
    with pytest.raises(ConfigError, match="plugin 'ssl' is not enabled on this node"):
        build_snapshot(settings(plugins="key-auth"), entities, now=NOW)
    build_snapshot(settings(plugins="off"), load(document(pki)), now=NOW)  # nothing used, nothing enabled: fine


def test_admin_api_never_shows_the_ssl_plugins_private_key(pki: Pki) -> None:
    leaf = build_certificate(issuer=pki.ca, common_name="shop", dns_names=["shop.example"])
    config = {"cert": leaf.cert_pem(), "key": leaf.key_pem(), "only_https": True}
    entities = load(document(pki, plugins=[{"name": "ssl", "config": config}]))
    (plugin,) = entities.plugins.values()
    assert "PRIVATE KEY" in plugin.config["key"]  # stored, served...
    shown = present("plugins", plugin, entities, now=NOW)
    assert "key" not in shown["config"] and "PRIVATE KEY" not in repr(shown)  # ...never shown
    assert shown["config"]["cert"] == plugin.config["cert"] and shown["config"]["only_https"] is True
    assert public_config("mtls-auth", {"ca_certificates": []}) == {"ca_certificates": []}
    assert public_config("no-such-plugin", {"key": "x"}) == {"key": "x"}


def test_declarative_dump_leaves_the_ssl_plugins_key_out_unless_asked(pki: Pki) -> None:
    from trio_gw.model.declarative import dump_declarative

    leaf = build_certificate(issuer=pki.ca, common_name="shop", dns_names=["shop.example"])
    config = {"cert": leaf.cert_pem(), "key": leaf.key_pem(), "only_https": True}
    entities = load(document(pki, plugins=[{"name": "ssl", "config": config}]))
    (plain,) = dump_declarative(entities)["plugins"]
    assert "key" not in plain["config"] and plain["config"]["cert"] == leaf.cert_pem()
    (full,) = dump_declarative(entities, include_keys=True)["plugins"]
    assert full["config"]["key"] == leaf.key_pem()
    assert load(dump_declarative(entities, include_keys=True)).plugins == entities.plugins
