"""The dashboard's JSON: the insights API's answers as the page reads them.

Money comes with its text in the currency's digits ("1,234.56 USD"), enums by name,
times as RFC 3339 and durations in seconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.money import exponent
from closedloop.protobuf import enum_name

if TYPE_CHECKING:
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

    from closedloop.common.v1.money_pb2 import Money

_FUNNEL_COUNTS = (
    "visitors",
    "visitors_identified",
    "leads",
    "mqls",
    "sals",
    "opportunities",
    "won",
    "disqualified",
)
_FUNNEL_RATES = (
    "visitor_to_lead_rate",
    "lead_to_mql_rate",
    "mql_to_sal_rate",
    "sal_to_opportunity_rate",
    "close_rate",
    "lead_to_won_rate",
)
_FUNNEL_MEDIANS = (
    "median_lead_to_mql",
    "median_mql_to_sal",
    "median_sal_to_opportunity",
    "median_opportunity_to_won",
    "median_lead_to_won",
)


def money_text(minor_units: int, currency: str) -> str:
    """`123456, "USD"` -> "1,234.56 USD"; the digits come from the currency."""
    digits = exponent(currency) if currency else 0
    amount = Decimal(minor_units).scaleb(-digits)
    return f"{amount:,.{digits}f} {currency}".strip()


def money_json(minor_units: int, currency: str) -> dict[str, Any]:
    digits = exponent(currency) if currency else 0
    return {
        "minor_units": minor_units,
        "currency": currency,
        "exponent": digits,
        "major": float(Decimal(minor_units).scaleb(-digits)),
        "text": money_text(minor_units, currency),
    }


def _money(value: Money) -> dict[str, Any]:
    return money_json(int(value.minor_units), value.currency)


def _time(message: Message, name: str) -> str | None:
    if not message.HasField(name):
        return None
    value: Timestamp = getattr(message, name)
    return str(value.ToJsonString())


def _seconds(value: Duration) -> float:
    return float(value.seconds) + value.nanos / 1e9


def _optional(message: Message, name: str) -> float | None:
    return float(getattr(message, name)) if message.HasField(name) else None


def revenue_json(reply: pb.GetRevenueByChannelResponse) -> dict[str, Any]:
    rows = []
    for row in reply.rows:
        customers = float(row.customers)
        cac = (
            money_json(round(row.cac_minor_units), row.currency)
            if row.HasField("cac_minor_units")
            else None
        )
        rows.append(
            {
                "month": row.month,
                "channel": row.channel,
                "campaign": row.campaign,
                "currency": row.currency,
                "revenue": _money(row.revenue),
                "spend": _money(row.spend),
                "customers": customers,
                "conversions": int(row.conversions),
                "roi": _optional(row, "roi"),
                "roas": _optional(row, "roas"),
                "cac": cac,
            }
        )
    return {
        "model": reply.model,
        "model_keys": list(reply.model_keys),
        "available_models": list(reply.available_models),
        "rows": rows,
        "total_revenue": [_money(m) for m in reply.total_revenue],
        "total_spend": [_money(m) for m in reply.total_spend],
    }


def _funnel_row(row: pb.FunnelRow) -> dict[str, Any]:
    found: dict[str, Any] = {"channel": row.channel}
    found.update({name: int(getattr(row, name)) for name in _FUNNEL_COUNTS})
    found.update({name: _optional(row, name) for name in _FUNNEL_RATES})
    found["median_seconds"] = {
        name.removeprefix("median_"): _seconds(getattr(row, name))
        if row.HasField(name)
        else None
        for name in _FUNNEL_MEDIANS
    }
    found["won_revenue"] = [_money(m) for m in row.won_revenue]
    return found


def funnel_json(reply: pb.GetFunnelResponse) -> dict[str, Any]:
    return {
        "touch": "last" if reply.touch == pb.TOUCH_LAST_BEFORE_LEAD else "first",
        "cohort": "mql" if reply.cohort_stage == pb.COHORT_STAGE_MQL else "lead",
        "rows": [_funnel_row(row) for row in reply.rows],
        "total": _funnel_row(reply.total),
    }


def _entry_summary(entry: pb.JourneyEntry) -> str:
    """The API's summary, with a raw amount ("300000 USD") written as money."""
    summary = entry.summary
    if entry.HasField("amount"):
        raw = f" {entry.amount.minor_units} {entry.amount.currency}"
        if summary.endswith(raw):
            amount = money_text(int(entry.amount.minor_units), entry.amount.currency)
            summary = summary.removesuffix(raw) + " " + amount
    return summary


