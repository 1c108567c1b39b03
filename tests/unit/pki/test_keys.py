from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from trio_gw.errors import CertificateError
from trio_gw.pki.keys import (
    KEY_TYPE_DISPLAY,
    key_matches_certificate,
    key_size,
    key_type,
    public_key_der,
)
from trio_gw.testing.pki import KEY_KINDS, Issued, issue, make_ca, make_key


@pytest.fixture(scope="module")
def leaves() -> dict[str, Issued]:
    root = make_ca()
    return {kind: issue(root, f"{kind}.example", key_kind=kind) for kind in KEY_KINDS}


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_key_matches_its_own_certificate(leaves: dict[str, Issued], kind: str) -> None:
    assert key_matches_certificate(leaves[kind].key, leaves[kind].cert)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_other_key_of_same_type_does_not_match(leaves: dict[str, Issued], kind: str) -> None:
    assert not key_matches_certificate(make_key(kind), leaves[kind].cert)


def test_key_of_other_type_does_not_match(leaves: dict[str, Issued]) -> None:
    assert not key_matches_certificate(leaves["rsa"].key, leaves["ec"].cert)
    assert not key_matches_certificate(leaves["ed25519"].key, leaves["ed448"].cert)


def test_issuer_key_does_not_match_leaf(leaves: dict[str, Issued]) -> None:
    leaf = leaves["ec"]
    assert not key_matches_certificate(leaf.root.key, leaf.cert)


@pytest.mark.parametrize(
    ("kind", "name", "size"),
    [("ec", "ec", 256), ("rsa", "rsa", 2048), ("ed25519", "ed25519", 256), ("ed448", "ed448", 456)],
)
def test_key_type_and_size(kind: str, name: str, size: int) -> None:
    key = make_key(kind)
    assert key_type(key) == key_type(key.public_key()) == name
    assert key_size(key) == key_size(key.public_key()) == size
    assert name in KEY_TYPE_DISPLAY


def test_x25519_is_named_but_not_for_certificates() -> None:
    key = x25519.X25519PrivateKey.generate()
    assert key_type(key) == "x25519"
    assert key_size(key) == 256


def test_public_key_der_same_for_private_and_public() -> None:
    key = make_key("ec")
    assert public_key_der(key) == public_key_der(key.public_key())


@pytest.mark.parametrize("thing", [None, "key", object()])
def test_foreign_objects_are_rejected(thing: object) -> None:
    with pytest.raises(CertificateError, match="unsupported key type"):
        key_type(thing)  # type: ignore[arg-type]
    with pytest.raises(CertificateError, match="unsupported key type"):
        key_size(thing)  # type: ignore[arg-type]


def test_post_quantum_keys_are_named() -> None:
    mldsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.mldsa")
    names = [n for n in dir(mldsa) if n.upper() == "MLDSA44PRIVATEKEY"]
    if not names:
        pytest.skip("this cryptography release has no ML-DSA-44")
    key = getattr(mldsa, names[0]).generate()
    assert key_type(key) == key_type(key.public_key()) == "ml-dsa-44"
    assert key_size(key) == 8 * 1312  # FIPS 204 public key size
    assert public_key_der(key) == public_key_der(key.public_key())
