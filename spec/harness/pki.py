"""Generate a scenario's certificates with trustme into its temporary directory.

Nothing here is committed: every run makes fresh keys.  Each entry of a
scenario's ``pki`` table becomes files and placeholders:

=============================  ==================================================
``{{pki.NAME.cert}}``          path of the certificate alone (PEM)
``{{pki.NAME.key}}``           path of the private key (PEM; leaves and CAs)
``{{pki.NAME.chain}}``         path of the certificate followed by its intermediates
``{{pki.NAME.pem}}``           path of chain + key in one file (curl ``--cert``)
``{{pki.NAME.cert_pem}}``      the certificate's PEM text (for decK ``cert:``)
``{{pki.NAME.chain_pem}}``     the chain's PEM text
``{{pki.NAME.key_pem}}``       the key's PEM text (for decK ``key:``)
``{{pki.NAME.subject}}``       RFC 4514 subject, e.g. ``CN=api.example``
``{{pki.NAME.sha256}}``        hex SHA-256 fingerprint of the DER certificate
=============================  ==================================================
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spec.harness.placeholders import Context

_KEY_TYPES = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


class PkiError(Exception):
    """A ``pki`` table that cannot be generated (unknown issuer, cycle, leaf as issuer)."""


@dataclass(frozen=True)
class Material:
    """One generated certificate: PEM texts and where they were written."""

    name: str
    cert_pem: str
    chain_pem: str
    key_pem: str
    is_ca: bool
    ca: trustme.CA | None  # set for CAs, to issue from


def _order(entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names in an order where every issuer comes before what it issues."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise PkiError(f"pki.{name}: issuer cycle")
        entry = entries.get(name)
        if entry is None:
            raise PkiError(f"unknown issuer {name!r}")
        visiting.add(name)
        issuer = entry.get("issuer")
        if issuer is not None:
            if entries.get(issuer, {}).get("kind") != "ca":
                raise PkiError(f"pki.{name}.issuer: {issuer!r} is not a CA of this scenario")
            visit(issuer)
        visiting.discard(name)
        done.append(name)

    for name in entries:
        visit(name)
    return done


def _make_ca(entry: Mapping[str, Any], issuer: trustme.CA | None) -> trustme.CA:
    key_type = _KEY_TYPES[entry.get("key", "ecdsa")]
    if issuer is None:
        return trustme.CA(
            organization_name=entry.get("o"),
            organization_unit_name=entry.get("ou"),
            key_type=key_type,
        )
    return issuer.create_child_ca(key_type=key_type)


def _make_leaf(entry: Mapping[str, Any], issuer: trustme.CA, now: datetime.datetime) -> trustme.LeafCert:
    days = datetime.timedelta(days=1)
    not_before = now + entry["not_before_days"] * days if "not_before_days" in entry else None
    not_after = now + entry["not_after_days"] * days if "not_after_days" in entry else None
    if not_before is None and not_after is not None and not_after <= now:
        not_before = not_after - 30 * days  # an expired leaf must have been valid once
    return issuer.issue_cert(
        *entry.get("sans", []),
        common_name=entry.get("cn"),
        organization_name=entry.get("o"),
        organization_unit_name=entry.get("ou"),
        not_before=not_before,
        not_after=not_after,
        key_type=_KEY_TYPES[entry.get("key", "ecdsa")],
    )


def _drop_empty_san(cert_pem: str, issuer: trustme.CA) -> str:
    """Re-sign a CN-only leaf without trustme's empty (critical) subjectAltName.

    An empty SAN extension is invalid (RFC 5280 §4.2.1.6) and strict verifiers
    reject the certificate outright, so a "CN and no SANs" leaf must have no
    SAN extension at all to test CN-based name checks.
    """
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if ext.oid != x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            builder = builder.add_extension(ext.value, ext.critical)
    key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), password=None)
    algorithm = cert.signature_hash_algorithm
    signed = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def generate_pki(entries: Mapping[str, Mapping[str, Any]], directory: Path, context: Context) -> dict[str, Material]:
    """Generate every entry, write its files and define its placeholders.

    Args:
        entries: the scenario's ``pki`` table (already validated by the schema).
        directory: where to write; created if missing.
        context: receives the ``pki.NAME.*`` placeholders.

    Returns:
        The generated material by name.

    Raises:
        PkiError: an issuer is unknown, not a CA, or part of a cycle; a leaf has no issuer.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    made: dict[str, Material] = {}
    for name in _order(entries):
        entry = entries[name]
        issuer_name = entry.get("issuer")
        issuer = made[issuer_name].ca if issuer_name else None
        if entry["kind"] == "ca":
            ca = _make_ca(entry, issuer)
            cert_pem = ca.cert_pem.bytes().decode()
            chain_pem = cert_pem
            key_pem = ca.private_key_pem.bytes().decode()
            made[name] = Material(name, cert_pem, chain_pem, key_pem, True, ca)
        else:
            if issuer is None:
                raise PkiError(f"pki.{name}: a leaf needs an issuer")
            leaf = _make_leaf(entry, issuer, now)
            pems = [blob.bytes().decode() for blob in leaf.cert_chain_pems]
            if not entry.get("sans"):
                pems[0] = _drop_empty_san(pems[0], issuer)
            # trustme's chain ends with the intermediates, never the root.
            made[name] = Material(name, pems[0], "".join(pems), leaf.private_key_pem.bytes().decode(), False, None)
        _write(made[name], directory, context)
    return made


def _write(material: Material, directory: Path, context: Context) -> None:
    base = directory / material.name
    files = {
        "cert": (f"{base}.crt", material.cert_pem),
        "chain": (f"{base}.chain.crt", material.chain_pem),
        "key": (f"{base}.key", material.key_pem),
        "pem": (f"{base}.pem", material.chain_pem + material.key_pem),
    }
    for placeholder, (path, text) in files.items():
        Path(path).write_text(text)
        Path(path).chmod(0o600)
        context.set(f"pki.{material.name}.{placeholder}", path)
    cert = x509.load_pem_x509_certificate(material.cert_pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    context.set(f"pki.{material.name}.cert_pem", material.cert_pem)
    context.set(f"pki.{material.name}.chain_pem", material.chain_pem)
    context.set(f"pki.{material.name}.key_pem", material.key_pem)
    context.set(f"pki.{material.name}.subject", cert.subject.rfc4514_string())
    context.set(f"pki.{material.name}.sha256", hashlib.sha256(der).hexdigest())
