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
``{{pki.NAME.der_base64}}``    base64 of the DER certificate (``Client-Cert: :…:``)
``{{pki.NAME.pem_urlencoded}}``  the certificate's PEM, URL-encoded (nginx
                               ``$ssl_client_escaped_cert``, Envoy XFCC ``Cert``)
``{{pki.NAME.crl_url}}``       a CA with ``crl = true``: where its CRL is served
``{{pki.NAME.ocsp_url}}``      a CA with ``ocsp``: its OCSP responder
``{{pki.NAME.ocsp_response}}`` a leaf of an ``ocsp`` CA: a DER file holding the
                               responder's signed answer about it (for
                               ``ssl_stapling_file``)
=============================  ==================================================

A CA with ``ocsp = true`` runs an OCSP responder
(:class:`~trio_gw.testing.ocsp_responder.OcspResponder`: cryptography's
``OCSPResponseBuilder`` behind an HTTP server on 127.0.0.1, port 0, signing
with the CA itself); the leaves it issues name it in their AIA extension and
it answers ``ocsp_status`` about each (``good`` by default, ``revoked``,
``unknown``).  ``ocsp = "down"`` makes the responder drop every connection
unanswered.  A leaf with ``must_staple = true`` carries the TLS Feature
``status_request`` (RFC 7633).

A leaf with ``self_signed = true`` has no issuer.  A CA with ``crl = true``
publishes a CRL over HTTP (:class:`CrlServer`, 127.0.0.1, port 0, started
before the leaves are made so they can name it in ``cRLDistributionPoints``);
the leaves it issues with ``revoked = true`` are on it.  With ``crl = "https"``
the CRL is served over TLS instead, on a port of its own, with the leaf named
by ``crl_tls`` (issued by another CA of the scenario: the gateway trusts it only
if told to, which is what ``lua_ssl_trusted_certificate`` scenarios need); the
URL is ``https://127.0.0.1:PORT/NAME.crl``, so that leaf needs the SAN
``127.0.0.1``.

An entry with ``openssl = [[ARGS...], ...]`` is made by the openssl command
line instead of trustme, as a user following a product's documentation would:
each command runs as ``openssl ARGS`` in ``{{dir}}/pki/NAME/`` (in order, 60 s
at most each), and ``cert_file``/``key_file`` name the files it leaves there
(default ``cert.pem``/``key.pem``).  The files are used as written — an
encrypted or 1024-bit key stays so — and give the same placeholders.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spec.harness.placeholders import Context
from trio_gw.testing.ocsp_responder import OcspResponder, ocsp_response_der
from trio_gw.testing.pki import Issued, build_certificate

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


def _cryptography_leaf(
    entry: Mapping[str, Any], issuer: trustme.CA, now: datetime.datetime, crl_url: str | None,
    ocsp_url: str | None = None,
) -> tuple[str, str, str]:
    """A leaf trustme cannot make, built with cryptography: ``(cert_pem, chain_pem, key_pem)``.

    A "CN and no SANs" leaf must have no subjectAltName extension at all to test
    CN-based name checks (an empty one is invalid, RFC 5280 §4.2.1.6, and
    cryptography 51 refuses to build the empty one trustme 1.2 asks for); a leaf
    of a CA with a CRL names it in ``cRLDistributionPoints``; a leaf of a CA with an
    OCSP responder names it in its AIA (and may be must-staple).
    """
    days = datetime.timedelta(days=1)
    not_before = now - days
    not_after = now + 365 * days
    if "not_before_days" in entry:
        not_before = now + entry["not_before_days"] * days
    if "not_after_days" in entry:
        not_after = now + entry["not_after_days"] * days
        if "not_before_days" not in entry and not_after <= now:
            not_before = not_after - 30 * days  # an expired leaf must have been valid once
    sans: list[str] = list(entry.get("sans", []))
    ips = [n for n in sans if _is_ip(n)]
    emails = [n for n in sans if "@" in n and n not in ips]
    uris = [n for n in sans if "://" in n and n not in ips]
    dns = [n for n in sans if n not in (*ips, *emails, *uris)]
    leaf = build_certificate(
        issuer=Issued.from_trustme(issuer),
        key_kind={"ecdsa": "ec", "rsa": "rsa"}[entry.get("key", "ecdsa")],
        common_name=entry.get("cn"),
        organization_name=entry.get("o"),
        organizational_unit_name=entry.get("ou"),
        dns_names=dns, ip_addresses=ips, emails=emails, uris=uris,
        not_before=int(not_before.timestamp()),
        not_after=int(not_after.timestamp()),
        crl_urls=[crl_url] if crl_url else (),
        ocsp_urls=[ocsp_url] if ocsp_url else (),
        must_staple=bool(entry.get("must_staple")),
    )
    return leaf.cert_pem(), leaf.chain_pem(), leaf.key_pem()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: Deadline of one ``openssl`` command of a pki entry (a 4096-bit RSA key takes a second or two).
OPENSSL_TIMEOUT = 60.0


