"""Growth, lifetime value and how customers were won, from customer_value."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.money import Money
from closedloop.projections.times import months_between, previous_month
from closedloop.readmodels import customer_value
from services.insights.queries import ratio
from services.insights.queries.periods import Period, Window, closed_window

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from services.insights.queries import Tables


@dataclass(frozen=True)
class Growth:
    """One currency's growth figures; a ratio without a denominator is None."""

    currency: str
    revenue_this_period: int
    revenue_last_period: int
    existing_customers: int
    existing_revenue_this_period: int
    existing_revenue_last_period: int
    new_customers: int
    new_earned_customers: int
    new_earned_revenue: int
    nrr: float | None
    enc: float | None
    egr: float | None
    total_growth: float | None


@dataclass(frozen=True)
class AcquisitionSummary:
    """Customers and lifetime value of one acquisition (customer_value.EARNED…)."""

    acquisition: str
    currency: str
    customers: int
    lifetime_value: int
    average_lifetime_value: float


@dataclass(frozen=True)
class CohortValue:
    cohort_month: str
    channel: str
    currency: str
    customers: int
    lifetime_value: int


@dataclass(frozen=True)
class MonthAmount:
    month: str
    amount: Money


@dataclass(frozen=True)
class Customer:
    lead_id: str
    acquired_at_us: int
    acquisition_channel: str
    acquisition: str
    lifetime_value: list[Money]
    monthly: list[MonthAmount]


@dataclass(frozen=True)
class CustomerValueReport:
    period: Period
    previous_period: Period
    growth: list[Growth]
    acquisitions: list[AcquisitionSummary]
    cohorts: list[CohortValue]
    customers: list[Customer]


def customer_value_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    period: Period,
    first: int = 0,
    limit: int | None = None,
) -> CustomerValueReport:
    """NRR, ENC and the earned growth rate of a period, and LTV per customer.

    The previous period is as many months just before. Existing customers are those
    acquired (first win) before the period started; NRR = their revenue in the
    period / their revenue in the previous one; ENC = the period's revenue from
    customers acquired in it who were earned / the previous period's revenue;
    EGR = NRR + ENC - 100% (Reichheld). Lifetime value is recognised revenue to the
    end of the period. Every figure is per currency and over every customer. The
    customers of most lifetime value (its amounts added up) come first, ties by
    lead id; listed are those from position `first` on, `limit` of them at most.
    """
    span = closed_window(period)
    months = months_between(period.from_month, period.to_month)
    before: list[str] = []
    cursor = period.from_month
    for _ in months:
        cursor = previous_month(cursor)
        before.insert(0, cursor)
    customers_t = tables[customer_value.customers]
    monthly_t = tables[customer_value.monthly]
    known = {row.lead_id: row for row in conn.execute(sa.select(customers_t))}
    this: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], int] = defaultdict(int)
    lifetime: dict[tuple[str, str], int] = defaultdict(int)
    series: dict[str, list[MonthAmount]] = defaultdict(list)
    for row in conn.execute(
        sa.select(monthly_t).order_by(
            monthly_t.c.lead_id, monthly_t.c.month, monthly_t.c.currency
        )
    ):
        key = (row.lead_id, row.currency)
        amount = int(row.amount_minor)
        if row.month in months:
            this[key] += amount
        if row.month in before:
            last[key] += amount
        if row.month <= period.to_month:
            lifetime[key] += amount
            series[row.lead_id].append(
                MonthAmount(month=row.month, amount=Money(amount, row.currency))
            )
    currencies = sorted({c for _, c in (*this, *last, *lifetime)})
    start = span.start or 0
    acquisitions, cohorts = _summaries(known, lifetime, span)
    ranked = sorted(
        (lead for lead in known if known[lead].acquired_at_us < (span.end or 0)),
        key=lambda lead: (
            -sum(v for (owner, _), v in lifetime.items() if owner == lead),
            lead,
        ),
    )
    return CustomerValueReport(
        period=period,
        previous_period=Period(from_month=before[0], to_month=before[-1]),
        growth=[
            _growth(currency, known, this, last, start, span) for currency in currencies
        ],
        acquisitions=acquisitions,
        cohorts=cohorts,
        customers=[
            Customer(
                lead_id=lead,
                acquired_at_us=int(known[lead].acquired_at_us),
                acquisition_channel=known[lead].channel,
                acquisition=known[lead].acquisition,
                lifetime_value=[
                    Money(v, c)
                    for (owner, c), v in sorted(lifetime.items())
                    if owner == lead
                ],
                monthly=series.get(lead, []),
            )
            for lead in ranked[first : None if limit is None else first + limit]
        ],
    )


def _growth(
    currency: str,
    known: Mapping[str, Any],
    this: Mapping[tuple[str, str], int],
    last: Mapping[tuple[str, str], int],
    start: int,
    span: Window,
) -> Growth:
    def total(
        values: Mapping[tuple[str, str], int], leads: Iterable[str] | None = None
    ) -> int:
        chosen = set(leads) if leads is not None else None
        return sum(
            v
            for (lead, c), v in values.items()
            if c == currency and (chosen is None or lead in chosen)
        )

    existing = [lead for lead, row in known.items() if row.acquired_at_us < start]
    new = [
        lead for lead, row in known.items() if span.contains(int(row.acquired_at_us))
    ]
    earned = [lead for lead in new if known[lead].acquisition == customer_value.EARNED]
    with_revenue = {lead for (lead, c) in (*this, *last) if c == currency}
    revenue_this, revenue_last = total(this), total(last)
    existing_this, existing_last = total(this, existing), total(last, existing)
    new_earned = total(this, earned)
    nrr = ratio(existing_this, existing_last)
    enc = ratio(new_earned, revenue_last)
    growth = ratio(revenue_this, revenue_last)
    return Growth(
        currency=currency,
        revenue_this_period=revenue_this,
        revenue_last_period=revenue_last,
        existing_customers=len([lead for lead in existing if lead in with_revenue]),
        existing_revenue_this_period=existing_this,
        existing_revenue_last_period=existing_last,
        new_customers=len([lead for lead in new if lead in with_revenue]),
        new_earned_customers=len([lead for lead in earned if lead in with_revenue]),
        new_earned_revenue=new_earned,
        nrr=nrr,
        enc=enc,
        egr=nrr + enc - 1 if nrr is not None and enc is not None else None,
        total_growth=growth - 1 if growth is not None else None,
    )


def _summaries(
    known: Mapping[str, Any],
    lifetime: Mapping[tuple[str, str], int],
    span: Window,
) -> tuple[list[AcquisitionSummary], list[CohortValue]]:
    by_class: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    cohorts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (lead, currency), amount in lifetime.items():
        row = known.get(lead)
        if row is None or (span.end is not None and row.acquired_at_us >= span.end):
            continue
        by_class[(row.acquisition, currency)][0] += 1
        by_class[(row.acquisition, currency)][1] += amount
        cohorts[(row.cohort_month, row.channel, currency)][0] += 1
        cohorts[(row.cohort_month, row.channel, currency)][1] += amount
    return (
        [
            AcquisitionSummary(
                acquisition=acquisition,
                currency=currency,
                customers=count,
                lifetime_value=amount,
                average_lifetime_value=amount / count if count else 0.0,
            )
            for (acquisition, currency), (count, amount) in sorted(by_class.items())
        ],
        [
            CohortValue(
                cohort_month=month,
                channel=channel,
                currency=currency,
                customers=count,
                lifetime_value=amount,
            )
            for (month, channel, currency), (count, amount) in sorted(cohorts.items())
        ],
    )
