"""The intermediates above a client certificate on a resumed TLS session (pure).

Theory of operation
-------------------
A session ticket (or cached session) keeps the client's leaf but not the CA
certificates it sent after it, so on a resumed session OpenSSL reports no
chain.  The client-certificate plugins verify the chain on *every* request (a
resumed session must not bypass a changed policy, docs/tls-stack.md §10), so a
route trusting only the root refused, with ``unknown_ca``, a client whose
certificate an intermediate issued, although the full handshake a moment
before was accepted.

:class:`IntermediateCache` gives them back: the IO layer calls
:meth:`~IntermediateCache.remember` with the CA certificates of the chain the
listener *verified* in each full handshake, and :meth:`~IntermediateCache.chain_for`
on a resumed session rebuilds the chain above the leaf, by issuer name.
What it returns is untrusted input like any chain a client sends: the plugins
still verify it against their own anchors, so the cache can restore what a
verified handshake showed but never add trust.  It is bounded: at most
``max_subjects`` names (least recently used dropped), :data:`MAX_PER_SUBJECT`
certificates per name (CA key rollover), :data:`MAX_DEPTH` levels.

The cache mutates (from the Trio loop only) but decides nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from cryptography import x509

__all__ = ["DEFAULT_MAX_SUBJECTS", "MAX_DEPTH", "MAX_PER_SUBJECT", "IntermediateCache"]

#: Distinct CA names remembered; real deployments have a handful of client CAs.
DEFAULT_MAX_SUBJECTS: Final = 1024
#: Certificates kept per subject name (an old and a new key during a CA rollover, and spares).
MAX_PER_SUBJECT: Final = 4
#: Levels walked above the leaf (OpenSSL's default verify depth is 100; real client chains are short).
MAX_DEPTH: Final = 8


class IntermediateCache:
    """CA certificates seen in verified client chains, by subject (see the module docstring)."""

    def __init__(self, max_subjects: int = DEFAULT_MAX_SUBJECTS) -> None:
        self.max_subjects = max_subjects
        self._by_subject: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._issuer: dict[bytes, bytes] = {}  # certificate DER -> its issuer name (DER), for what is kept

    def remember(self, ca_certificates_der: Sequence[bytes]) -> None:
        """Keep the CA certificates of a chain the listener verified (leaf excluded).

        Args:
            ca_certificates_der: DER certificates; one that does not parse is skipped
                (it cannot be an issuer of anything the plugins accept).
        """
        for der in ca_certificates_der:
            if der in self._issuer:
                continue
            try:
                cert = x509.load_der_x509_certificate(der)
                subject, issuer = cert.subject.public_bytes(), cert.issuer.public_bytes()
            except ValueError:
                continue
            kept = (der, *self._by_subject.pop(subject, ()))
            for dropped in kept[MAX_PER_SUBJECT:]:
                self._issuer.pop(dropped, None)
            self._by_subject[subject] = kept[:MAX_PER_SUBJECT]
            self._issuer[der] = issuer
            while len(self._by_subject) > self.max_subjects:
                _, evicted = self._by_subject.popitem(last=False)
                for old in evicted:
                    self._issuer.pop(old, None)

    def knows(self, der: bytes) -> bool:
        """Whether ``der`` is remembered (a worker shares only what the other workers lack)."""
        return der in self._issuer

    def chain_for(self, leaf_der: bytes) -> tuple[bytes, ...]:
        """The remembered CA certificates above ``leaf_der``, nearest first.

        Returns:
            Certificates whose subject is the leaf's issuer, then their issuers'
            and so on (``()`` when nothing is known or the leaf does not parse).
        """
        try:
            wanted = [x509.load_der_x509_certificate(leaf_der).issuer.public_bytes()]
        except ValueError:
            return ()
        found: list[bytes] = []
        for _ in range(MAX_DEPTH):
            above = [der for name in wanted for der in self._by_subject.get(name, ()) if der not in found]
            if not above:
                break
            for name in wanted:
                if name in self._by_subject:
                    self._by_subject.move_to_end(name)
            found.extend(above)
            wanted = [self._issuer[der] for der in above]
        return tuple(found)
