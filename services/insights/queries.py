"""The questions the insights service answers, as queries on the read models.

Each function takes an open read transaction and the active tables of one read
model, and returns the response message. Figures follow DOMAIN.md sections 3 and 6;
the choices made where it is silent are documented on each function.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration

from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.errors import InvalidArgument, NotFound
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.projections.times import (
    datetime_of,
    month_end,
    month_start,
    months_between,
    parse_month,
    previous_month,
)
from closedloop.protobuf import enum_number, timestamp
from closedloop.readmodels import (
    consent_status,
    customer_journey,
    customer_value,
    funnel_by_channel,
    revenue_by_channel,
)
from closedloop.readmodels.identity import (
    LEAD,
    VISITOR,
    IdentityReader,
    IdentityTables,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from google.protobuf.timestamp_pb2 import Timestamp

Tables = dict[sa.Table, sa.Table]


# -- periods -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A period as microseconds [start, end); None for an open bound."""

    start: int | None
    end: int | None
    first_month: str = ""
    last_month: str = ""

    def contains(self, us: int | None) -> bool:
        if us is None:
            return False
        return (self.start is None or us >= self.start) and (
            self.end is None or us < self.end
        )

    def has_month(self, month: str) -> bool:
        return (not self.first_month or month >= self.first_month) and (
            not self.last_month or month <= self.last_month
        )


def window(period: pb.Period, field_name: str = "period") -> Window:
    for name in ("from_month", "to_month"):
        value = getattr(period, name)
        if value:
            try:
                parse_month(value)
            except ValueError as error:
                raise InvalidArgument(f"{field_name}.{name}", str(error)) from None
    if period.from_month and period.to_month and period.from_month > period.to_month:
        raise InvalidArgument(f"{field_name}.to_month", "is before from_month")
    return Window(
        start=month_start(period.from_month) if period.from_month else None,
        end=month_end(period.to_month) if period.to_month else None,
        first_month=period.from_month,
        last_month=period.to_month,
    )


def money(amount: int, currency: str) -> Money:
    return Money(minor_units=amount, currency=currency)


def _ts(us: int | None) -> Timestamp | None:
    return timestamp(datetime_of(us)) if us is not None else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


# -- customer journey --------------------------------------------------------------

_KIND = {
    name: pb.EntryKind.Value(f"ENTRY_KIND_{name.upper()}")
    for name in (
        customer_journey.TOUCHPOINT,
        customer_journey.LEAD_CAPTURED,
        customer_journey.VISITOR_IDENTIFIED,
        customer_journey.STAGE_CHANGED,
        customer_journey.LEADS_MERGED,
        customer_journey.DEAL_OPENED,
        customer_journey.DEAL_STAGE_CHANGED,
        customer_journey.DEAL_AMOUNT_UPDATED,
        customer_journey.DEAL_WON,
        customer_journey.DEAL_LOST,
        customer_journey.REVENUE_RECOGNIZED,
        customer_journey.CONSENT_GRANTED,
        customer_journey.CONSENT_WITHDRAWN,
        customer_journey.PREFERENCES_CHANGED,
        customer_journey.ERASED,
    )
}


def journey_identity(conn: sa.Connection, tables: Tables) -> IdentityReader:
    ids = customer_journey.identity
    return IdentityReader(
        conn,
        IdentityTables(tables[ids.leads], tables[ids.visitors], tables[ids.touches]),
    )


