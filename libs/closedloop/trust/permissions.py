"""The permissions an RPC may require; tokens' scopes and services' grants name them."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    LEAD_WRITE = "lead:write"
    DEAL_WRITE = "deal:write"
    CONSENT_WRITE = "consent:write"
    CONSENT_ERASE = "consent:erase"
    ATTRIBUTION_WRITE = "attribution:write"
    INSIGHTS_READ = "insights:read"
    PERSONAL_READ = "personal:read"
    OPS_ADMIN = "ops:admin"


EVERY_PERMISSION: tuple[str, ...] = tuple(Permission)
"""In declaration order, so a token carrying all of them reads the same every time."""
