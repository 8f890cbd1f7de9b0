"""The cluster PKI, as kubeadm would create it — pure functions, no I/O.

kubeadm needs, before `kubeadm init` on the first control-plane machine (and before any
`kubeadm join --control-plane`), the same four pieces of key material on every control-plane
node; CAPI generates them once per cluster so that every control-plane machine shares them:

- the cluster CA ("kubernetes"), which signs the API server's serving certificate and every
  client certificate (kubelets, the admin);
- the etcd CA ("etcd-ca") for etcd peer/server/client certificates;
- the front-proxy CA ("front-proxy-ca") for the aggregation layer;
- the service-account key pair (sa.key / sa.pub) that signs and verifies service-account tokens.

Plus an admin client certificate (CN kubernetes-admin, O system:masters) and its kubeconfig,
which is how capt talks to the workload cluster.

Like kubeadm: RSA 2048 keys, PKCS#1 "RSA PRIVATE KEY" PEM for private keys, CAs valid for
10 years, leaf certificates for 1 year, NotBefore back-dated a few minutes for clock skew.

Nothing here may be logged or returned from an activity: these are the cluster's secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSA_KEY_SIZE = 2048
CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
# kubeadm and CAPI back-date NotBefore so a node whose clock is slightly behind still trusts it.
CLOCK_SKEW = dt.timedelta(minutes=5)

CLUSTER_CA_CN = "kubernetes"
ETCD_CA_CN = "etcd-ca"
FRONT_PROXY_CA_CN = "front-proxy-ca"
ADMIN_CN = "kubernetes-admin"
ADMIN_ORG = "system:masters"


@dataclass(frozen=True)
class KeyPair:
    """A certificate (or, for the service-account pair, a public key) and its private key, PEM."""

    cert: str
    key: str

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.encode())

    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.key.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key


@dataclass(frozen=True)
class ServiceAccountKeys:
    """sa.key (PKCS#1 private key) and sa.pub (PKIX public key), as kubeadm writes them."""

    key: str
    pub: str


@dataclass(frozen=True)
class ClusterPKI:
    ca: KeyPair
    etcd_ca: KeyPair
    front_proxy_ca: KeyPair
    sa: ServiceAccountKeys


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    # PKCS#1 ("RSA PRIVATE KEY"), the encoding kubeadm and CAPI write for RSA keys.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_ca(common_name: str, *, now: dt.datetime | None = None) -> KeyPair:
    """A self-signed CA like kubeadm's: CA:TRUE, keyCertSign, 10 years, SAN = its CN."""
    now = now or _now()
    key = new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert=cert_pem(cert), key=private_key_pem(key))


def new_service_account_keys() -> ServiceAccountKeys:
    key = new_private_key()
    return ServiceAccountKeys(key=private_key_pem(key), pub=public_key_pem(key.public_key()))


def new_cluster_pki() -> ClusterPKI:
    return ClusterPKI(
        ca=new_ca(CLUSTER_CA_CN),
        etcd_ca=new_ca(ETCD_CA_CN),
        front_proxy_ca=new_ca(FRONT_PROXY_CA_CN),
        sa=new_service_account_keys(),
    )


def issue_cert(
    ca: KeyPair,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    client: bool = False,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    validity: dt.timedelta = LEAF_VALIDITY,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A leaf certificate signed by `ca` with a fresh RSA key (kubeadm's leaf profile)."""
    if not (client or server):
        raise ValueError("a leaf certificate needs client and/or server usage")
    now = now or _now()
    ca_cert = ca.certificate()
    ca_key = ca.private_key()
    key = new_private_key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert=cert_pem(cert), key=private_key_pem(key))


def issue_admin_cert(ca: KeyPair, *, now: dt.datetime | None = None) -> KeyPair:
    """The cluster-admin client certificate (CN kubernetes-admin, O system:masters)."""
    return issue_cert(ca, ADMIN_CN, organizations=(ADMIN_ORG,), client=True, now=now)


def issue_serving_cert(
    ca: KeyPair,
    common_name: str,
    *,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    now: dt.datetime | None = None,
) -> KeyPair:
    """A TLS serving certificate (e.g. an API server, or the simulator standing in for one)."""
    return issue_cert(ca, common_name, server=True, dns_names=dns_names, ip_addresses=ip_addresses, now=now)


def ca_cert_hash(ca_cert: str) -> str:
    """kubeadm's discovery-token-ca-cert-hash: sha256 over the CA's DER SubjectPublicKeyInfo.

    This value is public (it pins the CA; it grants nothing) and travels in activity results.
    """
    cert = x509.load_pem_x509_certificate(ca_cert.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def endpoint_url(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"https://{host}:{port}"


def admin_kubeconfig(cluster_name: str, server: str, ca_cert: str, admin: KeyPair) -> str:
    """A kubeconfig for the workload cluster's admin, named as CAPI names it (`<cluster>-admin`)."""
    user = f"{cluster_name}-admin"
    context = f"{user}@{cluster_name}"

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(admin.cert), "client-key-data": b64(admin.key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def verify_signed_by(cert_pem_text: str, ca: KeyPair | str) -> bool:
    """True if `cert` was issued by the CA (signature and issuer name). For tests and the client."""
    ca_text = ca.cert if isinstance(ca, KeyPair) else ca
    ca_cert = x509.load_pem_x509_certificate(ca_text.encode())
    cert = x509.load_pem_x509_certificate(cert_pem_text.encode())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