def customer_journey_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    lead_id: str = "",
    email_digest: str = "",
) -> pb.GetCustomerJourneyResponse:
    """The person's journey, found by any of its leads or by email.

    By email: the leads captured with the address's keyed hash (an erased person's
    hash is forgotten, so it is not found by email); when several people used it,
    the one captured last.
    """
    people = journey_identity(conn, tables)
    leads = people.t.leads
    if email_digest:
        found = list(
            conn.execute(
                sa.select(leads.c.lead_id, leads.c.created_at_us)
                .where(leads.c.email_digest == email_digest)
                .order_by(leads.c.created_at_us.desc(), leads.c.lead_id)
            )
        )
        if not found:
            raise NotFound("no person with this email is known to the read model")
        lead_id = found[0].lead_id
    elif not conn.execute(
        sa.select(leads.c.lead_id).where(leads.c.lead_id == lead_id)
    ).first():
        raise NotFound(f"lead {lead_id} is not known to the read model")
    root = people.root(lead_id)
    members = people.members(root)
    rows = {row.lead_id: row for row in people.lead_rows(members)}
    anonymous_ids = people.anonymous_ids(members)
    digests = sorted({r.email_digest for r in rows.values() if r.email_digest})
    t = tables[customer_journey.entries]
    owned = sa.or_(
        sa.and_(t.c.owner_kind == LEAD, t.c.owner_key.in_(members)),
        sa.and_(t.c.owner_kind == VISITOR, t.c.owner_key.in_(anonymous_ids)),
        sa.and_(t.c.owner_kind == customer_journey.EMAIL, t.c.owner_key.in_(digests)),
    )
    entries = [
        _journey_entry(row)
        for row in conn.execute(
            sa.select(t)
            .where(owned)
            .order_by(
                t.c.occurred_at_us, t.c.recorded_at_us, t.c.sequence, t.c.entry_id
            )
        )
    ]
    root_row = rows.get(root)
    stage = root_row.stage if root_row is not None else "lead"
    if any(e.kind == pb.ENTRY_KIND_DEAL_WON for e in entries):
        stage = "customer"
    created = [r.created_at_us for r in rows.values() if r.created_at_us is not None]
    erased = [r.erased_at_us for r in rows.values() if r.erased_at_us is not None]
    return pb.GetCustomerJourneyResponse(
        lead_id=root,
        lead_ids=members,
        anonymous_ids=anonymous_ids,
        stage=stage,
        created_at=_ts(min(created) if created else None),
        erased=bool(erased),
        erased_at=_ts(min(erased) if erased else None),
        entries=entries,
    )


def _journey_entry(row: Any) -> pb.JourneyEntry:
    details: dict[str, str] = json.loads(row.details)
    entry = pb.JourneyEntry(
        kind=_KIND.get(row.kind, pb.ENTRY_KIND_UNSPECIFIED),  # type: ignore[arg-type]
        occurred_at=_ts(int(row.occurred_at_us)),
        recorded_at=_ts(int(row.recorded_at_us)),
        event_id=row.entry_id,
        event_type=row.event_type,
        lead_id=row.owner_key if row.owner_kind == LEAD else "",
        anonymous_id=row.owner_key if row.owner_kind == VISITOR else "",
        channel=row.channel,
        campaign=row.campaign,
        stage=row.stage,
        deal_id=row.deal_id,
        details=details,
    )
    if row.amount_minor is not None:
        entry.amount.CopyFrom(money(int(row.amount_minor), row.currency))
    entry.summary = journey_summary(row.kind, entry, details)
    return entry


def journey_summary(
    kind: str, entry: pb.JourneyEntry, details: Mapping[str, str]
) -> str:
    amount = (
        f" {entry.amount.minor_units} {entry.amount.currency}"
        if entry.HasField("amount")
        else ""
    )
    if kind == customer_journey.TOUCHPOINT:
        campaign = f" / {entry.campaign}" if entry.campaign else ""
        interaction = details.get("interaction", "")
        return f"touch {entry.channel}{campaign}" + (
            f" ({interaction})" if interaction else ""
        )
    if kind == customer_journey.STAGE_CHANGED:
        return f"stage -> {entry.stage}"
    if kind in {customer_journey.CONSENT_GRANTED, customer_journey.CONSENT_WITHDRAWN}:
        verb = "granted" if kind == customer_journey.CONSENT_GRANTED else "withdrew"
        purpose, method = details.get("purpose", ""), details.get("method", "")
        return f"consent {verb}: {purpose} by {entry.channel} ({method})"
    if kind == customer_journey.DEAL_STAGE_CHANGED:
        return f"deal stage -> {entry.stage}"
    if kind == customer_journey.REVENUE_RECOGNIZED:
        return f"revenue {details.get('kind', '')}{amount}"
    return kind.replace("_", " ") + amount


# -- revenue by channel --------------------------------------------------------------