def journey_json(reply: pb.GetCustomerJourneyResponse) -> dict[str, Any]:
    entries = [
        {
            "kind": enum_name(pb.EntryKind, "ENTRY_KIND_", entry.kind) or "other",
            "occurred_at": _time(entry, "occurred_at"),
            "recorded_at": _time(entry, "recorded_at"),
            "event_id": entry.event_id,
            "event_type": entry.event_type,
            "lead_id": entry.lead_id,
            "anonymous_id": entry.anonymous_id,
            "channel": entry.channel,
            "campaign": entry.campaign,
            "stage": entry.stage,
            "deal_id": entry.deal_id,
            "amount": _money(entry.amount) if entry.HasField("amount") else None,
            "summary": _entry_summary(entry),
            "details": dict(sorted(entry.details.items())),
        }
        for entry in reply.entries
    ]
    return {
        "lead_id": reply.lead_id,
        "lead_ids": list(reply.lead_ids),
        "anonymous_ids": list(reply.anonymous_ids),
        "stage": reply.stage,
        "created_at": _time(reply, "created_at"),
        "erased": reply.erased,
        "erased_at": _time(reply, "erased_at"),
        "entries": entries,
    }


def _purpose(number: int) -> str:
    return enum_name(consent_types.Purpose, "PURPOSE_", number)


def _channel(number: int) -> str:
    return enum_name(consent_types.Channel, "CHANNEL_", number)


def _pair(state: pb.ConsentPairState) -> dict[str, Any]:
    return {
        "purpose": _purpose(state.purpose),
        "channel": _channel(state.channel),
        "state": enum_name(consent_types.ConsentState, "CONSENT_STATE_", state.state),
        "decided_by_change_id": state.decided_by_change_id,
        "decided_at": _time(state, "decided_at"),
    }


def _audit(entry: pb.ConsentAuditEntry) -> dict[str, Any]:
    return {
        "change_id": entry.change_id,
        "kind": enum_name(consent_types.ChangeKind, "CHANGE_KIND_", entry.kind),
        "purpose": _purpose(entry.purpose),
        "channel": _channel(entry.channel),
        "legal_basis": enum_name(
            consent_types.LegalBasis, "LEGAL_BASIS_", entry.legal_basis
        ),
        "source_system": enum_name(
            consent_types.SourceSystem, "SOURCE_SYSTEM_", entry.source_system
        ),
        "method": enum_name(consent_types.Method, "METHOD_", entry.method),
        "notice_version": entry.notice_version,
        "notice_hash": entry.notice_hash,
        "capture_method": entry.capture_method,
        "occurred_at": _time(entry, "occurred_at"),
        "recorded_at": _time(entry, "recorded_at"),
        "preferences": entry.preferences,
    }


def consent_json(reply: pb.GetConsentStatusResponse) -> dict[str, Any]:
    return {
        "subjects": [
            {
                "subject_aggregate_id": subject.subject_aggregate_id,
                "lead_id": subject.lead_id,
                "erased": subject.erased,
                "erased_at": _time(subject, "erased_at"),
                "states": [_pair(s) for s in subject.states],
                "history": [_audit(h) for h in subject.history],
            }
            for subject in reply.subjects
        ],
        "effective": [_pair(s) for s in reply.effective],
    }


def consent_counts_json(reply: pb.GetConsentStatusResponse) -> dict[str, Any]:
    return {
        "counts": [
            {
                "purpose": _purpose(count.purpose),
                "channel": _channel(count.channel),
                "opted_in": int(count.opted_in),
                "opted_out": int(count.opted_out),
                "pending_confirmation": int(count.pending_confirmation),
            }
            for count in reply.counts
        ]
    }


def projections_json(reply: pb.ListProjectionsResponse) -> dict[str, Any]:
    projections = [
        {
            "name": p.name,
            "version": int(p.version),
            "generation": int(p.generation),
            "state": enum_name(pb.ProjectionState, "PROJECTION_STATE_", p.state),
            "position": int(p.position),
            "lag": int(p.lag),
            "parked": int(p.parked),
            "events_applied": int(p.events_applied),
            "updated_at": _time(p, "updated_at"),
            "installed_version": int(p.installed_version),
            "last_error": p.last_error,
        }
        for p in reply.projections
    ]
    lags = [
        int(p.lag) for p in reply.projections if p.state == pb.PROJECTION_STATE_ACTIVE
    ]
    return {
        "log_position": int(reply.log_position),
        "projections": projections,
        "summary": {
            # -1: unknown (the log could not be reached, or nothing serves yet).
            "max_lag": -1 if not lags or min(lags) < 0 else max(lags),
            "parked": sum(int(p.parked) for p in reply.projections),
            "active": len(lags),
            "not_serving": len(projections) - len(lags),
        },
    }
