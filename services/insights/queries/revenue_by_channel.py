"""Credited revenue next to spend, from the revenue_by_channel read model."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from closedloop.errors import NotFound
from closedloop.money import Money
from closedloop.readmodels import revenue_by_channel
from services.insights.queries.periods import window

if TYPE_CHECKING:
    from services.insights.queries import Tables
    from services.insights.queries.periods import Period


@dataclass(frozen=True)
class RevenueRow:
    """One group's sums; ROI, ROAS and CAC are None where they cannot be given."""

    month: str
    channel: str
    campaign: str
    currency: str
    revenue: Money
    spend: Money
    customers: float
    conversions: int
    roi: float | None
    roas: float | None
    cac_minor_units: float | None


@dataclass(frozen=True)
class RevenueReport:
    model: str
    model_keys: list[str]
    available_models: list[str]
    rows: list[RevenueRow]
    #: Per currency, in currency order.
    total_revenue: list[Money]
    total_spend: list[Money]


def revenue_by_channel_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    model: str,
    period: Period,
    conversion: str = revenue_by_channel.WON,
    by_channel: bool = True,
    by_campaign: bool = False,
    by_month: bool = False,
) -> RevenueReport:
    """Credited revenue next to spend; ROI, ROAS and CAC only where spend exists.

    ROI is revenue-based ((revenue - spend) / spend): no margin is known. CAC
    divides spend by the customers the model credits to the row (fractional under
    fractional models), so it is given for won revenue only. Spend has no model:
    it is the same under every model. `conversion` is a conversion kind of the
    read model (revenue_by_channel.WON or RECOGNIZED); rows are grouped by channel,
    campaign or both, and by month when `by_month`. Rows come by month, then
    highest revenue first, ties by channel, campaign and currency (the rest of a
    row's key), so that pages cut from them never overlap. `model` is a name or
    key: the servicer refuses a request without one among its other checks.
    """
    span = window(period)
    revenue = tables[revenue_by_channel.revenue]
    available = sorted(
        {row[0] for row in conn.execute(sa.select(revenue.c.model).distinct())}
        | {row[0] for row in conn.execute(sa.select(revenue.c.model_key).distinct())}
    )
    if available and model not in available:
        raise NotFound(
            f"no revenue was attributed under model {model!r}; "
            f"known: {', '.join(available)}"
        )

    def key(
        month: str, channel: str, campaign: str, currency: str
    ) -> tuple[str, str, str, str]:
        return (
            month if by_month else "",
            channel if by_channel else "",
            campaign if by_campaign else "",
            currency,
        )

    sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    model_keys: set[str] = set()
    for row in conn.execute(
        sa.select(revenue).where(
            sa.or_(revenue.c.model == model, revenue.c.model_key == model),
            revenue.c.conversion_kind == conversion,
        )
    ):
        if not span.has_month(row.month):
            continue
        model_keys.add(row.model_key)
        values = sums[key(row.month, row.channel, row.campaign, row.currency)]
        values[0] += int(row.revenue_minor)
        values[1] += int(row.customers_micro)
        values[2] += int(row.conversions)
    spend = tables[revenue_by_channel.spend_by_month]
    for row in conn.execute(sa.select(spend)):
        if span.has_month(row.month):
            sums[key(row.month, row.channel, row.campaign, row.currency)][3] += int(
                row.spend_minor
            )
    rows: list[RevenueRow] = []
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (month, channel, campaign, currency), (amount, micro, count, spent) in sorted(
        sums.items(), key=lambda item: (item[0][0], -item[1][0], item[0][1:])
    ):
        customers = micro / revenue_by_channel.CUSTOMER_UNITS
        rows.append(
            RevenueRow(
                month=month,
                channel=channel,
                campaign=campaign,
                currency=currency,
                revenue=Money(amount, currency),
                spend=Money(spent, currency),
                customers=customers,
                conversions=count,
                roi=(amount - spent) / spent if spent else None,
                roas=amount / spent if spent else None,
                cac_minor_units=spent / customers if spent and micro else None,
            )
        )
        totals[currency][0] += amount
        totals[currency][1] += spent
    ordered = sorted(totals.items())
    return RevenueReport(
        model=model,
        model_keys=sorted(model_keys),
        available_models=available,
        rows=rows,
        total_revenue=[Money(amount, currency) for currency, (amount, _) in ordered],
        total_spend=[Money(spent, currency) for currency, (_, spent) in ordered],
    )
