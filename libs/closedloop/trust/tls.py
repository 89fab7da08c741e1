"""Mutual TLS for gRPC: credentials from PEM files, and the SPIFFE id a peer proved.

A service's certificate names it with a URI SAN `spiffe://closedloop/<service>`; the
server reads it from the verified certificate the handshake left in the call's auth
context, never from anything the caller merely says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from cryptography import x509

if TYPE_CHECKING:
    from pathlib import Path

TRUST_DOMAIN = "closedloop"
_SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"


def spiffe_id_of_service(service: str) -> str:
    return f"{_SPIFFE_PREFIX}{service}"


def spiffe_id(certificate_pem: bytes) -> str | None:
    """The certificate's SPIFFE id (its one `spiffe://` URI SAN), if it has one."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return None
    uris = [
        uri
        for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith("spiffe://")
    ]
    # SPIFFE allows exactly one: a certificate naming two identities names neither.
    return uris[0] if len(uris) == 1 else None


def service_of(spiffe: str | None) -> str | None:
    """`deal` for `spiffe://closedloop/deal`; None outside closedloop's trust domain."""
    if spiffe is None or not spiffe.startswith(_SPIFFE_PREFIX):
        return None
    service = spiffe.removeprefix(_SPIFFE_PREFIX)
    return service if service and "/" not in service else None


def peer_spiffe_id(context: grpc.aio.ServicerContext) -> str | None:  # type: ignore[type-arg]
    """The SPIFFE id of the client certificate this call's connection verified."""
    certificates = context.auth_context().get("x509_pem_cert", [])
    return spiffe_id(certificates[0]) if certificates else None


def server_credentials(
    *, ca_certificate: Path, certificate: Path, private_key: Path
) -> grpc.ServerCredentials:
    """TLS that requires a client certificate signed by the CA: plaintext is refused."""
    return grpc.ssl_server_credentials(
        [(private_key.read_bytes(), certificate.read_bytes())],
        root_certificates=ca_certificate.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(
    *,
    ca_certificate: Path,
    certificate: Path | None = None,
    private_key: Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS trusting only the CA, presenting the client certificate when given."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_certificate.read_bytes(),
        private_key=private_key.read_bytes() if private_key else None,
        certificate_chain=certificate.read_bytes() if certificate else None,
    )
