"""Bearer tokens: signed JWTs (EdDSA over Ed25519, or ES256) issued and verified.

A token carries its subject (`sub`), its permissions as OAuth's space-separated `scope`
claim, an audience, an expiry, the time it was issued and, in its header, the id of
the key that signed it. Verification looks that key id up in a configured key set, so
two keys may be valid at once while one replaces the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from closedloop.trust.principal import Principal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PRIVATE_KEY_TYPES = (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)
_PUBLIC_KEY_TYPES = (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)
Algorithm = Literal["EdDSA", "ES256"]
Reason = Literal["expired", "invalid", "wrong audience", "missing"]

ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "ES256")
DEFAULT_AUDIENCE = "closedloop"
_BEARER = "bearer "


class TokenError(Exception):
    """A token that does not let its bearer in; the message is the reason, nothing more.

    The reason is all a caller ever learns: which check failed in detail (a signature,
    a key id, a claim) would help someone forging tokens more than someone using them.
    """

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


def algorithm_of(key: PublicKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    msg = f"a token key is Ed25519 or ECDSA P-256, not {key.curve.name}"
    raise ValueError(msg)


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The key as a JSON Web Key, without its id."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(key, as_dict=True))
    return dict(ECAlgorithm.to_jwk(key, as_dict=True))


def thumbprint(key: PublicKey) -> str:
    """RFC 7638's thumbprint: a key id that follows from the key itself."""
    jwk = public_jwk(key)
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class VerificationKey:
    """A public key and the id that tokens signed by it name in their header."""

    key_id: str
    public_key: PublicKey

    def __post_init__(self) -> None:
        algorithm_of(self.public_key)

    @property
    def algorithm(self) -> Algorithm:
        return algorithm_of(self.public_key)

    def jwk(self) -> dict[str, Any]:
        return {
            **public_jwk(self.public_key),
            "kid": self.key_id,
            "alg": self.algorithm,
            "use": "sig",
        }


@dataclass(frozen=True)
class SigningKey:
    """A private key that issues tokens, and its id (the public key's thumbprint)."""

    key_id: str
    private_key: PrivateKey

    def __post_init__(self) -> None:
        algorithm_of(self.private_key.public_key())

    @classmethod
    def generate(cls, algorithm: Algorithm = "EdDSA") -> SigningKey:
        key: PrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "EdDSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        return cls(thumbprint(key.public_key()), key)

    @classmethod
    def from_pem(cls, pem: bytes, key_id: str | None = None) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, _PRIVATE_KEY_TYPES):
            msg = "a token signing key is Ed25519 or ECDSA P-256"
            raise TypeError(msg)
        return cls(key_id or thumbprint(key.public_key()), key)

    @property
    def algorithm(self) -> Algorithm:
        return algorithm_of(self.private_key.public_key())

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.key_id, self.private_key.public_key())


class KeySet:
    """The keys a verifier trusts, by key id: usually one, two while rotating."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys = {key.key_id: key for key in keys}
        if not self._keys:
            msg = "a key set needs at least one key"
            raise ValueError(msg)

    @classmethod
    def from_pem_files(cls, files: Mapping[str, Path]) -> KeySet:
        """Public keys in PEM, by the key id their tokens carry."""
        keys = []
        for key_id, path in files.items():
            key = serialization.load_pem_public_key(path.read_bytes())
            if not isinstance(key, _PUBLIC_KEY_TYPES):
                msg = f"{path}: a token key is Ed25519 or ECDSA P-256"
                raise TypeError(msg)
            keys.append(VerificationKey(key_id, key))
        return cls(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> KeySet:
        """An OIDC provider's JSON Web Key Set: its Ed25519 and P-256 signing keys.

        Keys of other kinds (RSA, other curves) and encryption keys are left out: no
        token signed with them is accepted anyway. Every key kept must have an id.
        """
        keys = []
        for jwk in jwt.PyJWKSet.from_dict(dict(jwks)).keys:
            if jwk.algorithm_name not in ALGORITHMS or jwk.public_key_use == "enc":
                continue
            public = jwk.key
            if isinstance(public, _PRIVATE_KEY_TYPES):
                public = public.public_key()
            if not jwk.key_id:
                msg = "every key of a JWKS needs a key id (kid)"
                raise ValueError(msg)
            keys.append(VerificationKey(jwk.key_id, public))
        return cls(keys)

    @classmethod
    def from_jwks_file(cls, path: Path) -> KeySet:
        return cls.from_jwks(json.loads(path.read_text()))

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def get(self, key_id: object) -> VerificationKey | None:
        return self._keys.get(key_id) if isinstance(key_id, str) else None

    def jwks(self) -> dict[str, Any]:
        """The set as a JWKS document, the same form a provider publishes."""
        return {"keys": [key.jwk() for key in self._keys.values()]}


def issue_token(
    key: SigningKey,
    *,
    subject: str,
    scopes: Iterable[str],
    ttl: timedelta,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str | None = None,
    now: datetime | None = None,
) -> str:
    issued_at = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(scopes),
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + ttl,
    }
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(
        claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.key_id}
    )


def token_from_authorization(value: str | None) -> str:
    """The token of an `authorization: Bearer <token>` header (metadata) value."""
    if not value or not value.strip():
        raise TokenError("missing")
    if not value.lower().startswith(_BEARER) or not value[len(_BEARER) :].strip():
        raise TokenError("invalid")
    return value[len(_BEARER) :].strip()


class TokenVerifier:
    """Checks a token against the trusted keys and this audience; says who it names."""

    def __init__(
        self,
        keys: KeySet,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        leeway: timedelta = timedelta(0),
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise TokenError("missing")
        claims = self._claims(token)
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("invalid")
        return Principal(
            subject=claims["sub"], scopes=frozenset(scope.split()), kind="application"
        )

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            key = self.keys.get(jwt.get_unverified_header(token).get("kid"))
            if key is None:
                raise TokenError("invalid")
            return jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid") from None
