"""The permissions an RPC may require; tokens' scopes and services' grants name them."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    """Every permission a principal can hold (the scopes of its token).

    The protos declare which one each RPC needs (`closedloop.grpckit.permissions`).
    """

    LEAD_WRITE = "lead:write"
    LEAD_READ = "lead:read"
    DEAL_WRITE = "deal:write"
    DEAL_READ = "deal:read"
    CONSENT_WRITE = "consent:write"
    CONSENT_READ = "consent:read"
    CONSENT_ERASE = "consent:erase"
    ATTRIBUTION_WRITE = "attribution:write"
    ATTRIBUTION_READ = "attribution:read"
    INSIGHTS_READ = "insights:read"
    # No RPC needs it: it lets answers carry the fields marked personal.
    PERSONAL_READ = "personal:read"
    OPS_ADMIN = "ops:admin"


EVERY_PERMISSION: tuple[str, ...] = tuple(Permission)
"""In declaration order, so a token carrying all of them reads the same every time."""
