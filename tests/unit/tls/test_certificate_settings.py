"""Settings → inventory items: one per certificate a setting names, read through the caller's reader."""

from __future__ import annotations

import pytest

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.inventory import ConfiguredCertificate, Role, Usage, build_inventory
from trio_gw.pki.info import certificate_id
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.certificate_settings import parse_configured_certificates

ROOT = make_ca(common_name="settings root")
INTERMEDIATE = make_ca(issuer=ROOT, common_name="settings intermediate")
SERVER = issue(INTERMEDIATE, "gw.example")
ADMIN = issue(ROOT, "admin.example")
STATUS = issue(ROOT, "status.example")
CLIENT = issue(ROOT, common_name="gateway client")
HOST_CLIENT = issue(ROOT, common_name="billing client")


class Files:
    """An in-memory file system with the IO layer's reader contract (raise ConfigError naming the setting)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.reads: list[tuple[str, str]] = []

    def __call__(self, path: str, where: str) -> str:
        self.reads.append((path, where))
        if path not in self.files:
            raise ConfigError(f"cannot read {path}: No such file or directory", where)
        return self.files[path]


FILES = {
    "server.pem": SERVER.chain_pem(),
    "admin.pem": ADMIN.chain_pem(),
    "status.pem": STATUS.chain_pem(),
    "client.pem": CLIENT.chain_pem(),
    "tyk-combined.pem": SERVER.chain_pem() + SERVER.key_pem(),
    "billing-combined.pem": HOST_CLIENT.key_pem() + HOST_CLIENT.chain_pem(),
    "cas.pem": ROOT.cert_pem() + INTERMEDIATE.cert_pem(),
    "root.pem": ROOT.cert_pem(),
    "key-only.pem": CLIENT.key_pem(),
}


def _by_key(items: list[ConfiguredCertificate]) -> dict[str, ConfiguredCertificate]:
    return {i.key: i for i in items}


def test_server_settings_are_server_items_with_their_setting() -> None:
    items = _by_key(parse_configured_certificates(
        {"ssl_cert": ("server.pem",), "admin_ssl_cert": ("admin.pem",), "status_ssl_cert": ["status.pem"]},
        Entities(), Files(FILES)))
    assert set(items) == {"setting:ssl_cert[0]", "setting:admin_ssl_cert[0]", "setting:status_ssl_cert[0]"}
    server = items["setting:ssl_cert[0]"]
    assert server.role is Role.SERVER and server.source == "ssl_cert[0] (server.pem)"
    assert server.usage == (Usage("setting", "ssl_cert"),) and server.pem == SERVER.chain_pem()
    assert items["setting:admin_ssl_cert[0]"].usage == (Usage("setting", "admin_ssl_cert"),)


def test_an_unreadable_or_keyless_file_is_a_problem_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_configured_certificates({"ssl_cert": ("missing.pem", "key-only.pem")}, Entities(), Files(FILES))
    assert caught.value.problems == (
        Problem("ssl_cert[0]", "cannot read missing.pem: No such file or directory"),
        Problem("ssl_cert[1]", "key-only.pem: unparsable PEM: no certificate found (only a private key)"),
    )


def test_tyk_ssl_certificates_files_lose_their_key_and_store_ids_name_the_entity() -> None:
    stored = Certificate(id="11111111-2222-3333-4444-555555555555", cert=ADMIN.chain_pem(), key=ADMIN.key_pem())
    fingerprint = certificate_id(ADMIN.cert)
    items = parse_configured_certificates(
        {"ssl_certificates": ("tyk-combined.pem", fingerprint)}, Entities(certificates={stored.id: stored}),
        Files(FILES))
    combined, reference = items
    assert combined.key == "setting:ssl_certificates[0]" and combined.entity_id is None
    assert "PRIVATE KEY" not in combined.pem and combined.pem == SERVER.chain_pem()
    assert reference.entity_id == stored.id and reference.role is Role.SERVER
    inventory = build_inventory(Entities(certificates={stored.id: stored}), items)
    assert inventory.facts[f"certificate:{stored.id}"].used_by == (Usage("setting", "ssl_certificates"),)


def test_an_unknown_store_reference_is_a_problem() -> None:
    with pytest.raises(ConfigError, match=r"ssl_certificates\[0\]: no certificate in the store"):
        parse_configured_certificates({"ssl_certificates": ("sha256:" + "00" * 32,)}, Entities(), Files(FILES))


def test_upstream_client_certificates_from_client_ssl_cert_and_the_host_map() -> None:
    stored = Certificate(id="11111111-2222-3333-4444-555555555555", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    items = _by_key(parse_configured_certificates(
        {"client_ssl_cert": "client.pem", "client_ssl_cert_key": "client.key",
         "upstream_certificates": {"*.billing.example": "billing-combined.pem", "orders.example:8443": stored.id}},
        Entities(certificates={stored.id: stored}), Files(FILES)))
    assert items["setting:client_ssl_cert"].role is Role.UPSTREAM_CLIENT
    billing = items["setting:upstream_certificates[*.billing.example]"]
    assert billing.role is Role.UPSTREAM_CLIENT and "PRIVATE KEY" not in billing.pem
    assert billing.usage == (Usage("setting", "upstream_certificates", "*.billing.example"),)
    orders = items["setting:upstream_certificates[orders.example:8443]"]
    assert orders.entity_id == stored.id


def test_a_malformed_host_map_is_a_problem_of_the_setting() -> None:
    with pytest.raises(ConfigError, match="upstream_certificates"):
        parse_configured_certificates({"upstream_certificates": {"bad host!": "x.pem"}}, Entities(), Files(FILES))


def test_ca_bundles_give_one_item_per_certificate_and_system_is_not_a_file() -> None:
    files = Files(FILES)
    items = parse_configured_certificates(
        {"ssl_client_certificate": ("cas.pem",), "lua_ssl_trusted_certificate": ("system", "root.pem"),
         "admin_mtls_ca_certificates": ("root.pem",), "proxy_ssl_trusted_certificate": ("root.pem",)},
        Entities(), files)
    assert [i.key for i in items] == [
        "setting:ssl_client_certificate[0][0]", "setting:ssl_client_certificate[0][1]",
        "setting:lua_ssl_trusted_certificate[1][0]", "setting:admin_mtls_ca_certificates[0][0]",
        "setting:proxy_ssl_trusted_certificate[0][0]",
    ]
    assert all(i.role is Role.CA for i in items)
    assert items[1].source == "ssl_client_certificate[0] (cas.pem), certificate 2"
    assert ("system", "lua_ssl_trusted_certificate[0]") not in files.reads
    inventory = build_inventory(Entities(), items)
    assert inventory.facts["setting:ssl_client_certificate[0][1]"].info.common_names == ("settings intermediate",)


def test_nothing_configured_reads_nothing() -> None:
    files = Files(FILES)
    assert parse_configured_certificates({"lua_ssl_trusted_certificate": ("system",)}, Entities(), files) == []
    assert files.reads == []


def test_the_webhooks_mtls_certificate_and_ca_file_of_external_services_are_watched() -> None:
    def external(**mtls: object) -> dict[str, object]:
        return {"external_services": {"webhooks": {"mtls": mtls}}}

    files = Files({**FILES, "combined.pem": CLIENT.key_pem() + CLIENT.chain_pem()})
    items = _by_key(parse_configured_certificates(
        external(enabled=True, cert_file="combined.pem", key_file="combined.pem", ca_file="cas.pem"), Entities(), files))
    assert list(items) == ["setting:external_services.webhooks.mtls.cert_file",
                           "setting:external_services.webhooks.mtls.ca_file[0]",
                           "setting:external_services.webhooks.mtls.ca_file[1]"]
    client = items["setting:external_services.webhooks.mtls.cert_file"]
    assert client.role is Role.UPSTREAM_CLIENT and "PRIVATE KEY" not in client.pem
    assert client.usage == (Usage("setting", "external_services", "webhooks"),)
    assert {items[k].role for k in list(items)[1:]} == {Role.CA}
    # not enabled, or a block its own parser refuses (reported by the monitor's settings): nothing read
    quiet = Files(FILES)
    assert parse_configured_certificates(external(enabled=False), Entities(), quiet) == []
    assert parse_configured_certificates(external(enabled=True, cert_file="client.pem"), Entities(), quiet) == []
    assert quiet.reads == []
    with pytest.raises(ConfigError) as missing:
        parse_configured_certificates(external(enabled=True, cert_file="gone.pem", key_file="gone.key"), Entities(),
                                      Files(FILES))
    assert [p.path for p in missing.value.problems] == ["external_services.webhooks.mtls.cert_file"]
