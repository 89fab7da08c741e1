"""The insights API's messages from the queries' values, and periods from requests.

The only place where the insights service's protobuf messages meet what the
queries (services.insights.queries) return: enums by name become numbers,
microseconds become Timestamps and Durations, Money becomes closedloop.common.v1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.duration_pb2 import Duration

from closedloop.common.v1 import money_pb2
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.grpckit.paging import Page
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.projections.times import datetime_of
from closedloop.protobuf import enum_number, timestamp
from closedloop.readmodels import consent_status, customer_journey, customer_value
from services.insights.queries.funnel_by_channel import FunnelRow
from services.insights.queries.periods import Period

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from google.protobuf.timestamp_pb2 import Timestamp

    from closedloop.grpckit.paging import PageRequest
    from closedloop.money import Money
    from services.insights.queries.consent_status import (
        AuditEntry,
        ConsentReport,
        PairState,
    )
    from services.insights.queries.customer_journey import Journey, JourneyEntry
    from services.insights.queries.customer_value import CustomerValueReport, Growth
    from services.insights.queries.funnel_by_channel import Funnel
    from services.insights.queries.revenue_by_channel import RevenueReport


T = TypeVar("T")


def period_of(message: pb.Period) -> Period:
    return Period(from_month=message.from_month, to_month=message.to_month)


def _period(period: Period) -> pb.Period:
    return pb.Period(from_month=period.from_month, to_month=period.to_month)


def _money(value: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=value.minor_units, currency=value.currency)


def _monies(values: Iterable[Money]) -> list[money_pb2.Money]:
    return [_money(value) for value in values]


def _ts(us: int | None) -> Timestamp | None:
    return timestamp(datetime_of(us)) if us is not None else None


def _duration(us: float) -> Duration:
    whole = int(us)
    return Duration(seconds=whole // 1_000_000, nanos=(whole % 1_000_000) * 1000)


def _page_of(rows: Sequence[T], page: PageRequest | None) -> Page[T]:
    """The page of what a query read from the page's start on; all of it for None."""
    return page.read_from_start(rows) if page is not None else Page(rows, "")


def _page_cut(items: Sequence[T], page: PageRequest | None) -> Page[T]:
    """The page cut from the whole ordered answer `items`; all of it for None."""
    return page.of(items) if page is not None else Page(items, "")


def _set_present(message: Any, values: Any, names: Iterable[str]) -> None:
    """Sets each optional field `name` of `message` whose value is not None."""
    for name in names:
        value = getattr(values, name)
        if value is not None:
            setattr(message, name, value)


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


def journey_response(
    journey: Journey, page: PageRequest | None = None
) -> pb.GetCustomerJourneyResponse:
    """The person, and the entries as `page` (None: as read, whole)."""
    entries = _page_of(journey.entries, page)
    return pb.GetCustomerJourneyResponse(
        lead_id=journey.lead_id,
        lead_ids=journey.lead_ids,
        anonymous_ids=journey.anonymous_ids,
        stage=journey.stage,
        created_at=_ts(journey.created_at_us),
        erased=journey.erased,
        erased_at=_ts(journey.erased_at_us),
        entries=[_journey_entry(entry) for entry in entries.items],
        next_page_token=entries.next_page_token,
    )


def _journey_entry(entry: JourneyEntry) -> pb.JourneyEntry:
    message = pb.JourneyEntry(
        kind=_KIND.get(entry.kind, pb.ENTRY_KIND_UNSPECIFIED),  # type: ignore[arg-type]
        occurred_at=_ts(entry.occurred_at_us),
        recorded_at=_ts(entry.recorded_at_us),
        event_id=entry.event_id,
        event_type=entry.event_type,
        lead_id=entry.lead_id,
        anonymous_id=entry.anonymous_id,
        channel=entry.channel,
        campaign=entry.campaign,
        stage=entry.stage,
        deal_id=entry.deal_id,
        details=entry.details,
        summary=journey_summary(entry),
    )
    if entry.amount is not None:
        message.amount.CopyFrom(_money(entry.amount))
    return message


