"""The ChallengeStore: answers shared by the cluster, mirrored without losing local changes; wanted names."""

from __future__ import annotations

from trio_gw.net.acme_challenges import MAX_WANTED, ChallengeStore

TOKEN = "T" * 43


class Share:
    propagation_delay = 0.0

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    def share(self, name: str, key_authorization: str) -> None:
        self.rows[name] = key_authorization

    def unshare(self, name: str) -> None:
        self.rows.pop(name, None)


def test_published_answers_are_shared_and_withdrawn() -> None:
    share = Share()
    store = ChallengeStore(share)
    store.publish_http01(TOKEN, "key.auth")
    store.publish_tls_alpn01("a.example", "key.auth2")
    assert share.rows == {f"http-01:{TOKEN}": "key.auth", "tls-alpn-01:a.example": "key.auth2"}
    assert store.http01_response(f"/.well-known/acme-challenge/{TOKEN}") == b"key.auth"
    store.withdraw_http01(TOKEN)
    store.withdraw_tls_alpn01("A.example")
    assert share.rows == {} and store.pending() == (0, 0)


def test_another_nodes_answers_are_mirrored() -> None:
    node = ChallengeStore(Share())
    applied = node.mirror({f"http-01:{TOKEN}": "theirs", "tls-alpn-01:b.example": "k"}, revision=node.revision)
    assert applied and node.pending() == (1, 1)
    assert node.http01_response(f"/.well-known/acme-challenge/{TOKEN}") == b"theirs"
    assert node.mirror({}, revision=node.revision) and node.pending() == (0, 0)  # withdrawn there: gone here


def test_a_read_older_than_a_local_change_is_not_applied() -> None:
    share = Share()
    node = ChallengeStore(share)
    before = node.revision
    node.publish_http01(TOKEN, "mine")  # the datastore read below predates this
    assert not node.mirror({}, revision=before)
    assert node.http01_response(f"/.well-known/acme-challenge/{TOKEN}") == b"mine"
    assert node.mirror(dict(share.rows), revision=node.revision) and node.pending() == (1, 0)


def test_wanted_names_are_bounded_and_taken_once() -> None:
    woken: list[int] = []
    store = ChallengeStore()
    store.on_want = lambda: woken.append(1)
    store.want_certificate("New.Example.")
    store.want_certificate("new.example")
    assert store.take_wanted() == ("new.example",) and woken == [1] and store.take_wanted() == ()
    for i in range(MAX_WANTED + 10):
        store.want_certificate(f"n{i}.example")
    assert len(store.take_wanted()) == MAX_WANTED
