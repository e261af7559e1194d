"""Certificates and keys for the local control plane.

A cluster CA, the apiserver's serving certificate, one client certificate per
identity (admin, controller-manager, scheduler, node agent, operator), the service
account signing key pair, and the aggregation layer's own CA with the client certificate
the apiserver presents when it proxies to an extension apiserver (``front-proxy-*``, as
kubeadm names them). Written once per state directory and reused.

:func:`write_ca` and :func:`write_leaf` make any other small PKI the same way (KEDA's,
a test's extension apiserver).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

CERT_VALIDITY_DAYS = 365
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# The first address of --service-cluster-ip-range is the `kubernetes` Service.
APISERVER_IPS = ("127.0.0.1", "10.0.0.1")
# The aggregation layer: extension apiservers trust requests proxied by the apiserver
# when they carry a client certificate of this CA with this name
# (--requestheader-client-ca-file, --requestheader-allowed-names).
FRONT_PROXY_CA = "front-proxy-ca"
FRONT_PROXY_CLIENT = "front-proxy-client"
SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT_AUTH = (ExtendedKeyUsageOID.CLIENT_AUTH,)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's file stem, user name (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "workerfleet-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
NODE_NAME = "workerfleet-node"
NODE_AGENT = ClientIdentity("node-agent", f"system:node:{NODE_NAME}", ("system:nodes",))
# The operator run by `make bench-operator`: its own user, so the audit log tells its requests.
OPERATOR = ClientIdentity("operator", "workerfleet-operator", ("system:masters",))
CLIENT_IDENTITIES = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, NODE_AGENT, OPERATOR)


@dataclass(frozen=True)
class Authority:
    """A CA's key and certificate, loaded to sign leaves."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organisations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organisations]
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
    )


def write_ca(directory: Path, stem: str, common_name: str) -> None:
    """A self-signed CA as ``<stem>.crt`` and ``<stem>.key``."""
    key = _new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / f"{stem}.key", key)
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_ca(directory: Path, stem: str) -> Authority:
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Authority(key, cert)


def write_leaf(
    directory: Path,
    stem: str,
    authority: Authority,
    identity: ClientIdentity | str,
    usages: Sequence[ObjectIdentifier],
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> None:
    """A certificate signed by ``authority`` as ``<stem>.crt`` and ``<stem>.key``: the
    subject is the identity's user and groups (or just a common name), the extended key
    usages ``usages``, the subject alternative names ``dns_names`` and ``ips``."""
    key = _new_key()
    subject = (
        _name(identity) if isinstance(identity, str) else _name(identity.user, identity.groups)
    )
    builder = _builder(subject, authority.cert.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage(list(usages)), critical=False
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(authority.key, hashes.SHA256())
    _write_key(directory / f"{stem}.key", key)
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class ClusterPKI:
    """The files of the cluster's PKI under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self.path(f"{FRONT_PROXY_CA}.crt")

    def ensure(self) -> None:
        """Create whatever is missing; never replaces what exists (a state directory made
        before the front-proxy files existed gets them added)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            write_ca(self.directory, "ca", "workerfleet-local-ca")
        ca = load_ca(self.directory, "ca")
        if not self.path("apiserver.crt").exists():
            write_leaf(
                self.directory,
                "apiserver",
                ca,
                "kube-apiserver",
                SERVER_AUTH,
                APISERVER_DNS_NAMES,
                APISERVER_IPS,
            )
        for identity in CLIENT_IDENTITIES:
            if not self.path(f"{identity.stem}.crt").exists():
                write_leaf(self.directory, identity.stem, ca, identity, CLIENT_AUTH)
        if not self.path("sa.key").exists():
            self._write_service_account_keys()
        if not self.front_proxy_ca_cert.exists():
            write_ca(self.directory, FRONT_PROXY_CA, "workerfleet-local-front-proxy-ca")
            self.path(f"{FRONT_PROXY_CLIENT}.crt").unlink(missing_ok=True)
        if not self.path(f"{FRONT_PROXY_CLIENT}.crt").exists():
            front_proxy = load_ca(self.directory, FRONT_PROXY_CA)
            write_leaf(
                self.directory, FRONT_PROXY_CLIENT, front_proxy, FRONT_PROXY_CLIENT, CLIENT_AUTH
            )

    def _write_service_account_keys(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(self.path("sa.key"), key)
        self.path("sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
