"""The cohort funnel by channel, from the funnel_by_channel read model."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.money import Money
from closedloop.readmodels import funnel_by_channel
from services.insights.queries import ratio
from services.insights.queries.periods import window

if TYPE_CHECKING:
    from services.insights.queries import Tables
    from services.insights.queries.periods import Period


@dataclass(frozen=True)
class FunnelRow:
    """One channel's counts, rates and median times between stages (microseconds)."""

    channel: str
    visitors: int
    visitors_identified: int
    leads: int
    mqls: int
    sals: int
    opportunities: int
    won: int
    disqualified: int
    won_revenue: list[Money]
    visitor_to_lead_rate: float | None
    lead_to_mql_rate: float | None
    mql_to_sal_rate: float | None
    sal_to_opportunity_rate: float | None
    close_rate: float | None
    lead_to_won_rate: float | None
    median_lead_to_mql: float | None
    median_mql_to_sal: float | None
    median_sal_to_opportunity: float | None
    median_opportunity_to_won: float | None
    median_lead_to_won: float | None


@dataclass(frozen=True)
class Funnel:
    rows: list[FunnelRow]
    total: FunnelRow


@dataclass
class _Cohort:
    visitors: int = 0
    identified: int = 0
    leads: int = 0
    mqls: int = 0
    sals: int = 0
    opportunities: int = 0
    won: int = 0
    disqualified: int = 0
    lead_to_mql: list[int] = field(default_factory=list)
    mql_to_sal: list[int] = field(default_factory=list)
    sal_to_opportunity: list[int] = field(default_factory=list)
    opportunity_to_won: list[int] = field(default_factory=list)
    lead_to_won: list[int] = field(default_factory=list)
    won_revenue: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add_person(self, row: Any) -> None:
        won = row.won_at_us
        opportunity = (
            row.opportunity_at_us if row.opportunity_at_us is not None else won
        )
        sal = row.sal_at_us if row.sal_at_us is not None else opportunity
        mql = row.mql_at_us if row.mql_at_us is not None else sal
        self.leads += 1
        self.mqls += mql is not None
        self.sals += sal is not None
        self.opportunities += opportunity is not None
        self.won += won is not None
        self.disqualified += bool(row.disqualified)
        created = row.created_at_us
        _between(self.lead_to_mql, created, row.mql_at_us)
        _between(self.mql_to_sal, row.mql_at_us, row.sal_at_us)
        _between(self.sal_to_opportunity, row.sal_at_us, row.opportunity_at_us)
        _between(self.opportunity_to_won, row.opportunity_at_us, won)
        _between(self.lead_to_won, created, won)
        for currency, amount in json.loads(row.won_revenue).items():
            self.won_revenue[currency] += int(amount)

    def merge(self, other: _Cohort) -> None:
        for name in (
            "visitors",
            "identified",
            "leads",
            "mqls",
            "sals",
            "opportunities",
            "won",
            "disqualified",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in (
            "lead_to_mql",
            "mql_to_sal",
            "sal_to_opportunity",
            "opportunity_to_won",
            "lead_to_won",
        ):
            getattr(self, name).extend(getattr(other, name))
        for currency, amount in other.won_revenue.items():
            self.won_revenue[currency] += amount

    def row(self, channel: str) -> FunnelRow:
        return FunnelRow(
            channel=channel,
            visitors=self.visitors,
            visitors_identified=self.identified,
            leads=self.leads,
            mqls=self.mqls,
            sals=self.sals,
            opportunities=self.opportunities,
            won=self.won,
            disqualified=self.disqualified,
            won_revenue=[Money(a, c) for c, a in sorted(self.won_revenue.items())],
            visitor_to_lead_rate=ratio(self.identified, self.visitors),
            lead_to_mql_rate=ratio(self.mqls, self.leads),
            mql_to_sal_rate=ratio(self.sals, self.mqls),
            sal_to_opportunity_rate=ratio(self.opportunities, self.sals),
            close_rate=ratio(self.won, self.opportunities),
            lead_to_won_rate=ratio(self.won, self.leads),
            median_lead_to_mql=_median(self.lead_to_mql),
            median_mql_to_sal=_median(self.mql_to_sal),
            median_sal_to_opportunity=_median(self.sal_to_opportunity),
            median_opportunity_to_won=_median(self.opportunity_to_won),
            median_lead_to_won=_median(self.lead_to_won),
        )


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _between(into: list[int], start: int | None, end: int | None) -> None:
    if start is not None and end is not None:
        into.append(end - start)


def funnel_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    period: Period,
    by_last_touch: bool = False,
    cohort_by_mql: bool = False,
) -> Funnel:
    """Cohort funnel by channel (DOMAIN.md 3).

    The cohort is the people who became leads (or MQLs, with `cohort_by_mql`) in
    the period; each count is how many of them ever reached that stage, where a
    later stage counts as having passed the earlier ones (a lead accepted without
    qualification is counted as an MQL). Medians are over the people who have both
    stage times. Visitors are the anonymous visitors first seen in the period,
    grouped by their first touch (or, with `by_last_touch`, their last touch before
    identification).
    """
    span = window(period)
    people = tables[funnel_by_channel.people]
    cohort_column = people.c.mql_at_us if cohort_by_mql else people.c.created_at_us
    query = sa.select(people).where(cohort_column.is_not(None))
    if span.start is not None:
        query = query.where(cohort_column >= span.start)
    if span.end is not None:
        query = query.where(cohort_column < span.end)
    groups: dict[str, _Cohort] = defaultdict(_Cohort)
    for row in conn.execute(query):
        groups[row.last_channel if by_last_touch else row.first_channel].add_person(row)
    visitors = tables[funnel_by_channel.visitors]
    visits = sa.select(visitors)
    if span.start is not None:
        visits = visits.where(visitors.c.first_at_us >= span.start)
    if span.end is not None:
        visits = visits.where(visitors.c.first_at_us < span.end)
    for row in conn.execute(visits):
        group = groups[row.last_channel if by_last_touch else row.first_channel]
        group.visitors += 1
        group.identified += bool(row.identified)
    total = _Cohort()
    rows = []
    for channel in sorted(groups):
        rows.append(groups[channel].row(channel))
        total.merge(groups[channel])
    return Funnel(rows=rows, total=total.row(""))
