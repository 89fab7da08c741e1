"""revenue_by_channel: attributed revenue and spend per channel, campaign and month."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.attribution.v1 import events_pb2 as attribution_events
from closedloop.projections import ApplyContext, Event, Projection, ProjectionError
from closedloop.projections.times import micros, month_of, split_by_month
from closedloop.readmodels.revenue_by_channel import (
    CUSTOMER_UNITS,
    READ_MODEL,
    RECOGNIZED,
    WON,
    conversions,
    revenue,
    spend_by_month,
    spends,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

UNATTRIBUTED = "unattributed"

RevenueKey = tuple[str, str, str, str, str, str]
SpendKey = tuple[str, str, str, str]


class RevenueByChannel(Projection):
    """Credited revenue per channel, campaign, attribution model and month.

    Next to it, the spend recorded for the same channel, campaign and month.

    Credits come from RevenueAttributed (one event per conversion and model), spend
    from SpendRecorded, split over the months of its period by time. Each
    conversion is stored once under its key (model, deal, kind, revenue), so a
    repeated event changes nothing and a conversion credited anew replaces its
    earlier credits. ROI, ROAS and CAC are worked out when asked (insights), from
    these sums.
    """

    name = READ_MODEL.name
    version = READ_MODEL.version
    description = "attributed revenue and spend per channel, campaign, model, month"
    handles = (attribution_events.RevenueAttributed, attribution_events.SpendRecorded)
    tables = READ_MODEL.tables

    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        attributed = [
            e
            for e in batch
            if isinstance(e.message, attribution_events.RevenueAttributed)
        ]
        spent = [
            e for e in batch if isinstance(e.message, attribution_events.SpendRecorded)
        ]
        if attributed:
            self._credit(attributed, ctx)
        if spent:
            self._spend(spent, ctx)

    def _credit(self, events: Sequence[Event], ctx: ApplyContext) -> None:
        table = ctx.table(conversions)
        rows = [conversion_row(e) for e in events]
        keys = {_conversion_key(r) for r in rows}
        known = _existing(ctx, table, keys)
        deltas: dict[RevenueKey, list[int]] = defaultdict(lambda: [0, 0, 0])
        latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for row in rows:
            key = _conversion_key(row)
            before = latest.get(key) or known.get(key)
            if before is not None and before["event_id"] == row["event_id"]:
                continue  # the same event again
            if before is not None:
                _accumulate(deltas, before, -1)
            _accumulate(deltas, row, 1)
            latest[key] = row
        ctx.upsert(conversions, list(latest.values()))
        ctx.add(
            revenue,
            [
                {
                    "model_key": k[0],
                    "conversion_kind": k[1],
                    "month": k[2],
                    "currency": k[3],
                    "channel": k[4],
                    "campaign": k[5],
                    "model": _model_of(k[0]),
                    "revenue_minor": v[0],
                    "customers_micro": v[1],
                    "conversions": v[2],
                }
                for k, v in sorted(deltas.items())
                if any(v)
            ],
            sums=("revenue_minor", "customers_micro", "conversions"),
        )
        # A conversion credited anew can leave a row with nothing in it; it goes, so
        # the rows do not depend on how the events were cut into batches.
        table = ctx.table(revenue)
        ctx.conn.execute(
            table.delete().where(
                table.c.conversions == 0,
                table.c.model_key.in_(sorted({k[0] for k in deltas})),
            )
        )

    def _spend(self, events: Sequence[Event], ctx: ApplyContext) -> None:
        table = ctx.table(spends)
        rows = [spend_row(e) for e in events]
        ids = {r["spend_id"] for r in rows}
        known = {
            row.spend_id: dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row API
            for row in ctx.conn.execute(
                sa.select(table).where(table.c.spend_id.in_(ids))
            )
        }
        deltas: dict[SpendKey, int] = defaultdict(int)
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            before = latest.get(row["spend_id"]) or known.get(row["spend_id"])
            if before is not None and before["event_id"] == row["event_id"]:
                continue
            for sign, each in ((-1, before), (1, row)):
                if each is None:
                    continue
                for month, amount in json.loads(each["months"]).items():
                    key = (month, each["currency"], each["channel"], each["campaign"])
                    deltas[key] += sign * int(amount)
            latest[row["spend_id"]] = row
        ctx.upsert(spends, list(latest.values()))
        ctx.add(
            spend_by_month,
            [
                {
                    "month": k[0],
                    "currency": k[1],
                    "channel": k[2],
                    "campaign": k[3],
                    "spend_minor": v,
                }
                for k, v in sorted(deltas.items())
                if v
            ],
            sums=("spend_minor",),
        )
        monthly = ctx.table(spend_by_month)
        ctx.conn.execute(monthly.delete().where(monthly.c.spend_minor == 0))


def _model_of(model_key: str) -> str:
    return model_key.split("(", 1)[0]


def conversion_row(event: Event) -> dict[str, Any]:
    m = event.message
    assert isinstance(m, attribution_events.RevenueAttributed)  # noqa: S101
    if not m.deal_id or not (m.model_key or m.model):
        raise ProjectionError("RevenueAttributed without deal_id or model")
    if not m.amount.currency:
        raise ProjectionError("RevenueAttributed without a currency")
    kind = (
        RECOGNIZED
        if m.conversion_kind == attribution_events.CONVERSION_KIND_REVENUE_RECOGNIZED
        else WON
    )
    total = m.amount.minor_units
    credited = [
        (c.channel or UNATTRIBUTED, c.campaign, c.amount.minor_units) for c in m.credits
    ]
    if sum(amount for _, _, amount in credited) != total:
        raise ProjectionError(
            f"credits of deal {m.deal_id} under {m.model_key} do not sum to {total}"
        )
    if any(c.amount.currency not in {"", m.amount.currency} for c in m.credits):
        raise ProjectionError("a credit in another currency than its conversion")
    customers = (
        customer_shares([amount for _, _, amount in credited])
        if kind == WON
        else [0] * len(credited)
    )
    occurred = micros(m.occurred_at)
    return {
        "model_key": m.model_key or m.model,
        "deal_id": m.deal_id,
        "conversion_kind": kind,
        "revenue_id": m.revenue_id,
        "model": m.model or _model_of(m.model_key),
        "event_id": event.event_id,
        "lead_id": m.lead_id,
        "month": month_of(occurred),
        "occurred_at_us": occurred,
        "currency": m.amount.currency,
        "amount_minor": total,
        "credits": json.dumps(
            [
                [channel, campaign, amount, share]
                for (channel, campaign, amount), share in zip(
                    credited, customers, strict=True
                )
            ]
        ),
        "fallback": m.fallback,
    }


def customer_shares(amounts: Sequence[int]) -> list[int]:
    """Each credit's share of one customer, in millionths, summing to exactly one.

    A deal won at zero has no shares to weigh; it counts as one customer split evenly.
    """
    if not amounts:
        return []
    weights = [abs(a) for a in amounts]
    whole = sum(weights) or len(weights)
    if not sum(weights):
        weights = [1] * len(weights)
    floors = [CUSTOMER_UNITS * w // whole for w in weights]
    remainders = [CUSTOMER_UNITS * w % whole for w in weights]
    left = CUSTOMER_UNITS - sum(floors)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        floors[index] += 1
    return floors


def spend_row(event: Event) -> dict[str, Any]:
    m = event.message
    assert isinstance(m, attribution_events.SpendRecorded)  # noqa: S101
    if not m.spend_id or not m.amount.currency:
        raise ProjectionError("SpendRecorded without spend_id or currency")
    start, end = micros(m.period_start), micros(m.period_end)
    if not m.HasField("period_start"):
        start = end = micros(m.occurred_at)
    return {
        "spend_id": m.spend_id,
        "event_id": event.event_id,
        "channel": m.channel or UNATTRIBUTED,
        "campaign": m.campaign,
        "currency": m.amount.currency,
        "amount_minor": m.amount.minor_units,
        "period_start_us": start,
        "period_end_us": end,
        "months": json.dumps(
            split_by_month(start, end, m.amount.minor_units), sort_keys=True
        ),
    }


def _conversion_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["model_key"], row["deal_id"], row["conversion_kind"], row["revenue_id"])


def _existing(
    ctx: ApplyContext, table: sa.Table, keys: set[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    found: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    deal_ids = sorted({k[1] for k in keys})
    for start in range(0, len(deal_ids), 500):
        chunk = deal_ids[start : start + 500]
        for row in ctx.conn.execute(sa.select(table).where(table.c.deal_id.in_(chunk))):
            mapping = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's public Row API
            key = _conversion_key(mapping)
            if key in keys:
                found[key] = mapping
    return found


def _accumulate(
    deltas: dict[RevenueKey, list[int]], row: dict[str, Any], sign: int
) -> None:
    for channel, campaign, amount, customers in json.loads(row["credits"]):
        key = (
            row["model_key"],
            row["conversion_kind"],
            row["month"],
            row["currency"],
            channel,
            campaign,
        )
        deltas[key][0] += sign * int(amount)
        deltas[key][1] += sign * int(customers)
        deltas[key][2] += sign
