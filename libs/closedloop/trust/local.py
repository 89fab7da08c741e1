"""The trust material `make run` creates once under the data folder, then reuses.

    trust/                   0700
      ca.pem  ca.key         the local certificate authority
      services/<service>.pem server and client certificate and its key: URI SAN
      services/<service>.key   spiffe://closedloop/<service>, localhost, 127.0.0.1, ::1
      tokens/signing.key     the token signing key (Ed25519); its id is its thumbprint
      tokens/jwks.json       the token verification keys, as an OIDC provider's JWKS
      tokens/operator.token  a token with every permission (CLI, demo, grpcurl)

Every file is 0600. A file that exists is never replaced: a second run, or two at once,
reads what the first wrote. Certificates use ECDSA P-256, not Ed25519: the BoringSSL in
grpcio offers no signature algorithm for Ed25519 certificates and fails the handshake.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from closedloop.privatefiles import private_folder, read_or_create
from closedloop.trust import tls
from closedloop.trust.permissions import EVERY_PERMISSION
from closedloop.trust.tokens import KeySet, SigningKey, issue_token

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import grpc

SERVICES = ("lead", "deal", "consent", "attribution", "projector", "insights")
OPERATOR_SUBJECT = "operator"
VALIDITY = dt.timedelta(days=3650)
"""Local material outlives any checkout; production brings its own, on its own terms."""
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class ServiceCertificate:
    service: str
    certificate: Path
    private_key: Path

    @property
    def spiffe_id(self) -> str:
        return tls.spiffe_id_of_service(self.service)


@dataclass(frozen=True)
class LocalTrust:
    """Where the local trust material is; every path exists."""

    folder: Path
    ca_certificate: Path
    ca_key: Path
    services: Mapping[str, ServiceCertificate]
    signing_key: Path
    jwks: Path
    operator_token: Path

    def key_set(self) -> KeySet:
        return KeySet.from_jwks_file(self.jwks)

    def token_signing_key(self) -> SigningKey:
        return SigningKey.from_pem(self.signing_key.read_bytes())

    def server_credentials(self, service: str) -> grpc.ServerCredentials:
        own = self.services[service]
        return tls.server_credentials(
            ca_certificate=self.ca_certificate,
            certificate=own.certificate,
            private_key=own.private_key,
        )

    def channel_credentials(self, service: str) -> grpc.ChannelCredentials:
        own = self.services[service]
        return tls.channel_credentials(
            ca_certificate=self.ca_certificate,
            certificate=own.certificate,
            private_key=own.private_key,
        )


def ensure_local_trust(folder: Path, services: Sequence[str] = SERVICES) -> LocalTrust:
    """Creates what is missing under `folder` (the data folder's `trust/`).

    What is there already is kept as it is, only its permissions tightened.
    """
    for sub in (folder, folder / "services", folder / "tokens"):
        private_folder(sub)
    now = dt.datetime.now(dt.UTC)

    ca_key_path, ca_path = folder / "ca.key", folder / "ca.pem"
    ca_key = _load_key(read_or_create(ca_key_path, _new_private_key))
    ca = _load_certificate(read_or_create(ca_path, partial(_ca_pem, ca_key, now)))
    _check_pair(ca, ca_key, ca_path)

    certificates = {}
    for service in services:
        key_path = folder / "services" / f"{service}.key"
        certificate_path = folder / "services" / f"{service}.pem"
        key = _load_key(read_or_create(key_path, _new_private_key))
        certificate = _load_certificate(
            read_or_create(
                certificate_path,
                partial(_service_pem, service, key, ca, ca_key, now),
            )
        )
        _check_pair(certificate, key, certificate_path)
        certificates[service] = ServiceCertificate(service, certificate_path, key_path)

    tokens = folder / "tokens"
    signing = SigningKey.from_pem(
        read_or_create(tokens / "signing.key", lambda: SigningKey.generate().pem())
    )
    jwks = KeySet([signing.verification_key()]).jwks()
    read_or_create(tokens / "jwks.json", lambda: json.dumps(jwks, indent=2).encode())
    read_or_create(
        tokens / "operator.token",
        lambda: issue_token(
            signing, subject=OPERATOR_SUBJECT, scopes=EVERY_PERMISSION, ttl=VALIDITY
        ).encode(),
    )
    return LocalTrust(
        folder=folder,
        ca_certificate=ca_path,
        ca_key=ca_key_path,
        services=certificates,
        signing_key=tokens / "signing.key",
        jwks=tokens / "jwks.json",
        operator_token=tokens / "operator.token",
    )


def _new_private_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        msg = "the local certificates' keys are ECDSA P-256"
        raise TypeError(msg)
    return key


def _load_certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _check_pair(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, path: Path
) -> None:
    if certificate.public_key() != key.public_key():
        msg = (
            f"{path} was not made for the key beside it; remove the trust folder "
            "to create it all again"
        )
        raise ValueError(msg)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "closedloop (local)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )


def _key_usage(*, certificate_signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_signing,
        crl_sign=certificate_signing,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_pem(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> bytes:
    name = _name("closedloop local CA")
    return _pem(
        _builder(name, name, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .sign(key, hashes.SHA256())
    )


def _service_pem(
    service: str,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> bytes:
    names = [
        x509.UniformResourceIdentifier(tls.spiffe_id_of_service(service)),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    ]
    return _pem(
        _builder(_name(service), ca.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