def revenue_by_channel_of(  # noqa: C901 - grouping, spend join and ratios in one pass
    conn: sa.Connection, tables: Tables, request: pb.GetRevenueByChannelRequest
) -> pb.GetRevenueByChannelResponse:
    """Credited revenue next to spend; ROI, ROAS and CAC only where spend exists.

    ROI is revenue-based ((revenue - spend) / spend): no margin is known. CAC
    divides spend by the customers the model credits to the row (fractional under
    fractional models), so it is given for won revenue only. Spend has no model:
    it is the same under every model.
    """
    if not request.model:
        raise InvalidArgument("model", "is required (e.g. linear)")
    span = window(request.period)
    revenue = tables[revenue_by_channel.revenue]
    available = sorted(
        {row[0] for row in conn.execute(sa.select(revenue.c.model).distinct())}
        | {row[0] for row in conn.execute(sa.select(revenue.c.model_key).distinct())}
    )
    if available and request.model not in available:
        raise NotFound(
            f"no revenue was attributed under model {request.model!r}; "
            f"known: {', '.join(available)}"
        )
    kind = (
        revenue_by_channel.RECOGNIZED
        if request.conversion == pb.CONVERSION_REVENUE_RECOGNIZED
        else revenue_by_channel.WON
    )
    group_by = request.group_by or pb.GROUP_BY_CHANNEL

    def key(
        month: str, channel: str, campaign: str, currency: str
    ) -> tuple[str, str, str, str]:
        return (
            month if request.by_month else "",
            "" if group_by == pb.GROUP_BY_CAMPAIGN else channel,
            "" if group_by == pb.GROUP_BY_CHANNEL else campaign,
            currency,
        )

    sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    model_keys: set[str] = set()
    for row in conn.execute(
        sa.select(revenue).where(
            sa.or_(
                revenue.c.model == request.model, revenue.c.model_key == request.model
            ),
            revenue.c.conversion_kind == kind,
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
    response = pb.GetRevenueByChannelResponse(
        model=request.model, model_keys=sorted(model_keys), available_models=available
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (month, channel, campaign, currency), (amount, micro, count, spent) in sorted(
        sums.items(), key=lambda item: (item[0][0], -item[1][0], item[0][1:])
    ):
        row_pb = pb.RevenueRow(
            month=month,
            channel=channel,
            campaign=campaign,
            currency=currency,
            revenue=money(amount, currency),
            spend=money(spent, currency),
            customers=micro / revenue_by_channel.CUSTOMER_UNITS,
            conversions=count,
        )
        if spent:
            row_pb.roi = (amount - spent) / spent
            row_pb.roas = amount / spent
            if micro:
                row_pb.cac_minor_units = spent / (
                    micro / revenue_by_channel.CUSTOMER_UNITS
                )
        response.rows.append(row_pb)
        totals[currency][0] += amount
        totals[currency][1] += spent
    for currency, (amount, spent) in sorted(totals.items()):
        response.total_revenue.append(money(amount, currency))
        response.total_spend.append(money(spent, currency))
    return response


# -- funnel ----------------------------------------------------------------------------


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

    def row(self, channel: str) -> pb.FunnelRow:
        row = pb.FunnelRow(
            channel=channel,
            visitors=self.visitors,
            visitors_identified=self.identified,
            leads=self.leads,
            mqls=self.mqls,
            sals=self.sals,
            opportunities=self.opportunities,
            won=self.won,
            disqualified=self.disqualified,
            won_revenue=[money(a, c) for c, a in sorted(self.won_revenue.items())],
        )
        for name, value in (
            ("visitor_to_lead_rate", _ratio(self.identified, self.visitors)),
            ("lead_to_mql_rate", _ratio(self.mqls, self.leads)),
            ("mql_to_sal_rate", _ratio(self.sals, self.mqls)),
            ("sal_to_opportunity_rate", _ratio(self.opportunities, self.sals)),
            ("close_rate", _ratio(self.won, self.opportunities)),
            ("lead_to_won_rate", _ratio(self.won, self.leads)),
        ):
            if value is not None:
                setattr(row, name, value)
        for name, values in (
            ("median_lead_to_mql", self.lead_to_mql),
            ("median_mql_to_sal", self.mql_to_sal),
            ("median_sal_to_opportunity", self.sal_to_opportunity),
            ("median_opportunity_to_won", self.opportunity_to_won),
            ("median_lead_to_won", self.lead_to_won),
        ):
            if values:
                getattr(row, name).CopyFrom(_duration(statistics.median(values)))
        return row


def _between(into: list[int], start: int | None, end: int | None) -> None:
    if start is not None and end is not None:
        into.append(end - start)


def _duration(us: float) -> Duration:
    whole = int(us)
    return Duration(seconds=whole // 1_000_000, nanos=(whole % 1_000_000) * 1000)


def funnel_of(
    conn: sa.Connection, tables: Tables, request: pb.GetFunnelRequest
) -> pb.GetFunnelResponse:
    """Cohort funnel by channel (DOMAIN.md 3).

    The cohort is the people who became leads (or MQLs, with COHORT_STAGE_MQL) in
    the period; each count is how many of them ever reached that stage, where a
    later stage counts as having passed the earlier ones (a lead accepted without
    qualification is counted as an MQL). Medians are over the people who have both
    stage times. Visitors are the anonymous visitors first seen in the period,
    grouped by their first touch (or their last touch before identification).
    """
    span = window(request.period)
    touch = request.touch or pb.TOUCH_FIRST
    cohort_stage = request.cohort_stage or pb.COHORT_STAGE_LEAD
    by_last = touch == pb.TOUCH_LAST_BEFORE_LEAD
    people = tables[funnel_by_channel.people]
    cohort_column = (
        people.c.mql_at_us
        if cohort_stage == pb.COHORT_STAGE_MQL
        else people.c.created_at_us
    )
    query = sa.select(people).where(cohort_column.is_not(None))
    if span.start is not None:
        query = query.where(cohort_column >= span.start)
    if span.end is not None:
        query = query.where(cohort_column < span.end)
    groups: dict[str, _Cohort] = defaultdict(_Cohort)
    for row in conn.execute(query):
        groups[row.last_channel if by_last else row.first_channel].add_person(row)
    visitors = tables[funnel_by_channel.visitors]
    visits = sa.select(visitors)
    if span.start is not None:
        visits = visits.where(visitors.c.first_at_us >= span.start)
    if span.end is not None:
        visits = visits.where(visitors.c.first_at_us < span.end)
    for row in conn.execute(visits):
        group = groups[row.last_channel if by_last else row.first_channel]
        group.visitors += 1
        group.identified += bool(row.identified)
    total = _Cohort()
    response = pb.GetFunnelResponse(touch=touch, cohort_stage=cohort_stage)
    for channel in sorted(groups):
        response.rows.append(groups[channel].row(channel))
        total.merge(groups[channel])
    response.total.CopyFrom(total.row(""))
    return response


# -- consent ---------------------------------------------------------------------------


def _purpose(name: str) -> Any:
    return enum_number(consent_types.Purpose, "PURPOSE_", name)


def _channel(name: str) -> Any:
    return enum_number(consent_types.Channel, "CHANNEL_", name)


def _state(name: str) -> Any:
    return enum_number(consent_types.ConsentState, "CONSENT_STATE_", name)


def consent_status_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    lead_id: str = "",
    email_digest: str = "",
    include_history: bool = False,
) -> pb.GetConsentStatusResponse:
    """A person's consent records, their states, and their fold together.

    Without a person: the number of records per purpose, channel and state.
    """
    subjects = tables[consent_status.subjects]
    states = tables[consent_status.states]
    trail = tables[consent_status.changes]
    links = tables[consent_status.lead_digests]
    if not lead_id and not email_digest:
        response = pb.GetConsentStatusResponse()
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        for row in conn.execute(
            sa.select(
                states.c.purpose, states.c.channel, states.c.state, sa.func.count()
            ).group_by(states.c.purpose, states.c.channel, states.c.state)
        ):
            counts[(row[0], row[1])][row[2]] = int(row[3])
        for (purpose, channel), by_state in sorted(counts.items()):
            response.counts.append(
                pb.PurposeCount(
                    purpose=_purpose(purpose),
                    channel=_channel(channel),
                    opted_in=by_state.get(consent_status.OPTED_IN, 0),
                    opted_out=by_state.get(consent_status.OPTED_OUT, 0),
                    pending_confirmation=by_state.get(consent_status.PENDING, 0),
                )
            )
        return response
    if lead_id:
        lead_ids = {lead_id}
        digests = {
            row[0]
            for row in conn.execute(
                sa.select(links.c.email_digest).where(links.c.lead_id == lead_id)
            )
        }
        lead_subjects = [
            row[0]
            for row in conn.execute(
                sa.select(subjects.c.subject_aggregate_id).where(
                    subjects.c.lead_id == lead_id
                )
            )
        ]
        digests |= {
            row[0]
            for row in conn.execute(
                sa.select(trail.c.email_digest)
                .where(trail.c.subject_aggregate_id.in_(lead_subjects))
                .distinct()
            )
            if row[0]
        }
    else:
        digests = {email_digest}
        lead_ids = {
            row[0]
            for row in conn.execute(
                sa.select(links.c.lead_id).where(links.c.email_digest == email_digest)
            )
        }
    found = list(
        conn.execute(
            sa.select(subjects)
            .where(
                sa.or_(
                    sa.and_(subjects.c.lead_id != "", subjects.c.lead_id.in_(lead_ids)),
                    sa.and_(
                        subjects.c.lead_id == "", subjects.c.email_digest.in_(digests)
                    ),
                )
            )
            .order_by(subjects.c.lead_id.desc(), subjects.c.subject_aggregate_id)
        )
    )
    if not found:
        raise NotFound("no consent was recorded for this person")
    response = pb.GetConsentStatusResponse()
    history: list[consent_status.Change] = []
    for subject in found:
        item = pb.ConsentSubject(
            subject_aggregate_id=subject.subject_aggregate_id,
            lead_id=subject.lead_id,
            erased=subject.erased_at_us is not None,
            erased_at=_ts(subject.erased_at_us),
        )
        for row in conn.execute(
            sa.select(states)
            .where(states.c.subject_aggregate_id == subject.subject_aggregate_id)
            .order_by(states.c.purpose, states.c.channel)
        ):
            item.states.append(
                pb.ConsentPairState(
                    purpose=_purpose(row.purpose),
                    channel=_channel(row.channel),
                    state=_state(row.state),
                    decided_by_change_id=row.decided_by,
                    decided_at=_ts(row.decided_at_us),
                )
            )
        rows = list(
            conn.execute(
                sa.select(trail)
                .where(trail.c.subject_aggregate_id == subject.subject_aggregate_id)
                .order_by(
                    trail.c.occurred_at_us,
                    trail.c.recorded_at_us,
                    trail.c.sequence,
                    trail.c.change_id,
                )
            )
        )
        history.extend(consent_status.change_of(row) for row in rows)
        if include_history:
            item.history.extend(_audit(row) for row in rows)
        response.subjects.append(item)
    for decision in consent_status.decisions(history):
        response.effective.append(
            pb.ConsentPairState(
                purpose=_purpose(decision.purpose),
                channel=_channel(decision.channel),
                state=_state(decision.state),
                decided_by_change_id=decision.decided_by.change_id
                if decision.decided_by
                else "",
                decided_at=_ts(
                    decision.decided_by.occurred_at_us if decision.decided_by else None
                ),
            )
        )
    return response


def _audit(row: Any) -> pb.ConsentAuditEntry:
    kind = {
        consent_status.GRANTED: consent_types.CHANGE_KIND_GRANTED,
        consent_status.WITHDRAWN: consent_types.CHANGE_KIND_WITHDRAWN,
        consent_status.ERASED: consent_types.CHANGE_KIND_ERASED,
    }.get(row.kind, consent_types.CHANGE_KIND_UNSPECIFIED)
    return pb.ConsentAuditEntry(
        change_id=row.change_id,
        kind=kind,
        purpose=_purpose(row.purpose),
        channel=_channel(row.channel),
        legal_basis=enum_number(
            consent_types.LegalBasis, "LEGAL_BASIS_", row.legal_basis
        ),  # type: ignore[arg-type]
        source_system=enum_number(  # type: ignore[arg-type]
            consent_types.SourceSystem, "SOURCE_SYSTEM_", row.source_system
        ),
        method=enum_number(consent_types.Method, "METHOD_", row.method),  # type: ignore[arg-type]
        notice_version=row.notice_version,
        notice_hash=row.notice_hash,
        capture_method=row.capture_method,
        occurred_at=_ts(int(row.occurred_at_us)),
        recorded_at=_ts(int(row.recorded_at_us)),
        preferences=row.preferences,
    )


# -- customer value --------------------------------------------------------------

_ACQUISITION = {
    customer_value.EARNED: pb.ACQUISITION_EARNED,
    customer_value.BOUGHT: pb.ACQUISITION_BOUGHT,
    customer_value.UNKNOWN: pb.ACQUISITION_UNKNOWN,
}


def customer_value_of(
    conn: sa.Connection, tables: Tables, request: pb.GetCustomerValueRequest
) -> pb.GetCustomerValueResponse:
    """NRR, ENC and the earned growth rate of a period, and LTV per customer.

    The previous period is as many months just before. Existing customers are those
    acquired (first win) before the period started; NRR = their revenue in the
    period / their revenue in the previous one; ENC = the period's revenue from
    customers acquired in it who were earned / the previous period's revenue;
    EGR = NRR + ENC - 100% (Reichheld). Lifetime value is recognised revenue to the
    end of the period. Every figure is per currency.
    """
    if not request.period.from_month or not request.period.to_month:
        raise InvalidArgument("period", "needs from_month and to_month")
    span = window(request.period)
    months = months_between(request.period.from_month, request.period.to_month)
    before: list[str] = []
    cursor = request.period.from_month
    for _ in months:
        cursor = previous_month(cursor)
        before.insert(0, cursor)
    previous = pb.Period(from_month=before[0], to_month=before[-1])
    customers_t = tables[customer_value.customers]
    monthly_t = tables[customer_value.monthly]
    known = {row.lead_id: row for row in conn.execute(sa.select(customers_t))}
    this: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], int] = defaultdict(int)
    lifetime: dict[tuple[str, str], int] = defaultdict(int)
    series: dict[str, list[pb.MonthAmount]] = defaultdict(list)
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
        if row.month <= request.period.to_month:
            lifetime[key] += amount
            series[row.lead_id].append(
                pb.MonthAmount(month=row.month, amount=money(amount, row.currency))
            )
    currencies = sorted({c for _, c in (*this, *last, *lifetime)})
    response = pb.GetCustomerValueResponse(
        period=request.period, previous_period=previous
    )
    start = span.start or 0
    for currency in currencies:
        response.growth.append(_growth(currency, known, this, last, start, span))
    _summaries(response, known, lifetime, span)
    ranked = sorted(
        (lead for lead in known if known[lead].acquired_at_us < (span.end or 0)),
        key=lambda lead: (
            -sum(v for (owner, _), v in lifetime.items() if owner == lead),
            lead,
        ),
    )
    for lead in ranked[: request.limit or 50]:
        row = known[lead]
        response.customers.append(
            pb.CustomerValue(
                lead_id=lead,
                acquired_at=_ts(int(row.acquired_at_us)),
                acquisition_channel=row.channel,
                acquisition=_ACQUISITION.get(row.acquisition, pb.ACQUISITION_UNKNOWN),
                lifetime_value=[
                    money(v, c)
                    for (owner, c), v in sorted(lifetime.items())
                    if owner == lead
                ],
                monthly=series.get(lead, []),
            )
        )
    return response


def _growth(
    currency: str,
    known: Mapping[str, Any],
    this: Mapping[tuple[str, str], int],
    last: Mapping[tuple[str, str], int],
    start: int,
    span: Window,
) -> pb.GrowthFigures:
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
    figures = pb.GrowthFigures(
        currency=currency,
        revenue_this_period=total(this),
        revenue_last_period=total(last),
        existing_customers=len([lead for lead in existing if lead in with_revenue]),
        existing_revenue_this_period=total(this, existing),
        existing_revenue_last_period=total(last, existing),
        new_customers=len([lead for lead in new if lead in with_revenue]),
        new_earned_customers=len([lead for lead in earned if lead in with_revenue]),
        new_earned_revenue=total(this, earned),
    )
    nrr = _ratio(
        figures.existing_revenue_this_period, figures.existing_revenue_last_period
    )
    enc = _ratio(figures.new_earned_revenue, figures.revenue_last_period)
    growth = _ratio(figures.revenue_this_period, figures.revenue_last_period)
    if nrr is not None:
        figures.nrr = nrr
    if enc is not None:
        figures.enc = enc
    if nrr is not None and enc is not None:
        figures.egr = nrr + enc - 1
    if growth is not None:
        figures.total_growth = growth - 1
    return figures


def _summaries(
    response: pb.GetCustomerValueResponse,
    known: Mapping[str, Any],
    lifetime: Mapping[tuple[str, str], int],
    span: Window,
) -> None:
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
    for (acquisition, currency), (count, amount) in sorted(by_class.items()):
        response.acquisitions.append(
            pb.AcquisitionSummary(
                acquisition=_ACQUISITION.get(acquisition, pb.ACQUISITION_UNKNOWN),
                currency=currency,
                customers=count,
                lifetime_value=amount,
                average_lifetime_value=amount / count if count else 0.0,
            )
        )
    for (month, channel, currency), (count, amount) in sorted(cohorts.items()):
        response.cohorts.append(
            pb.CohortValue(
                cohort_month=month,
                channel=channel,
                currency=currency,
                customers=count,
                lifetime_value=amount,
            )
        )