def _openssl_material(name: str, entry: Mapping[str, Any], directory: Path) -> Material:
    """Run the entry's openssl commands in ``directory/NAME`` and read the files they made."""
    workdir = directory / name
    workdir.mkdir(parents=True, exist_ok=True)
    for i, args in enumerate(entry["openssl"]):
        try:
            done = subprocess.run(["openssl", *args], cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=OPENSSL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PkiError(f"pki.{name}.openssl[{i}]: {exc}") from exc
        if done.returncode != 0:
            raise PkiError(f"pki.{name}.openssl[{i}]: openssl {' '.join(args)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    texts = []
    for key, default in (("cert_file", "cert.pem"), ("key_file", "key.pem")):
        path = workdir / entry.get(key, default)
        try:
            texts.append(path.read_text())
        except OSError as exc:
            raise PkiError(f"pki.{name}.{key}: the openssl commands left no {path.name} ({exc.strerror})") from exc
    cert_pem, key_pem = texts
    return Material(name, cert_pem, cert_pem, key_pem, entry["kind"] == "ca", None)


def generate_pki(
    entries: Mapping[str, Mapping[str, Any]], directory: Path, context: Context, crls: CrlServer | None = None,
    ocsp: OcspServers | None = None,
) -> dict[str, Material]:
    """Generate every entry, write its files and define its placeholders.

    Args:
        entries: the scenario's ``pki`` table (already validated by the schema).
        directory: where to write; created if missing.
        context: receives the ``pki.NAME.*`` placeholders.
        crls: serves the CRLs of CAs with ``crl = true`` (required when there is one;
            the caller starts it before and stops it after the scenario).
        ocsp: runs the OCSP responders of CAs with ``ocsp`` (required when there is one;
            the caller stops them after the scenario).

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
        if "openssl" in entry:
            made[name] = _openssl_material(name, entry, directory)
        elif entry["kind"] == "ca":
            ca = _make_ca(entry, issuer)
            cert_pem = ca.cert_pem.bytes().decode()
            chain_pem = cert_pem
            key_pem = ca.private_key_pem.bytes().decode()
            made[name] = Material(name, cert_pem, chain_pem, key_pem, True, ca)
            if entry.get("crl"):
                if crls is None:
                    raise PkiError(f"pki.{name}.crl: no CRL server")
                if entry["crl"] == "https":
                    crls.use_https(name)
                context.set(f"pki.{name}.crl_url", crls.url(name))
            if entry.get("ocsp"):
                if ocsp is None:
                    raise PkiError(f"pki.{name}.ocsp: no OCSP responders")
                context.set(f"pki.{name}.ocsp_url", ocsp.start(name, ca, down=entry["ocsp"] == "down"))
        elif entry.get("self_signed"):
            made[name] = _self_signed_leaf(name, entry, now)
        else:
            if issuer is None or issuer_name is None:
                raise PkiError(f"pki.{name}: a leaf needs an issuer")
            crl_url = crls.url(issuer_name) if crls is not None and entries[issuer_name].get("crl") else None
            ocsp_url = ocsp.url(issuer_name) if ocsp is not None and entries[issuer_name].get("ocsp") else None
            if not entry.get("sans") or crl_url is not None or ocsp_url is not None or entry.get("must_staple"):
                cert_pem, chain_pem, key_pem = _cryptography_leaf(entry, issuer, now, crl_url, ocsp_url)
            else:
                leaf = _make_leaf(entry, issuer, now)
                pems = [blob.bytes().decode() for blob in leaf.cert_chain_pems]
                # trustme's chain ends with the intermediates, never the root.
                cert_pem, chain_pem, key_pem = pems[0], "".join(pems), leaf.private_key_pem.bytes().decode()
            if entry.get("revoked") and crls is not None:
                crls.revoke(issuer_name, x509.load_pem_x509_certificate(cert_pem.encode()).serial_number)
            made[name] = Material(name, cert_pem, chain_pem, key_pem, False, None)
            if ocsp_url is not None and ocsp is not None:
                response = ocsp.answer(issuer_name, name, cert_pem, entry.get("ocsp_status", "good"), directory)
                context.set(f"pki.{name}.ocsp_response", str(response))
        _write(made[name], directory, context)
    if crls is not None:
        for name, entry in entries.items():
            if entry.get("crl"):
                crls.publish(name, made[name].ca)  # type: ignore[arg-type]
            if entry.get("crl") == "https":
                server = made.get(entry.get("crl_tls", ""))
                if server is None or server.is_ca:
                    raise PkiError(f"pki.{name}.crl_tls: a leaf of this scenario serves an https CRL")
                crls.serve_tls(name, server, directory)
    return made


def _self_signed_leaf(name: str, entry: Mapping[str, Any], now: datetime.datetime) -> Material:
    """A self-signed end-entity certificate (``CA:FALSE``, clientAuth and serverAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, entry.get("cn") or name)])
    days = datetime.timedelta(days=1)
    sans = [x509.DNSName(n) for n in entry.get("sans", [])]
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + entry.get("not_before_days", -1) * days)
        .not_valid_after(now + entry.get("not_after_days", 365) * days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    cert_pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return Material(name, cert_pem, cert_pem, key_pem, False, None)


class _TlsHttpServer(http.server.ThreadingHTTPServer):
    """An HTTP server whose connections are wrapped in TLS in their own thread, once a context is set.

    The socket is bound first (the port goes into the CRL URL of leaves made
    before the serving leaf may exist); a connection before :attr:`ssl_context`
    is set is closed.
    """

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.ssl_context
        if context is None or not isinstance(request, socket.socket):
            return
        request.settimeout(10)
        try:
            conn = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate: what https CRL scenarios are about
        try:
            super().finish_request(conn, client_address)
        finally:
            try:
                conn.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
            conn.close()


class CrlServer:
    """CRLs of the scenario's ``crl`` CAs over HTTP on 127.0.0.1 (a thread; :meth:`stop` ends it).

    A CA with ``crl = "https"`` gets its own TLS server (:meth:`use_https`,
    :meth:`serve_tls`); ``fetches`` counts requests on all of them.
    """

    def __init__(self) -> None:
        self._revoked: dict[str, list[int]] = {}
        self._bodies: dict[str, bytes] = {}
        self._https: dict[str, tuple[_TlsHttpServer, threading.Thread]] = {}
        self.fetches = 0
        bodies, server_self = self._bodies, self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = bodies.get(self.path.lstrip("/").removesuffix(".crl"))
                server_self.fetches += 1
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._handler = Handler
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="spec-crl-server", daemon=True)
        self._thread.start()

    def url(self, ca_name: str) -> str:
        """Where the CRL of ``ca_name`` is served."""
        if ca_name in self._https:
            return f"https://127.0.0.1:{self._https[ca_name][0].server_address[1]}/{ca_name}.crl"
        return f"http://127.0.0.1:{self.port}/{ca_name}.crl"

    def use_https(self, ca_name: str) -> None:
        """Serve the CRL of ``ca_name`` over TLS on a port of its own (bound now, TLS set by :meth:`serve_tls`)."""
        if ca_name in self._https:
            return
        server = _TlsHttpServer(("127.0.0.1", 0), self._handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"spec-crl-https-{ca_name}", daemon=True)
        thread.start()
        self._https[ca_name] = (server, thread)

    def serve_tls(self, ca_name: str, leaf: Material, directory: Path) -> None:
        """Present ``leaf`` (chain and key) on the https CRL server of ``ca_name``."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        path = directory / f"crl-tls-{ca_name}.pem"
        path.write_text(leaf.chain_pem + leaf.key_pem)
        path.chmod(0o600)
        ctx.load_cert_chain(str(path))
        self._https[ca_name][0].ssl_context = ctx

    def revoke(self, ca_name: str, serial: int) -> None:
        """Put ``serial`` on the CRL of ``ca_name`` (before :meth:`publish`)."""
        self._revoked.setdefault(ca_name, []).append(serial)

    def publish(self, ca_name: str, ca: trustme.CA) -> None:
        """Sign and serve the CRL of ``ca_name`` (valid from a minute ago for a day)."""
        key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
        issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
            .last_update(now - datetime.timedelta(minutes=1)).next_update(now + datetime.timedelta(days=1))
            .add_extension(x509.CRLNumber(1), False)
        )
        for serial in self._revoked.get(ca_name, []):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        self._bodies[ca_name] = crl.public_bytes(serialization.Encoding.DER)

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for server, thread in [(self._server, self._thread), *self._https.values()]:
            server.shutdown()
            thread.join(timeout=5)
            server.server_close()


class OcspServers:
    """The OCSP responders of a scenario's ``ocsp`` CAs (threads on 127.0.0.1; :meth:`stop` ends them)."""

    def __init__(self) -> None:
        self._responders: dict[str, tuple[OcspResponder, Issued]] = {}

    def start(self, ca_name: str, ca: trustme.CA, *, down: bool = False) -> str:
        """Run the responder of ``ca_name`` (signing with the CA itself); its URL."""
        issuer = Issued.from_trustme(ca)
        responder = OcspResponder(issuer)
        responder.down = down
        self._responders[ca_name] = (responder, issuer)
        return responder.url

    def url(self, ca_name: str) -> str:
        """Where the responder of ``ca_name`` answers."""
        return self._responders[ca_name][0].url

    def answer(self, ca_name: str, leaf_name: str, cert_pem: str, status: str, directory: Path) -> Path:
        """Make the responder say ``status`` about the leaf; write that answer to a DER file too."""
        responder, issuer = self._responders[ca_name]
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        responder.set(cert, status)
        path = directory / f"{leaf_name}.ocsp.der"
        path.write_bytes(ocsp_response_der(issuer, cert.serial_number, status))
        return path

    def stop(self) -> None:
        """Stop every responder and release its port."""
        for responder, _ in self._responders.values():
            responder.close()
        self._responders.clear()


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
    context.set(f"pki.{material.name}.der_base64", base64.b64encode(der).decode("ascii"))
    context.set(f"pki.{material.name}.pem_urlencoded", urllib.parse.quote(material.cert_pem, safe=""))
