"""Certificates and keys for the local control plane.

A cluster CA, the apiserver's serving certificate, one client certificate per
identity (admin, controller-manager, scheduler, node agent, operator) and the service
account signing key pair. Written once per state directory and reused.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


class ClusterPKI:
    """The files of the cluster's PKI under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    def ensure(self) -> None:
        """Create whatever is missing; never replaces what exists."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            self._write_ca()
        ca_key = serialization.load_pem_private_key(self.path("ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        if not self.path("apiserver.crt").exists():
            self._write_serving_cert(ca_key, ca_cert)
        for identity in CLIENT_IDENTITIES:
            if not self.path(f"{identity.stem}.crt").exists():
                self._write_client_cert(identity, ca_key, ca_cert)
        if not self.path("sa.key").exists():
            self._write_service_account_keys()

    def _write_ca(self) -> None:
        key = _new_key()
        name = _name("workerfleet-local-ca")
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
        _write_key(self.path("ca.key"), key)
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_serving_cert(
        self, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
    ) -> None:
        key = _new_key()
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in APISERVER_DNS_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in APISERVER_IPS]
        cert = (
            _builder(_name("kube-apiserver"), ca_cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(self.path("apiserver.key"), key)
        self.path("apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_client_cert(
        self,
        identity: ClientIdentity,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
    ) -> None:
        key = _new_key()
        cert = (
            _builder(_name(identity.user, identity.groups), ca_cert.subject, key.public_key())
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(self.path(f"{identity.stem}.key"), key)
        self.path(f"{identity.stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_service_account_keys(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(self.path("sa.key"), key)
        self.path("sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
