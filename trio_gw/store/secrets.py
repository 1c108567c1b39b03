"""Node secrets kept beside the configuration (the ACME account key): sealed like private keys.

A secret is not an entity -- no Admin API shows it, no configuration change
carries it -- but it is as sensitive as a private key: whoever has the ACME
account key can revoke every certificate the account obtained.  It is stored
as one ``meta`` row (``secret:<name>``).  With ``private_key_encryption_secret``
it is sealed by the datastore's :class:`~trio_gw.store.sealing.Sealer`
(AES-256-GCM, bound to the kind ``meta``, id ``<name>``, field ``value``: a blob
moved to another row does not open); without one it is stored base64-encoded,
as private keys are then.  A reseal re-encrypts secrets with the keys.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from trio_gw.store.base import SealedKeyError, StoreError
from trio_gw.store.sealing import Sealer, is_sealed

__all__ = ["SECRET_PREFIX", "open_secret", "seal_secret"]

#: ``meta`` keys of secrets start with this.
SECRET_PREFIX: Final = "secret:"
_PLAIN: Final = "tgw-secret:1:"


def _aad(name: str) -> dict[str, str]:
    return {"kind": "meta", "entity_id": name, "field": "value"}


def seal_secret(value: str, sealer: Sealer | None, name: str) -> str:
    """The secret as stored: sealed when the datastore has a secret, else ``tgw-secret:1:<base64>``."""
    if sealer is None:
        return _PLAIN + base64.b64encode(value.encode()).decode("ascii")
    return sealer.seal(value, **_aad(name))


def open_secret(stored: str, sealer: Sealer | None, name: str) -> str:
    """Read a stored secret.

    Raises:
        SealedKeyError: it is sealed and there is no secret, or it does not open.
        StoreError: not a stored secret.
    """
    if is_sealed(stored):
        if sealer is None:
            raise SealedKeyError(f"the node secret {name!r} is sealed; set private_key_encryption_secret to open it")
        return sealer.unseal(stored, **_aad(name))
    if not stored.startswith(_PLAIN):
        raise StoreError(f"the stored node secret {name!r} is not in a format this trio-gw knows")
    try:
        return base64.b64decode(stored[len(_PLAIN):].encode("ascii"), validate=True).decode()
    except (ValueError, binascii.Error) as exc:
        raise StoreError(f"the stored node secret {name!r} cannot be read: {exc}") from exc
