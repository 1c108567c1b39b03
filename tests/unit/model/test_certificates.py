from __future__ import annotations

from typing import Any

import pytest
import trustme

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.certificates import (
    certificate_warnings,
    parse_ca_certificate_entity,
    parse_certificate_entity,
    redact_certificate,
)
from trio_gw.model.entities import CACertificate, Certificate
from trio_gw.pki.info import fingerprint_sha256
from trio_gw.pki.parse import parse_certificates, parse_private_key
from trio_gw.testing.pki import (
    EXPIRED_AT,
    FUTURE_START,
    Issued,
    ca_without_ca_flag,
    chain_of_depth,
    expired_leaf,
    issue,
    make_ca,
    make_key,
    not_yet_valid_leaf,
    rsa_and_ec_leaves,
)

NOW = 1_750_000_000  # 2025-06-15


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca()


@pytest.fixture(scope="module")
def pair(root: Issued) -> tuple[Issued, Issued]:
    return rsa_and_ec_leaves(root, "dual.example")


def _entity(leaf: Issued, **extra: Any) -> dict[str, Any]:
    return {"cert": leaf.chain_pem(), "key": leaf.key_pem(), **extra}


def _problems(raw: Any, parse: Any = parse_certificate_entity) -> set[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(raw, now=NOW, id="c1")
    return set(info.value.problems)


def _paths(raw: Any, parse: Any = parse_certificate_entity) -> set[str]:
    return {p.path for p in _problems(raw, parse)}


# --- Certificate: accepted ------------------------------------------------------------


def test_valid_certificate(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, _ = pair
    entity = parse_certificate_entity(_entity(rsa_leaf, tags=["edge"]), now=NOW, id="c1")
    assert isinstance(entity, Certificate)
    assert entity.id == "c1" and entity.tags == ("edge",)
    assert entity.cert_alt is None and entity.key_alt is None


def test_trustme_certificate() -> None:
    leaf = trustme.CA().issue_cert("api.example")
    raw = {
        "cert": leaf.cert_chain_pems[0].bytes().decode(),
        "key": leaf.private_key_pem.bytes().decode(),
    }
    assert parse_certificate_entity(raw, now=NOW, id="t").cert.startswith("-----BEGIN")


def test_stored_pem_is_normalised(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, _ = pair
    messy = {
        "cert": rsa_leaf.cert_pem().replace("\n", "\r\n\t"),
        "key": rsa_leaf.key_pem(fmt="traditional"),
    }
    entity = parse_certificate_entity(messy, now=NOW, id="c1")
    assert entity.cert == rsa_leaf.cert_pem()
    assert entity.key.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert entity.key == rsa_leaf.key_pem()


def test_chain_is_kept_leaf_first() -> None:
    leaf = chain_of_depth(2)
    entity = parse_certificate_entity(_entity(leaf), now=NOW, id="c1")
    assert [c.subject for c in parse_certificates(entity.cert)] == [
        leaf.cert.subject,
        leaf.parents[0].cert.subject,
        leaf.parents[1].cert.subject,
    ]


def test_rsa_and_ecdsa_alt_pair(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, ec_leaf = pair
    raw = _entity(rsa_leaf, cert_alt=ec_leaf.chain_pem(), key_alt=ec_leaf.key_pem())
    entity = parse_certificate_entity(raw, now=NOW, id="c1")
    assert entity.cert_alt == ec_leaf.cert_pem() and entity.key_alt == ec_leaf.key_pem()


def test_not_yet_valid_is_accepted_and_warned(root: Issued) -> None:
    leaf = not_yet_valid_leaf(root)
    entity = parse_certificate_entity(_entity(leaf), now=NOW, id="c1")
    assert certificate_warnings(entity.cert, now=NOW) == (
        "not valid before 2100-01-01T00:00:00Z",
    )


def test_ignored_caller_fields(pair: tuple[Issued, Issued]) -> None:
    raw = _entity(pair[0], id="other", snis=["a.example"], created_at=1, updated_at=2)
    assert parse_certificate_entity(raw, now=NOW, id="c1").id == "c1"


# --- Certificate: rejected ------------------------------------------------------------


def test_wrong_key(pair: tuple[Issued, Issued], root: Issued) -> None:
    rsa_leaf, _ = pair
    other = issue(root, "other.example", key_kind="rsa")
    assert _problems(_entity(rsa_leaf, key=other.key_pem())) == {
        Problem("key", "does not match the certificate in cert (its public key differs)")
    }


def test_key_of_an_intermediate_says_put_the_leaf_first() -> None:
    leaf = chain_of_depth(1)
    raw = {"cert": leaf.parents[0].cert_pem() + leaf.cert_pem(), "key": leaf.key_pem()}
    (problem,) = _problems(raw)
    assert problem.path == "key" and "put the leaf certificate first" in problem.message


def test_expired_leaf(root: Issued) -> None:
    assert _problems(_entity(expired_leaf(root))) == {
        Problem("cert", "certificate expired on 2024-01-01T00:00:00Z")
    }


def test_expiry_bound_is_inclusive(root: Issued) -> None:
    leaf = expired_leaf(root)
    parse_certificate_entity(_entity(leaf), now=EXPIRED_AT, id="c1")
    with pytest.raises(ConfigError):
        parse_certificate_entity(_entity(leaf), now=EXPIRED_AT + 1, id="c1")


def test_expired_trustme_leaf() -> None:
    import datetime

    leaf = trustme.CA().issue_cert(
        "old.example", not_after=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    )
    raw = {
        "cert": leaf.cert_chain_pems[0].bytes().decode(),
        "key": leaf.private_key_pem.bytes().decode(),
    }
    assert _paths(raw) == {"cert"}


def test_expired_intermediate_is_allowed(root: Issued) -> None:
    old = make_ca(issuer=root, not_after=EXPIRED_AT)
    leaf = issue(old, "x.example")
    parse_certificate_entity(_entity(leaf), now=NOW, id="c1")


def test_encrypted_key(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, _ = pair
    assert _problems(_entity(rsa_leaf, key=rsa_leaf.key_pem(password=b"pw"))) == {
        Problem("key", "key is encrypted and no password was given: trio-gw takes no passphrase; "
                       "remove it (openssl pkey -in KEY -out KEY)")
    }


def test_small_rsa_key_is_refused_with_its_size(root: Issued) -> None:
    leaf = issue(root, "legacy.example", key=make_key("rsa", rsa_bits=1024))
    assert _problems(_entity(leaf)) == {
        Problem("key", "RSA key of 1024 bits is too small: at least 2048 bits (OpenSSL security level 2 refuses it)")
    }


def test_2048_bit_rsa_key_is_accepted(root: Issued) -> None:
    leaf = issue(root, "modern.example", key=make_key("rsa", rsa_bits=2048))
    parse_certificate_entity(_entity(leaf), now=NOW, id="c1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, {Problem("cert", "required"), Problem("key", "required")}),
        ({"cert": 1, "key": ["x"]}, {Problem("cert", "must be a string (PEM)"),
                                     Problem("key", "must be a string (PEM)")}),
        ({"cert": "junk!", "key": "junk"}, {
            Problem("cert", "unparsable certificate: not PEM, DER or base64"),
            Problem("key", "unparsable key: no PEM private key found"),
        }),
    ],
)
def test_missing_or_malformed_fields(raw: dict[str, Any], expected: set[Problem]) -> None:
    assert _problems(raw) == expected


def test_not_an_object() -> None:
    assert _problems(["cert"]) == {Problem("", "must be an object")}


def test_unknown_field(pair: tuple[Issued, Issued]) -> None:
    assert _problems(_entity(pair[0], certificate="x")) == {Problem("certificate", "unknown field")}


def test_private_key_in_cert_field_is_refused_without_echo(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, _ = pair
    raw = _entity(rsa_leaf, cert=rsa_leaf.cert_pem() + rsa_leaf.key_pem())
    with pytest.raises(ConfigError) as info:
        parse_certificate_entity(raw, now=NOW, id="c1")
    assert set(info.value.problems) == {Problem("cert", "must not contain a private key")}
    assert "PRIVATE" not in str(info.value) and rsa_leaf.key_pem()[40:80] not in str(info.value)


@pytest.mark.parametrize("missing", ["cert_alt", "key_alt"])
def test_half_an_alt_pair(pair: tuple[Issued, Issued], missing: str) -> None:
    rsa_leaf, ec_leaf = pair
    alt = {"cert_alt": ec_leaf.chain_pem(), "key_alt": ec_leaf.key_pem()}
    present = ({"cert_alt", "key_alt"} - {missing}).pop()
    raw = _entity(rsa_leaf, **{present: alt[present]})
    assert _problems(raw) == {Problem(missing, f"required when {present} is given")}


def test_alt_pair_of_the_same_key_type(root: Issued) -> None:
    first, second = issue(root, "a.example"), issue(root, "a.example")
    raw = _entity(first, cert_alt=second.chain_pem(), key_alt=second.key_pem())
    assert _problems(raw) == {
        Problem("cert_alt", "must use a different key type than cert (both are ECDSA)")
    }


def test_alt_key_mismatch_and_expired_alt(pair: tuple[Issued, Issued], root: Issued) -> None:
    rsa_leaf, ec_leaf = pair
    old = expired_leaf(root)
    raw = _entity(rsa_leaf, cert_alt=old.chain_pem(), key_alt=ec_leaf.key_pem())
    assert _problems(raw) == {
        Problem("cert_alt", "certificate expired on 2024-01-01T00:00:00Z"),
        Problem("key_alt", "does not match the certificate in cert_alt (its public key differs)"),
    }


def test_all_problems_are_collected(root: Issued) -> None:
    old = expired_leaf(root)
    raw = {
        "cert": old.chain_pem(),
        "key": issue(root, "x").key_pem(),
        "cert_alt": "nope!",
        "tags": ["ok", 3],
        "extra": True,
    }
    assert _paths(raw) == {"cert", "key", "cert_alt", "key_alt", "tags[1]", "extra"}


def test_problems_prefix_for_the_loader(root: Issued) -> None:
    with pytest.raises(ConfigError) as info:
        parse_certificate_entity({"cert": "x!"}, now=NOW, id="c1")
    prefixed = info.value.prefixed("certificates[3]")
    assert {p.path for p in prefixed.problems} == {"certificates[3].cert", "certificates[3].key"}


def test_tags_must_be_a_list(pair: tuple[Issued, Issued]) -> None:
    assert _problems(_entity(pair[0], tags="edge")) == {
        Problem("tags", "must be an array of strings")
    }


# --- redaction ------------------------------------------------------------------------


def test_redact_certificate_drops_keys(pair: tuple[Issued, Issued]) -> None:
    rsa_leaf, ec_leaf = pair
    raw = _entity(rsa_leaf, cert_alt=ec_leaf.chain_pem(), key_alt=ec_leaf.key_pem())
    entity = parse_certificate_entity(raw, now=NOW, id="c1")
    shown = redact_certificate(entity)
    assert "PRIVATE" not in repr(shown)
    assert shown["has_key_alt"] is True and shown["cert"] == entity.cert
    assert set(shown) == {"id", "cert", "cert_alt", "has_key_alt", "tags", "created_at",
                          "updated_at"}


def test_certificate_warnings_near_expiry(root: Issued) -> None:
    leaf = issue(root, "soon.example", not_after=NOW + 12 * 86_400)
    assert certificate_warnings(leaf.cert_pem(), now=NOW) == (
        "expires in 12 days (2025-06-27T15:06:40Z)",
    )
    assert certificate_warnings(leaf.cert_pem(), now=NOW, warn_days=5) == ()
    assert certificate_warnings(expired_leaf(root).cert_pem(), now=NOW) == (
        "expired on 2024-01-01T00:00:00Z",
    )


# --- CA Certificate -------------------------------------------------------------------


def test_valid_ca_certificate(root: Issued) -> None:
    entity = parse_ca_certificate_entity({"cert": root.cert_pem(), "tags": ["t"]}, now=NOW, id="ca")
    assert isinstance(entity, CACertificate)
    assert entity.cert == root.cert_pem()
    assert entity.cert_digest == fingerprint_sha256(root.cert)
    assert entity.tags == ("t",)


def test_trustme_ca_certificate() -> None:
    ca = trustme.CA()
    entity = parse_ca_certificate_entity({"cert": ca.cert_pem.bytes().decode()}, now=NOW, id="ca")
    assert len(entity.cert_digest) == 64


@pytest.mark.parametrize(
    "spelling",
    [
        lambda d: d,
        lambda d: d.upper(),
        lambda d: ":".join(d[i : i + 2] for i in range(0, 64, 2)).upper(),  # openssl -fingerprint
        lambda d: "sha256:" + d,
    ],
)
def test_given_digest_matching(root: Issued, spelling: Any) -> None:
    digest = fingerprint_sha256(root.cert)
    raw = {"cert": root.cert_pem(), "cert_digest": spelling(digest)}
    assert parse_ca_certificate_entity(raw, now=NOW, id="ca").cert_digest == digest


def test_given_digest_disagrees(root: Issued) -> None:
    digest = fingerprint_sha256(root.cert)
    raw = {"cert": root.cert_pem(), "cert_digest": "00" * 32}
    assert _problems(raw, parse_ca_certificate_entity) == {
        Problem("cert_digest", f"does not match the certificate (its digest is {digest})")
    }


def test_intermediate_ca_is_accepted(root: Issued) -> None:
    intermediate = make_ca(issuer=root, common_name="intermediate")
    parse_ca_certificate_entity({"cert": intermediate.cert_pem()}, now=NOW, id="ca")


@pytest.mark.parametrize("basic_constraints", [False, True], ids=["absent", "ca-false"])
def test_not_a_ca(basic_constraints: bool) -> None:
    raw = {"cert": ca_without_ca_flag(basic_constraints=basic_constraints).cert_pem()}
    assert _problems(raw, parse_ca_certificate_entity) == {
        Problem("cert", "not a CA certificate: basicConstraints CA is false/absent")
    }


def test_leaf_is_not_a_ca(root: Issued) -> None:
    raw = {"cert": issue(root, "x.example").cert_pem()}
    assert _paths(raw, parse_ca_certificate_entity) == {"cert"}


def test_two_certificates(root: Issued) -> None:
    raw = {"cert": root.cert_pem() + make_ca().cert_pem()}
    assert _problems(raw, parse_ca_certificate_entity) == {
        Problem("cert", "expected exactly one certificate, found 2")
    }


def test_expired_ca() -> None:
    raw = {"cert": make_ca(not_before=0, not_after=EXPIRED_AT).cert_pem()}
    assert _problems(raw, parse_ca_certificate_entity) == {
        Problem("cert", "certificate expired on 2024-01-01T00:00:00Z")
    }


def test_not_yet_valid_ca_is_accepted() -> None:
    raw = {"cert": make_ca(not_before=FUTURE_START).cert_pem()}
    parse_ca_certificate_entity(raw, now=NOW, id="ca")


def test_ca_rejections_collected() -> None:
    raw = {"cert": ca_without_ca_flag().cert_pem(), "cert_digest": 5, "key": "x", "tags": [""]}
    assert _paths(raw, parse_ca_certificate_entity) == {"cert", "cert_digest", "key", "tags[0]"}


def test_ca_with_private_key_is_refused(root: Issued) -> None:
    raw = {"cert": root.cert_pem() + root.key_pem()}
    assert _problems(raw, parse_ca_certificate_entity) == {
        Problem("cert", "must not contain a private key")
    }


def test_ca_missing_cert() -> None:
    assert _problems({}, parse_ca_certificate_entity) == {Problem("cert", "required")}
    assert _problems("x", parse_ca_certificate_entity) == {Problem("", "must be an object")}


def test_normalised_key_parses_back(pair: tuple[Issued, Issued]) -> None:
    entity = parse_certificate_entity(_entity(pair[1]), now=NOW, id="c1")
    assert parse_private_key(entity.key).private_numbers() == pair[1].key.private_numbers()  # type: ignore[union-attr]


def test_ca_certificate_with_attached_crls() -> None:
    from trio_gw.testing.pki import crl_pem, issue, make_ca

    ca, other = make_ca(), make_ca(common_name="another CA")
    leaf = issue(ca, "client.example")
    good = crl_pem(ca, [leaf])
    entity = parse_ca_certificate_entity({"cert": ca.cert_pem(), "crls": [good]}, now=NOW, id="ca")
    assert len(entity.crls) == 1 and "BEGIN X509 CRL" in entity.crls[0]
    with pytest.raises(ConfigError) as info:
        parse_ca_certificate_entity({"cert": ca.cert_pem(), "crls": [crl_pem(other), "garbage"]}, now=NOW, id="ca")
    assert [str(p) for p in info.value.problems] == [
        "crls[0]: was not issued by this CA (issuer name differs)",
        "crls[1]: not a PEM CRL (-----BEGIN X509 CRL-----)",
    ]
