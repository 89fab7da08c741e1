"""The local trust material: what is made, who may read it, made once and kept."""

from __future__ import annotations

import ipaddress
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from closedloop.trust import local, tls
from closedloop.trust.permissions import EVERY_PERMISSION
from closedloop.trust.tokens import TokenVerifier, issue_token


@pytest.fixture
def trust(tmp_path: Path) -> local.LocalTrust:
    return local.ensure_local_trust(tmp_path / "data" / "trust")


def every_path(trust: local.LocalTrust) -> list[Path]:
    return sorted(trust.folder.rglob("*"))


def test_every_folder_is_0700_and_every_file_0600(trust: local.LocalTrust) -> None:
    assert stat.S_IMODE(trust.folder.stat().st_mode) == 0o700
    paths = every_path(trust)
    assert {p.relative_to(trust.folder).as_posix() for p in paths} == {
        "ca.pem",
        "ca.key",
        "services",
        "tokens",
        "tokens/signing.key",
        "tokens/jwks.json",
        "tokens/operator.token",
        *(f"services/{s}.{e}" for s in local.SERVICES for e in ("pem", "key")),
    }
    for path in paths:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_each_service_has_a_certificate_naming_it_signed_by_the_ca(
    trust: local.LocalTrust,
) -> None:
    ca = x509.load_pem_x509_certificate(trust.ca_certificate.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert set(trust.services) == set(local.SERVICES)
    for service, own in trust.services.items():
        pem = own.certificate.read_bytes()
        certificate = x509.load_pem_x509_certificate(pem)
        certificate.verify_directly_issued_by(ca)
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://closedloop/{service}"
        ]
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(
            x509.IPAddress
        )
        usages = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in usages
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
        assert tls.spiffe_id(pem) == own.spiffe_id == f"spiffe://closedloop/{service}"
        assert tls.service_of(tls.spiffe_id(pem)) == service


def test_the_operator_token_carries_every_permission_and_verifies(
    trust: local.LocalTrust,
) -> None:
    verifier = TokenVerifier(trust.key_set())
    principal = verifier.verify(trust.operator_token.read_text())
    assert principal.subject == local.OPERATOR_SUBJECT
    assert (
        principal.scopes
        == set(EVERY_PERMISSION)
        == {
            "lead:write",
            "lead:read",
            "deal:write",
            "deal:read",
            "consent:write",
            "consent:read",
            "consent:erase",
            "attribution:write",
            "attribution:read",
            "insights:read",
            "personal:read",
            "ops:admin",
        }
    )
    signing = trust.token_signing_key()
    header = jwt.get_unverified_header(trust.operator_token.read_text())
    assert header["kid"] == signing.key_id
    assert header["alg"] == "EdDSA"
    assert trust.key_set().key_ids == {signing.key_id}
    issued = issue_token(signing, subject="cli", scopes=[], ttl=timedelta(minutes=1))
    assert verifier.verify(issued).subject == "cli"


def test_a_second_call_reuses_everything_and_overwrites_nothing(
    trust: local.LocalTrust,
) -> None:
    before = {p: p.read_bytes() for p in every_path(trust) if p.is_file()}
    again = local.ensure_local_trust(trust.folder)
    assert again == trust
    assert {p: p.read_bytes() for p in every_path(trust) if p.is_file()} == before


def test_what_is_missing_is_made_again_from_what_is_kept(
    trust: local.LocalTrust,
) -> None:
    ca = trust.ca_certificate.read_bytes()
    trust.services["deal"].certificate.unlink()
    trust.services["deal"].private_key.unlink()
    trust.operator_token.unlink()

    again = local.ensure_local_trust(trust.folder)

    assert again.ca_certificate.read_bytes() == ca
    deal = again.services["deal"].certificate.read_bytes()
    x509.load_pem_x509_certificate(deal).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca)
    )
    renewed = again.operator_token.read_text()
    assert TokenVerifier(again.key_set()).verify(renewed).subject == "operator"


def test_loose_permissions_on_what_exists_are_tightened(
    trust: local.LocalTrust,
) -> None:
    trust.folder.chmod(0o755)
    trust.ca_key.chmod(0o644)
    local.ensure_local_trust(trust.folder)
    assert stat.S_IMODE(trust.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(trust.ca_key.stat().st_mode) == 0o600


def test_a_certificate_without_its_key_is_refused_not_replaced(
    trust: local.LocalTrust,
) -> None:
    certificate = trust.services["lead"].certificate.read_bytes()
    trust.services["lead"].private_key.unlink()
    with pytest.raises(ValueError, match=r"lead\.pem was not made for the key"):
        local.ensure_local_trust(trust.folder)
    assert trust.services["lead"].certificate.read_bytes() == certificate


def test_spiffe_ids_outside_closedloop_name_no_service() -> None:
    assert tls.service_of("spiffe://closedloop/deal") == "deal"
    assert tls.service_of("spiffe://elsewhere/deal") is None
    assert tls.service_of("spiffe://closedloop/deal/extra") is None
    assert tls.service_of("spiffe://closedloop/") is None
    assert tls.service_of(None) is None
