"""What the application's queries give back: a deal's credits under a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from closedloop.money import Money
from services.attribution.models import Credit

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    from services.attribution.domain import (
        ConversionCredits,
        ConversionKind,
        ModelCredits,
        Spend,
    )


@dataclass(frozen=True)
class ConversionView:
    """One conversion of a deal credited under one model: one RevenueAttributed."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    kind: ConversionKind
    revenue_id: str
    revenue_kind: str
    amount: Money
    occurred_at: datetime
    credited: ModelCredits


@dataclass(frozen=True)
class DealAttributionView:
    """A deal's revenue under one model: credits per touch, summed over conversions."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    model: str
    model_key: str
    revenue: Money
    credits: tuple[Credit, ...]
    fallback: str
    won_amount: Money
    won_at: datetime
    conversions: tuple[ConversionView, ...]


def conversion_view(conversion: ConversionCredits, model: str) -> ConversionView:
    return ConversionView(
        deal_id=conversion.deal_id,
        lead_id=conversion.lead_id,
        kind=conversion.kind,
        revenue_id=conversion.revenue_id,
        revenue_kind=conversion.revenue_kind,
        amount=conversion.amount,
        occurred_at=conversion.occurred_at,
        credited=conversion.credited[model],
    )


def summed_credits(conversions: Sequence[ConversionView]) -> tuple[Credit, ...]:
    """Per touch, the sum of its credits over the conversions, in journey order.

    Every conversion of a deal is credited over the same journey (the one at the
    win), so each sum of exact credits is exact too.
    """
    totals: dict[tuple[str | None, str], Credit] = {}
    for view in conversions:
        for c in view.credited.credits:
            key = (c.touchpoint_id, c.channel)
            found = totals.get(key)
            totals[key] = (
                c
                if found is None
                else Credit(
                    c.touchpoint_id,
                    c.channel,
                    c.campaign,
                    c.occurred_at,
                    found.amount_minor + c.amount_minor,
                )
            )
    return tuple(totals.values())


def spend_totals(spends: Sequence[Spend]) -> list[Money]:
    """The sum per currency, by code: amounts in different currencies never mix."""
    totals: dict[str, Money] = {}
    for spend in spends:
        currency = spend.amount.currency
        totals[currency] = totals.get(currency, Money(0, currency)) + spend.amount
    return [totals[c] for c in sorted(totals)]