def journey_summary(entry: JourneyEntry) -> str:
    """One line for a person reading the journey; amounts in raw minor units."""
    kind, details = entry.kind, entry.details
    amount = (
        f" {entry.amount.minor_units} {entry.amount.currency}"
        if entry.amount is not None
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


def revenue_response(
    report: RevenueReport, page: PageRequest | None = None
) -> pb.GetRevenueByChannelResponse:
    """The totals and models over every row, and the rows as `page` (None: all)."""
    rows = _page_cut(report.rows, page)
    response = pb.GetRevenueByChannelResponse(
        model=report.model,
        model_keys=report.model_keys,
        available_models=report.available_models,
        total_revenue=_monies(report.total_revenue),
        total_spend=_monies(report.total_spend),
        next_page_token=rows.next_page_token,
    )
    for row in rows.items:
        message = pb.RevenueRow(
            month=row.month,
            channel=row.channel,
            campaign=row.campaign,
            currency=row.currency,
            revenue=_money(row.revenue),
            spend=_money(row.spend),
            customers=row.customers,
            conversions=row.conversions,
        )
        _set_present(message, row, ("roi", "roas", "cac_minor_units"))
        response.rows.append(message)
    return response


# -- funnel ----------------------------------------------------------------------------

#: A funnel row's optional fields: rates without a denominator, medians without
#: people, are left unset.
_RATES = tuple(f.name for f in fields(FunnelRow) if f.name.endswith("_rate"))
_MEDIANS = tuple(f.name for f in fields(FunnelRow) if f.name.startswith("median_"))


def funnel_response(
    funnel: Funnel, *, touch: pb.Touch, cohort_stage: pb.CohortStage
) -> pb.GetFunnelResponse:
    return pb.GetFunnelResponse(
        touch=touch,
        cohort_stage=cohort_stage,
        rows=[_funnel_row(row) for row in funnel.rows],
        total=_funnel_row(funnel.total),
    )


def _funnel_row(row: FunnelRow) -> pb.FunnelRow:
    message = pb.FunnelRow(
        channel=row.channel,
        visitors=row.visitors,
        visitors_identified=row.visitors_identified,
        leads=row.leads,
        mqls=row.mqls,
        sals=row.sals,
        opportunities=row.opportunities,
        won=row.won,
        disqualified=row.disqualified,
        won_revenue=_monies(row.won_revenue),
    )
    _set_present(message, row, _RATES)
    for name in _MEDIANS:
        us = getattr(row, name)
        if us is not None:
            getattr(message, name).CopyFrom(_duration(us))
    return message


# -- consent ---------------------------------------------------------------------------


def _purpose(name: str) -> Any:
    return enum_number(consent_types.Purpose, "PURPOSE_", name)


def _channel(name: str) -> Any:
    return enum_number(consent_types.Channel, "CHANNEL_", name)


def _state(name: str) -> Any:
    return enum_number(consent_types.ConsentState, "CONSENT_STATE_", name)


_CHANGE_KIND = {
    consent_status.GRANTED: consent_types.CHANGE_KIND_GRANTED,
    consent_status.WITHDRAWN: consent_types.CHANGE_KIND_WITHDRAWN,
    consent_status.ERASED: consent_types.CHANGE_KIND_ERASED,
}


def consent_response(
    report: ConsentReport, page: PageRequest | None = None
) -> pb.GetConsentStatusResponse:
    """The subjects, their states and the fold whole; their history as `page`.

    The page is cut from every subject's history one after the other, in the
    subjects' order; each subject keeps the entries of its own on the page.
    """
    trail = [
        (index, entry)
        for index, subject in enumerate(report.subjects)
        for entry in subject.history
    ]
    shown = _page_cut(trail, page)
    history: dict[int, list[AuditEntry]] = defaultdict(list)
    for index, entry in shown.items:
        history[index].append(entry)
    return pb.GetConsentStatusResponse(
        counts=[
            pb.PurposeCount(
                purpose=_purpose(count.purpose),
                channel=_channel(count.channel),
                opted_in=count.opted_in,
                opted_out=count.opted_out,
                pending_confirmation=count.pending_confirmation,
            )
            for count in report.counts
        ],
        subjects=[
            pb.ConsentSubject(
                subject_aggregate_id=subject.subject_aggregate_id,
                lead_id=subject.lead_id,
                erased=subject.erased,
                erased_at=_ts(subject.erased_at_us),
                states=[_pair(state) for state in subject.states],
                history=[_audit(entry) for entry in history[index]],
            )
            for index, subject in enumerate(report.subjects)
        ],
        effective=[_pair(state) for state in report.effective],
        next_page_token=shown.next_page_token,
    )


def _pair(state: PairState) -> pb.ConsentPairState:
    return pb.ConsentPairState(
        purpose=_purpose(state.purpose),
        channel=_channel(state.channel),
        state=_state(state.state),
        decided_by_change_id=state.decided_by_change_id,
        decided_at=_ts(state.decided_at_us),
    )


def _audit(entry: AuditEntry) -> pb.ConsentAuditEntry:
    return pb.ConsentAuditEntry(
        change_id=entry.change_id,
        kind=_CHANGE_KIND.get(entry.kind, consent_types.CHANGE_KIND_UNSPECIFIED),
        purpose=_purpose(entry.purpose),
        channel=_channel(entry.channel),
        legal_basis=enum_number(
            consent_types.LegalBasis, "LEGAL_BASIS_", entry.legal_basis
        ),  # type: ignore[arg-type]
        source_system=enum_number(  # type: ignore[arg-type]
            consent_types.SourceSystem, "SOURCE_SYSTEM_", entry.source_system
        ),
        method=enum_number(consent_types.Method, "METHOD_", entry.method),  # type: ignore[arg-type]
        notice_version=entry.notice_version,
        notice_hash=entry.notice_hash,
        capture_method=entry.capture_method,
        occurred_at=_ts(entry.occurred_at_us),
        recorded_at=_ts(entry.recorded_at_us),
        preferences=entry.preferences,
    )


# -- customer value --------------------------------------------------------------

_ACQUISITION = {
    customer_value.EARNED: pb.ACQUISITION_EARNED,
    customer_value.BOUGHT: pb.ACQUISITION_BOUGHT,
    customer_value.UNKNOWN: pb.ACQUISITION_UNKNOWN,
}


def _acquisition(name: str) -> pb.Acquisition:
    return _ACQUISITION.get(name, pb.ACQUISITION_UNKNOWN)


def customer_value_response(
    report: CustomerValueReport, page: PageRequest | None = None
) -> pb.GetCustomerValueResponse:
    """The report's figures, and its customers as `page` (None: as read, whole)."""
    customers = _page_of(report.customers, page)
    return pb.GetCustomerValueResponse(
        period=_period(report.period),
        previous_period=_period(report.previous_period),
        growth=[_growth(figures) for figures in report.growth],
        acquisitions=[
            pb.AcquisitionSummary(
                acquisition=_acquisition(summary.acquisition),
                currency=summary.currency,
                customers=summary.customers,
                lifetime_value=summary.lifetime_value,
                average_lifetime_value=summary.average_lifetime_value,
            )
            for summary in report.acquisitions
        ],
        cohorts=[
            pb.CohortValue(
                cohort_month=cohort.cohort_month,
                channel=cohort.channel,
                currency=cohort.currency,
                customers=cohort.customers,
                lifetime_value=cohort.lifetime_value,
            )
            for cohort in report.cohorts
        ],
        customers=[
            pb.CustomerValue(
                lead_id=customer.lead_id,
                acquired_at=_ts(customer.acquired_at_us),
                acquisition_channel=customer.acquisition_channel,
                acquisition=_acquisition(customer.acquisition),
                lifetime_value=_monies(customer.lifetime_value),
                monthly=[
                    pb.MonthAmount(month=month.month, amount=_money(month.amount))
                    for month in customer.monthly
                ],
            )
            for customer in customers.items
        ],
        next_page_token=customers.next_page_token,
    )


def _growth(figures: Growth) -> pb.GrowthFigures:
    message = pb.GrowthFigures(
        currency=figures.currency,
        revenue_this_period=figures.revenue_this_period,
        revenue_last_period=figures.revenue_last_period,
        existing_customers=figures.existing_customers,
        existing_revenue_this_period=figures.existing_revenue_this_period,
        existing_revenue_last_period=figures.existing_revenue_last_period,
        new_customers=figures.new_customers,
        new_earned_customers=figures.new_earned_customers,
        new_earned_revenue=figures.new_earned_revenue,
    )
    _set_present(message, figures, ("nrr", "enc", "egr", "total_growth"))
    return message
