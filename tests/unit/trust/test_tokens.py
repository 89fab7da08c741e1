"""Bearer tokens: issued, verified, refused with a short reason, keys rotated."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from closedloop.trust.principal import Principal
from closedloop.trust.tokens import (
    Algorithm,
    KeySet,
    SigningKey,
    TokenError,
    TokenVerifier,
    VerificationKey,
    issue_token,
    thumbprint,
    token_from_authorization,
)

HOUR = timedelta(hours=1)


def verifier_of(*keys: SigningKey, **options: Any) -> TokenVerifier:
    return TokenVerifier(KeySet(key.verification_key() for key in keys), **options)


def reason_of(verifier: TokenVerifier, token: str | None) -> str:
    with pytest.raises(TokenError) as refused:
        verifier.verify(token)
    assert str(refused.value) == refused.value.reason
    # Nothing of pyjwt's own message travels with it, not even as its context.
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__ or refused.value.__context__ is None
    return refused.value.reason


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_a_token_round_trips_to_its_principal(algorithm: Algorithm) -> None:
    key = SigningKey.generate(algorithm)
    token = issue_token(
        key, subject="web-forms", scopes=["lead:write", "consent:write"], ttl=HOUR
    )

    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "lead:write consent:write"
    assert claims["aud"] == "closedloop"
    assert claims["exp"] - claims["iat"] == 3600
    assert verifier_of(key).verify(token) == Principal(
        subject="web-forms",
        scopes=frozenset({"lead:write", "consent:write"}),
        kind="application",
    )


def test_a_token_without_scopes_names_its_subject_with_none() -> None:
    key = SigningKey.generate()
    principal = verifier_of(key).verify(
        issue_token(key, subject="reader", scopes=[], ttl=HOUR)
    )
    assert principal.scopes == frozenset()
    assert not principal.may("insights:read")


def test_an_expired_token_is_refused_as_expired() -> None:
    key = SigningKey.generate()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    token = issue_token(key, subject="app", scopes=[], ttl=HOUR, now=yesterday)
    assert reason_of(verifier_of(key), token) == "expired"
    assert verifier_of(key, leeway=timedelta(days=1)).verify(token).subject == "app"


def test_a_token_for_another_audience_is_refused_as_wrong_audience() -> None:
    key = SigningKey.generate()
    token = issue_token(key, subject="app", scopes=[], ttl=HOUR, audience="elsewhere")
    assert reason_of(verifier_of(key), token) == "wrong audience"
    assert verifier_of(key, audience="elsewhere").verify(token).subject == "app"


def test_a_bad_signature_is_refused_as_invalid() -> None:
    key = SigningKey.generate()
    impostor = SigningKey(key.key_id, SigningKey.generate().private_key)
    forged = issue_token(impostor, subject="app", scopes=["ops:admin"], ttl=HOUR)
    assert reason_of(verifier_of(key), forged) == "invalid"

    header, payload, signature = issue_token(
        key, subject="app", scopes=[], ttl=HOUR
    ).split(".")
    tampered = jwt.utils.base64url_encode(
        json.dumps(
            {
                **json.loads(jwt.utils.base64url_decode(payload)),
                "scope": "ops:admin",
            }
        ).encode()
    ).decode()
    assert reason_of(verifier_of(key), f"{header}.{tampered}.{signature}") == "invalid"


def test_an_expired_token_with_a_bad_signature_says_invalid_not_expired() -> None:
    key = SigningKey.generate()
    impostor = SigningKey(key.key_id, SigningKey.generate().private_key)
    last_week = datetime.now(UTC) - timedelta(days=7)
    forged = issue_token(impostor, subject="app", scopes=[], ttl=HOUR, now=last_week)
    assert reason_of(verifier_of(key), forged) == "invalid"


def test_a_token_of_an_unknown_key_id_is_refused_as_invalid() -> None:
    trusted, unknown = SigningKey.generate(), SigningKey.generate()
    token = issue_token(unknown, subject="app", scopes=[], ttl=HOUR)
    assert reason_of(verifier_of(trusted), token) == "invalid"
    no_kid = jwt.encode(
        {"sub": "app", "aud": "closedloop", "iat": 0, "exp": 2**40},
        trusted.private_key,
        algorithm="EdDSA",
    )
    assert reason_of(verifier_of(trusted), no_kid) == "invalid"


@pytest.mark.parametrize(
    "token", ["not-a-token", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30."]
)
def test_malformed_tokens_are_refused_as_invalid(token: str) -> None:
    assert reason_of(verifier_of(SigningKey.generate()), token) == "invalid"


def test_an_unsigned_or_symmetric_token_is_refused_even_with_a_known_kid() -> None:
    key = SigningKey.generate()
    claims = {"sub": "app", "aud": "closedloop", "iat": 0, "exp": 2**40}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": key.key_id})
    assert reason_of(verifier_of(key), unsigned) == "invalid"

    # The public key used as an HMAC secret: the classic algorithm confusion.
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.key_id}
    signing_input = b".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode())
        for part in (header, {**claims, "scope": "ops:admin"})
    )
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    confused = (signing_input + b"." + jwt.utils.base64url_encode(mac)).decode()
    assert reason_of(verifier_of(key), confused) == "invalid"


def test_claims_a_token_must_carry() -> None:
    key = SigningKey.generate()
    for missing in ("sub", "aud", "exp", "iat"):
        claims = {"sub": "app", "aud": "closedloop", "iat": 0, "exp": 2**40}
        del claims[missing]
        token = jwt.encode(
            claims, key.private_key, algorithm="EdDSA", headers={"kid": key.key_id}
        )
        assert reason_of(verifier_of(key), token) == "invalid", missing
    odd_scope = jwt.encode(
        {"sub": "app", "aud": "closedloop", "iat": 0, "exp": 2**40, "scope": ["a"]},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.key_id},
    )
    assert reason_of(verifier_of(key), odd_scope) == "invalid"


def test_an_issuer_is_checked_when_one_is_configured() -> None:
    key = SigningKey.generate()
    token = issue_token(key, subject="app", scopes=[], ttl=HOUR, issuer="https://a")
    assert verifier_of(key, issuer="https://a").verify(token).subject == "app"
    assert reason_of(verifier_of(key, issuer="https://b"), token) == "invalid"


def test_no_token_is_missing() -> None:
    verifier = verifier_of(SigningKey.generate())
    assert reason_of(verifier, None) == "missing"
    assert reason_of(verifier, "") == "missing"


def test_the_authorization_header_carries_a_bearer_token() -> None:
    assert token_from_authorization("Bearer abc.def.ghi") == "abc.def.ghi"
    assert token_from_authorization("bearer  abc.def.ghi ") == "abc.def.ghi"
    for value, reason in [
        (None, "missing"),
        ("", "missing"),
        ("  ", "missing"),
        ("Basic dXNlcjpwdw==", "invalid"),
        ("Bearer ", "invalid"),
        ("abc.def.ghi", "invalid"),
    ]:
        with pytest.raises(TokenError) as refused:
            token_from_authorization(value)
        assert refused.value.reason == reason, value


def test_during_a_rotation_tokens_of_the_old_and_the_new_key_both_verify() -> None:
    old, new = SigningKey.generate(), SigningKey.generate("ES256")
    before = issue_token(old, subject="before", scopes=[], ttl=HOUR)
    after = issue_token(new, subject="after", scopes=[], ttl=HOUR)

    rotating = verifier_of(old, new)
    assert rotating.keys.key_ids == {old.key_id, new.key_id}
    assert rotating.verify(before).subject == "before"
    assert rotating.verify(after).subject == "after"

    rotated = verifier_of(new)
    assert reason_of(rotated, before) == "invalid"
    assert rotated.verify(after).subject == "after"


def test_a_key_id_is_the_keys_thumbprint_and_survives_pem() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_pem(key.pem())
    assert again.key_id == key.key_id
    assert SigningKey.from_pem(key.pem(), key_id="2025-06").key_id == "2025-06"
    assert SigningKey.generate().key_id != key.key_id
    # RFC 8037's example Ed25519 key and its RFC 7638 thumbprint.
    rfc_key = jwt.PyJWK(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        }
    ).key
    assert thumbprint(rfc_key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_keys_load_from_pem_files(tmp_path: Path) -> None:
    first, second = SigningKey.generate(), SigningKey.generate("ES256")
    files = {}
    for name, key in (("first", first), ("second", second)):
        path = tmp_path / f"{name}.pub.pem"
        path.write_bytes(
            key.private_key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        files[key.key_id] = path
    verifier = TokenVerifier(KeySet.from_pem_files(files))
    for key in (first, second):
        token = issue_token(key, subject=key.key_id, scopes=[], ttl=HOUR)
        assert verifier.verify(token).subject == key.key_id


def test_keys_load_from_an_oidc_providers_jwks_file(tmp_path: Path) -> None:
    okp, p256 = SigningKey.generate("EdDSA"), SigningKey.generate("ES256")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p384 = ec.generate_private_key(ec.SECP384R1())
    provider_jwks = {
        "keys": [
            # What a provider publishes: no "alg" on some keys, other kinds beside.
            {**{k: v for k, v in okp.verification_key().jwk().items() if k != "alg"}},
            p256.verification_key().jwk(),
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())),
                "kid": "rsa-1",
            },
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(p384.public_key())),
                "kid": "p384-1",
            },
            {**p256.verification_key().jwk(), "kid": "for-encryption", "use": "enc"},
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(provider_jwks))

    keys = KeySet.from_jwks_file(path)
    assert keys.key_ids == {okp.key_id, p256.key_id}
    verifier = TokenVerifier(keys)
    for key in (okp, p256):
        token = issue_token(key, subject="app", scopes=["insights:read"], ttl=HOUR)
        assert verifier.verify(token).scopes == {"insights:read"}
    assert KeySet.from_jwks(keys.jwks()).key_ids == keys.key_ids


def test_a_jwks_without_a_usable_key_or_a_key_id_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    only_rsa = {
        "keys": [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())),
                "kid": "rsa-1",
            }
        ]
    }
    with pytest.raises(ValueError, match="at least one key"):
        KeySet.from_jwks(only_rsa)
    without_kid = SigningKey.generate().verification_key().jwk()
    del without_kid["kid"]
    with pytest.raises(ValueError, match="kid"):
        KeySet.from_jwks({"keys": [without_kid]})
    with pytest.raises(jwt.PyJWKSetError):
        KeySet.from_jwks({"keys": []})


def test_keys_on_other_curves_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        SigningKey("p384", p384)
    with pytest.raises(ValueError, match="P-256"):
        VerificationKey("p384", p384.public_key())
