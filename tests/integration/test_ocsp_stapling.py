"""OCSP stapling through OpenSSL on stdlib contexts, checked with ``openssl s_client -status``.

A real responder (:mod:`trio_gw.testing.ocsp_responder`, 127.0.0.1:0) answers;
its responses are fetched over HTTP, verified by :func:`verify_ocsp_response`,
and each certificate context staples what :func:`decide_staple` says.  The
listener context's SNI callback swaps to the certificate context, so these
tests also prove the status callback follows the swap.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cryptography import x509

from trio_gw.net.ocsp_stapling import install, installed_source, stapling_available
from trio_gw.testing.ocsp_responder import OcspResponder
from trio_gw.testing.pki import Issued, issue, make_ca
from trio_gw.testing.tls_server import TlsTestServer
from trio_gw.tls.ocsp import OcspAnswer, build_ocsp_request, ocsp_get_url, ocsp_responder_urls, verify_ocsp_response
from trio_gw.tls.stapling import StaplingPolicy, decide_staple

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI (make system-tools)")

CA = make_ca(common_name="stapling root")


@pytest.fixture(scope="module")
def responder() -> Iterator[OcspResponder]:
    with OcspResponder(CA) as r:
        yield r


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stapling") / "ca.pem"
    path.write_text(CA.cert_pem())
    return path


def fetch_answer(leaf: Issued) -> OcspAnswer:
    """What the background refresher does: GET from the AIA responder, verify."""
    url = ocsp_get_url(ocsp_responder_urls(leaf.cert)[0], build_ocsp_request(leaf.cert, CA.cert))
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - 127.0.0.1 test responder
        return verify_ocsp_response(reply.read(), leaf.cert, CA.cert, now=time.time())


def context_for(leaf: Issued, tmp: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    name = leaf.cert.serial_number
    (tmp / f"{name}.pem").write_text(leaf.chain_pem())
    (tmp / f"{name}.key").write_text(leaf.key_pem())
    ctx.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
    return ctx


def stapling_listener(
    tmp: Path, by_name: Mapping[str, tuple[Issued, OcspAnswer | None]], policy: StaplingPolicy
) -> ssl.SSLContext:
    """A listener whose SNI callback swaps to one context per certificate, each with its staple source."""
    contexts: dict[str, ssl.SSLContext] = {}
    for name, (leaf, answer) in by_name.items():
        ctx = context_for(leaf, tmp)
        must = False

        def source(answer: OcspAnswer | None = answer, must: bool = must) -> object:
            return decide_staple(policy, answer, must_staple=must, now=time.time())

        assert install(ctx, source)  # type: ignore[arg-type]
        contexts[name] = ctx
    listener = context_for(next(iter(by_name.values()))[0], tmp)  # default certificate, no staple installed

    def sni(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if server_name in contexts:
            sslobj.context = contexts[server_name]

    listener.sni_callback = sni
    return listener


def s_client(server: TlsTestServer, name: str, ca_file: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", server.address, "-servername", name, "-status", "-CAfile",
         str(ca_file), version, "-verify_return_error"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )


def leaf_with_aia(name: str, responder: OcspResponder) -> Issued:
    return issue(CA, name, ocsp_urls=[responder.url])


def test_the_shim_is_available_here() -> None:
    """This machine's CPython/OpenSSL pass the layout proof; elsewhere stapling is off with a warning."""
    assert stapling_available()


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_good_is_stapled_revoked_is_not_under_lenient(
    responder: OcspResponder, ca_file: Path, tmp_path: Path, version: str
) -> None:
    good, revoked = leaf_with_aia("good.example", responder), leaf_with_aia("revoked.example", responder)
    responder.set(good, "good")
    responder.set(revoked, "revoked", reason=x509.ReasonFlags.key_compromise)
    answers = {"good.example": (good, fetch_answer(good)), "revoked.example": (revoked, fetch_answer(revoked))}
    with TlsTestServer(stapling_listener(tmp_path, answers, StaplingPolicy.LENIENT)) as server:
        stapled = s_client(server, "good.example", ca_file, version)
        plain = s_client(server, "revoked.example", ca_file, version)
    assert "OCSP Response Status: successful" in stapled.stdout, stapled.stdout + stapled.stderr
    assert "Cert Status: good" in stapled.stdout and "Verify return code: 0 (ok)" in stapled.stdout
    assert f"Serial Number: {_openssl_serial(good.cert.serial_number)}" in stapled.stdout
    assert "OCSP response: no response sent" in plain.stdout, plain.stdout
    assert "Verify return code: 0 (ok)" in plain.stdout  # served, only without a staple
    assert not server.errors


