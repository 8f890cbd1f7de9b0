"""The cluster PKI: kubeadm's CA profile, the admin certificate, the CA hash and a real TLS
handshake with mutual authentication against the generated CA."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from capt.activities.kubeadm import pki
from capt.dev.testkit.bootstrap_reference import cluster_pki


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.mark.parametrize(
    ("field", "cn"),
    [("ca", "kubernetes"), ("etcd_ca", "etcd-ca"), ("front_proxy_ca", "front-proxy-ca")],
)
def test_cas_follow_kubeadm_profile(field: str, cn: str) -> None:
    kp: pki.KeyPair = getattr(cluster_pki(), field)
    cert = kp.certificate()
    assert _cn(cert) == cn
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC)  # back-dated for clock skew
    # kubeadm writes PKCS#1 RSA keys; the key belongs to the certificate.
    assert kp.key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert kp.private_key().public_key().public_numbers() == cert.public_key().public_numbers()
    # self-signed: verifies against itself
    assert pki.verify_signed_by(kp.cert, kp)


def test_the_three_cas_are_distinct() -> None:
    p = cluster_pki()
    hashes = {
        pki.ca_cert_hash(p.ca.cert),
        pki.ca_cert_hash(p.etcd_ca.cert),
        pki.ca_cert_hash(p.front_proxy_ca.cert),
    }
    assert len(hashes) == 3


def test_service_account_pair_matches_and_uses_kubeadm_encodings() -> None:
    sa = cluster_pki().sa
    assert sa.key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert sa.pub.startswith("-----BEGIN PUBLIC KEY-----")
    key = pki.KeyPair(cert="", key=sa.key).private_key()
    assert load_pem_public_key(sa.pub.encode()).public_numbers() == key.public_key().public_numbers()


def test_admin_cert_is_a_system_masters_client_cert_signed_by_the_cluster_ca() -> None:
    p = cluster_pki()
    admin = pki.issue_admin_cert(p.ca)
    cert = admin.certificate()
    assert _cn(cert) == "kubernetes-admin"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < lifetime < dt.timedelta(days=366)
    assert pki.verify_signed_by(admin.cert, p.ca)
    assert not pki.verify_signed_by(admin.cert, p.etcd_ca)
    assert not pki.verify_signed_by(admin.cert, p.front_proxy_ca)


def test_serving_cert_has_sans_and_server_usage() -> None:
    p = cluster_pki()
    served = pki.issue_serving_cert(
        p.ca, "kube-apiserver", dns_names=("lb.example.com",), ip_addresses=("10.0.0.5",)
    )
    cert = served.certificate()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["lb.example.com"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert pki.verify_signed_by(served.cert, p.ca)


def test_leaf_never_outlives_its_ca() -> None:
    ca = pki.new_ca("short", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3650 - 30))
    leaf = pki.issue_admin_cert(ca)
    assert leaf.certificate().not_valid_after_utc <= ca.certificate().not_valid_after_utc


def test_ca_cert_hash_matches_kubeadms_openssl_recipe(tmp_path: Path) -> None:
    # kubeadm's documented way to compute --discovery-token-ca-cert-hash:
    #   openssl x509 -pubkey -in ca.crt | openssl rsa -pubin -outform der | openssl dgst -sha256 -hex
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(cluster_pki().ca.cert)
    pub = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", str(ca_file)], check=True, capture_output=True
    )
    der = subprocess.run(
        ["openssl", "rsa", "-pubin", "-outform", "der"], input=pub.stdout, check=True, capture_output=True
    )
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hex"], input=der.stdout, check=True, capture_output=True
    )
    expected = digest.stdout.decode().strip().split()[-1]
    assert pki.ca_cert_hash(cluster_pki().ca.cert) == f"sha256:{expected}"


def test_admin_kubeconfig_points_at_the_endpoint_with_the_ca_and_admin_credentials() -> None:
    p = cluster_pki()
    admin = pki.issue_admin_cert(p.ca)
    text = pki.admin_kubeconfig("capi-quickstart", pki.endpoint_url("lb.example.com", 6443), p.ca.cert, admin)
    cfg = yaml.safe_load(text)
    assert cfg["current-context"] == "capi-quickstart-admin@capi-quickstart"
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster["server"] == "https://lb.example.com:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == p.ca.cert
    user = cfg["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]).decode() == admin.cert
    assert base64.b64decode(user["client-key-data"]).decode() == admin.key
    assert pki.endpoint_url("fd00::1", 6443) == "https://[fd00::1]:6443"


def _tls_server(tmp_path: Path, ca: pki.KeyPair, served: pki.KeyPair) -> tuple[int, threading.Thread, list]:
    """A one-connection TLS server that requires a client certificate signed by `ca`."""
    (tmp_path / "srv.crt").write_text(served.cert)
    (tmp_path / "srv.key").write_text(served.key)
    (tmp_path / "ca.crt").write_text(ca.cert)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    ctx.load_verify_locations(tmp_path / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    seen: list = []

    def serve() -> None:
        with sock:
            conn, _ = sock.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    seen.append(tls.getpeercert())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t, seen


def _client(tmp_path: Path, port: int, ca_cert: str, client: pki.KeyPair) -> bytes:
    (tmp_path / "cli.crt").write_text(client.cert)
    (tmp_path / "cli.key").write_text(client.key)
    (tmp_path / "cli-ca.crt").write_text(ca_cert)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "cli-ca.crt"))
    ctx.load_cert_chain(tmp_path / "cli.crt", tmp_path / "cli.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.recv(2)


def test_mutual_tls_with_the_generated_pki(tmp_path: Path) -> None:
    p = cluster_pki()
    served = pki.issue_serving_cert(
        p.ca, "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    port, thread, seen = _tls_server(tmp_path, p.ca, served)
    assert _client(tmp_path, port, p.ca.cert, pki.issue_admin_cert(p.ca)) == b"ok"
    thread.join(5)
    subject = dict(x[0] for x in seen[0]["subject"])
    assert subject == {"organizationName": "system:masters", "commonName": "kubernetes-admin"}


def test_a_client_cert_from_another_ca_is_refused(tmp_path: Path) -> None:
    p = cluster_pki()
    served = pki.issue_serving_cert(p.ca, "kube-apiserver", dns_names=("localhost",))
    port, thread, seen = _tls_server(tmp_path, p.ca, served)
    stranger = pki.issue_admin_cert(p.etcd_ca)  # right names, wrong CA
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        data = _client(tmp_path, port, p.ca.cert, stranger)
        if not data:  # TLS 1.3: the refusal can arrive as a closed connection on read
            raise ConnectionError("closed")
    thread.join(5)
    assert isinstance(seen[0], ssl.SSLError)
