"""The intermediates cache for resumed sessions: rebuilds verified chains by issuer name, bounded."""

from __future__ import annotations

from trio_gw.testing import pki
from trio_gw.tls.resumed_chain import MAX_DEPTH, MAX_PER_SUBJECT, IntermediateCache


def test_rebuilds_the_chain_above_a_leaf_nearest_first() -> None:
    root = pki.make_ca(common_name="root")
    inter1 = pki.make_ca(issuer=root, common_name="i1")
    inter2 = pki.make_ca(issuer=inter1, common_name="i2")
    leaf = pki.issue(inter2, "a.example")
    cache = IntermediateCache()
    cache.remember([inter2.cert_der(), inter1.cert_der(), root.cert_der()])
    assert cache.chain_for(leaf.cert_der()) == (inter2.cert_der(), inter1.cert_der(), root.cert_der())
    # another leaf of the same issuing CA, never seen itself
    assert cache.chain_for(pki.issue(inter2, "b.example").cert_der())[0] == inter2.cert_der()


def test_unknown_issuer_and_garbage_give_nothing() -> None:
    cache = IntermediateCache()
    cache.remember([b"not a certificate"])
    assert cache.chain_for(pki.issue(pki.make_ca(), "a.example").cert_der()) == ()
    assert cache.chain_for(b"\x30\x00") == ()


def test_a_self_signed_root_ends_the_walk() -> None:
    root = pki.make_ca()
    cache = IntermediateCache()
    cache.remember([root.cert_der(), root.cert_der()])
    assert cache.chain_for(pki.issue(root, "a.example").cert_der()) == (root.cert_der(),)


def test_rollover_keeps_several_certificates_per_name_and_is_bounded() -> None:
    root = pki.make_ca()
    same_name = [pki.make_ca(issuer=root, common_name="issuing") for _ in range(MAX_PER_SUBJECT + 2)]
    cache = IntermediateCache()
    cache.remember([c.cert_der() for c in same_name])
    found = cache.chain_for(pki.issue(same_name[-1], "a.example").cert_der())
    assert len(found) == MAX_PER_SUBJECT
    assert found[0] == same_name[-1].cert_der()  # newest first


def test_least_recently_used_names_are_dropped() -> None:
    cache = IntermediateCache(max_subjects=2)
    cas = [pki.make_ca(common_name=f"ca{i}") for i in range(3)]
    cache.remember([cas[0].cert_der(), cas[1].cert_der()])
    assert cache.chain_for(pki.issue(cas[0], "a.example").cert_der())  # ca0 now most recent
    cache.remember([cas[2].cert_der()])
    assert cache.chain_for(pki.issue(cas[1], "a.example").cert_der()) == ()
    assert cache.chain_for(pki.issue(cas[0], "a.example").cert_der()) == (cas[0].cert_der(),)


def test_depth_is_bounded() -> None:
    ca = pki.make_ca(common_name="root")
    chain = [ca]
    for level in range(MAX_DEPTH + 3):
        ca = pki.make_ca(issuer=ca, common_name=f"level {level}")
        chain.append(ca)
    cache = IntermediateCache()
    cache.remember([c.cert_der() for c in chain])
    assert len(cache.chain_for(pki.issue(ca, "a.example").cert_der())) == MAX_DEPTH


def test_knows_what_it_remembers_and_forgets_what_it_dropped() -> None:
    root = pki.make_ca()
    first, second = (pki.make_ca(issuer=root, common_name=f"inter {i}") for i in range(2))
    cache = IntermediateCache(max_subjects=1)
    der = first.cert_der()
    assert not cache.knows(der)
    cache.remember([der])
    assert cache.knows(der)
    cache.remember([second.cert_der()])  # evicts the first name
    assert not cache.knows(der)
    assert not cache.knows(b"not a certificate")