def test_strict_refuses_the_revoked_certificate(responder: OcspResponder, ca_file: Path, tmp_path: Path) -> None:
    good, revoked = leaf_with_aia("good.example", responder), leaf_with_aia("revoked.example", responder)
    responder.set(good, "good")
    responder.set(revoked, "revoked")
    answers = {"good.example": (good, fetch_answer(good)), "revoked.example": (revoked, fetch_answer(revoked))}
    with TlsTestServer(stapling_listener(tmp_path, answers, StaplingPolicy.STRICT)) as server:
        refused = s_client(server, "revoked.example", ca_file, "-tls1_3")
        served = s_client(server, "good.example", ca_file, "-tls1_3")
    assert refused.returncode != 0 and "alert internal error" in refused.stderr, refused.stderr
    assert "Cert Status: good" in served.stdout
    assert len(server.errors) == 1 and "CLIENTHELLO_TLSEXT" in server.errors[0]


def test_no_answer_yet_means_no_staple_and_an_unaffected_handshake(
    responder: OcspResponder, ca_file: Path, tmp_path: Path
) -> None:
    """Responder down: the refresher has no answer; lenient handshakes go on without a staple."""
    leaf = leaf_with_aia("down.example", responder)
    with TlsTestServer(stapling_listener(tmp_path, {"down.example": (leaf, None)}, StaplingPolicy.LENIENT)) as server:
        result = s_client(server, "down.example", ca_file, "-tls1_3")
    assert "OCSP response: no response sent" in result.stdout and "Verify return code: 0 (ok)" in result.stdout


def test_python_client_is_unaffected(responder: OcspResponder, tmp_path: Path) -> None:
    """Python's ssl never asks for status: the callback does not run, the handshake succeeds."""
    good = leaf_with_aia("good.example", responder)
    responder.set(good, "good")
    listener = stapling_listener(tmp_path, {"good.example": (good, fetch_answer(good))}, StaplingPolicy.STRICT)
    client = ssl.create_default_context(cadata=CA.cert_pem())
    with TlsTestServer(listener) as server:
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="good.example") as tls:
                assert tls.recv(16) == b"ok\n"
                cert = tls.getpeercert()
                assert cert is not None and cert["subjectAltName"] == (("DNS", "good.example"),)


def test_a_raising_source_never_reaches_openssl(ca_file: Path, tmp_path: Path) -> None:
    leaf = issue(CA, "boom.example")
    ctx = context_for(leaf, tmp_path)

    def source() -> object:
        raise RuntimeError("bug in a source")

    assert install(ctx, source)  # type: ignore[arg-type]
    assert installed_source(ctx) is source
    with TlsTestServer(ctx) as server:
        result = s_client(server, "boom.example", ca_file, "-tls1_3")
    assert "OCSP response: no response sent" in result.stdout and "Verify return code: 0 (ok)" in result.stdout


@pytest.mark.parametrize("sigalgs, kind", [("ECDSA+SHA256", "ec"), ("RSA-PSS+SHA256", "rsa")])
def test_dual_certificate_context_staples_the_served_one(
    responder: OcspResponder, ca_file: Path, tmp_path: Path, sigalgs: str, kind: str
) -> None:
    """Kong's cert + cert_alt: OpenSSL picks by signature algorithm; the staple must be about that certificate."""
    import hashlib

    from trio_gw.testing.pki import build_certificate

    leaves = {k: build_certificate(issuer=CA, dns_names=["dual.example"], key_kind=k, ocsp_urls=[responder.url])
              for k in ("ec", "rsa")}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for k, leaf in leaves.items():
        responder.set(leaf, "good")
        (tmp_path / f"{k}.pem").write_text(leaf.chain_pem())
        (tmp_path / f"{k}.key").write_text(leaf.key_pem())
        ctx.load_cert_chain(tmp_path / f"{k}.pem", tmp_path / f"{k}.key")
    sources = {}
    for leaf in leaves.values():
        answer = fetch_answer(leaf)
        sources[hashlib.sha256(leaf.cert_der()).hexdigest()] = (
            lambda answer=answer: decide_staple(StaplingPolicy.LENIENT, answer, must_staple=False, now=time.time()))
    assert install(ctx, sources)
    with TlsTestServer(ctx) as server:
        result = subprocess.run(
            ["openssl", "s_client", "-connect", server.address, "-servername", "dual.example", "-status", "-CAfile",
             str(ca_file), "-sigalgs", sigalgs, "-tls1_3", "-verify_return_error"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    served, other = leaves[kind], leaves["rsa" if kind == "ec" else "ec"]
    assert "Cert Status: good" in result.stdout, result.stdout + result.stderr
    assert f"{_openssl_serial(served.cert.serial_number)}" in result.stdout and f"{_openssl_serial(other.cert.serial_number)}" not in result.stdout


def _openssl_serial(serial: int) -> str:
    """A serial number as ``openssl ocsp``/``s_client -status`` prints it: upper-case hex, even length."""
    text = f"{serial:X}"
    return text.zfill(len(text) + len(text) % 2)
