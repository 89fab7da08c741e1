"""Keyed hashes that join records about one person without storing who they are."""

from __future__ import annotations

import hashlib
import hmac


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_digest(secret_key: bytes, email: str) -> str:
    """HMAC-SHA256 of the normalised address: equal in every service sharing the key."""
    return hmac.new(
        secret_key, normalize_email(email).encode(), hashlib.sha256
    ).hexdigest()
