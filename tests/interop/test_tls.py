"""HTTPS: hoist's registry serving TLS, on a test host in a network namespace (not loopback,
so clients verify certificates), and clients trusting a private CA through certs.d."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli.helpers import Hoist
from tests.images import busybox_files, manifest_of, write_image
from tests.peers import NetnsHost, skopeo, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
PORT = 5443


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca_and_server_cert(out: Path, ip: str) -> None:
    """ca.crt, and server.crt / server.key for ``ip`` signed by that CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hoist test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (out / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "server.key").write_bytes(_pem_key(key))


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(HOST:PORT of a TLS registry on a test host, the folder holding its CA)."""
    host = NetnsHost().start()
    proc = None
    try:
        pki = tmp_path / "pki"
        make_ca_and_server_cert(pki, host.addr)
        proc = subprocess.Popen(host.command(
            sys.executable, "-m", "hoist.cli", "registry", "serve", "--no-access-log",
            "--addr", f"{host.addr}:{PORT}", "--root", str(tmp_path / "root"),
            "--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")),
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "registry.log", "wb"))
        wait_for_port(PORT, 30, proc, host=host.addr)
        yield f"{host.addr}:{PORT}", pki
    finally:
        stop_process(proc)
        host.stop()


def test_tls_registry_with_private_ca(tls_registry: tuple[str, Path], tmp_path: Path) -> None:
    addr, pki = tls_registry
    layout = tmp_path / "src"
    write_image(layout, "bb", [busybox_files()])
    ref = f"{addr}/team/bb:1"
    # skopeo verifies against the CA in its cert dir (the same certs.d convention).
    certdir = tmp_path / "skopeo-certs"
    certdir.mkdir()
    (certdir / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    skopeo("copy", "--dest-cert-dir", str(certdir), f"oci:{layout}:bb", f"docker://{ref}")
    h = Hoist(tmp_path / "hoist")
    # Without the CA: a clear one-line TLS error, nothing pulled.
    res = h("pull", ref, ok=False)
    assert res.code != 0 and "certificate" in res.err.lower()
    assert len(res.err.strip().splitlines()) == 1, res.err
    assert "certs.d" in res.err
    # Marked insecure: HTTPS without verification, as docker does.
    h("pull", "--insecure", ref)
    h("rmi", ref)
    # With the CA in $HOIST_ROOT/certs.d/<registry>/: verified HTTPS.
    certs = h.root / "certs.d" / addr
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    h("pull", ref)
    h("tag", ref, f"{addr}/team/bb:2")
    h("push", f"{addr}/team/bb:2")
    out = tmp_path / "out"
    skopeo("copy", "--src-cert-dir", str(certdir), f"docker://{addr}/team/bb:2", f"oci:{out}:bb")
    assert manifest_of(out, "bb") == manifest_of(layout, "bb")
