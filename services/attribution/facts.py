"""What the consumers of other contexts' events and the API pass to the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid
    from datetime import datetime

    from closedloop.money import Money


@dataclass(frozen=True)
class DealWonFact:
    deal_id: uuid.UUID
    lead_id: uuid.UUID
    amount: Money
    closed_at: datetime


@dataclass(frozen=True)
class RevenueFact:
    deal_id: uuid.UUID
    lead_id: uuid.UUID
    revenue_id: uuid.UUID
    kind: str
    amount: Money
    recognized_at: datetime


@dataclass(frozen=True)
class TouchFact:
    touchpoint_id: str
    anonymous_id: str
    lead_id: uuid.UUID | None
    channel: str
    occurred_at: datetime


@dataclass(frozen=True)
class RecordSpend:
    channel: str
    campaign: str
    amount: Money
    period_start: datetime
    period_end: datetime
    occurred_at: datetime
    idempotency_key: str = ""


@dataclass(frozen=True)
class SpendFilter:
    channel: str = ""
    campaign: str = ""
    start: datetime | None = None
    end: datetime | None = None
