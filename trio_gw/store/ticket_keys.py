"""Session-ticket key rings at rest: sealed like private keys when a secret is configured.

A ring (``trio_gw.tls.ticket_keys.encode_ring``) is as secret as a private key:
whoever has it decrypts every recorded session resumed under it.  With
``private_key_encryption_secret`` it is sealed by the datastore's
:class:`~trio_gw.store.sealing.Sealer` (AES-256-GCM, bound to the kind
``ticket_keys``, id ``ring``, field ``keys`` — a blob moved elsewhere does not
open); without one it is stored base64-encoded, as private keys are then.  The
stored text is one value (a ``meta`` row, written with compare-and-swap so that
two nodes rotating at once do not both win).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from trio_gw.store.base import SealedKeyError, StoreError
from trio_gw.store.sealing import Sealer, is_sealed
from trio_gw.tls.ticket_keys import TicketKeyRing, decode_ring, encode_ring

__all__ = ["META_KEY", "open_ticket_keys", "seal_ticket_keys"]

#: The ``meta`` key holding the ring.
META_KEY: Final = "ticket_keys"
_PLAIN: Final = "tgw-ring:1:"
_AAD: Final = {"kind": "ticket_keys", "entity_id": "ring", "field": "keys"}


def seal_ticket_keys(ring: TicketKeyRing, sealer: Sealer | None) -> str:
    """The ring as stored text: sealed when the datastore has a secret.

    Args:
        ring: the ring to store.
        sealer: the datastore's sealer, or ``None`` without ``private_key_encryption_secret``.

    Returns:
        ``tgw-sealed:1:...`` or ``tgw-ring:1:<base64>``.
    """
    text = base64.b64encode(encode_ring(ring)).decode("ascii")
    return _PLAIN + text if sealer is None else sealer.seal(text, **_AAD)


def open_ticket_keys(stored: str, sealer: Sealer | None) -> TicketKeyRing:
    """Read a stored ring.

    Args:
        stored: what :func:`seal_ticket_keys` gave.
        sealer: the datastore's sealer, or ``None``.

    Returns:
        The ring.

    Raises:
        SealedKeyError: the ring is sealed and there is no secret, or it does not open.
        StoreError: not a stored ring.
    """
    if is_sealed(stored):
        if sealer is None:
            raise SealedKeyError("the session-ticket keys are sealed; set private_key_encryption_secret to open them")
        text = sealer.unseal(stored, **_AAD)
    elif stored.startswith(_PLAIN):
        text = stored[len(_PLAIN) :]
    else:
        raise StoreError("the stored session-ticket keys are not in a format this trio-gw knows")
    try:
        return decode_ring(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise StoreError(f"the stored session-ticket keys cannot be read: {exc}") from exc
