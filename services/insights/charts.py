"""Charts of the insights answers, drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt

from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.insights.v1 import insights_service_pb2 as pb

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure

_STAGES = ("visitors", "leads", "mqls", "sals", "opportunities", "won")


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def revenue_chart(response: pb.GetRevenueByChannelResponse, path: Path) -> None:
    """Revenue and spend side by side per row (channel, campaign or both)."""
    rows = list(response.rows)
    labels = [
        " / ".join(part for part in (r.month, r.channel, r.campaign) if part)
        or "(none)"
        for r in rows
    ]
    revenue = [r.revenue.minor_units / 100 for r in rows]
    spend = [r.spend.minor_units / 100 for r in rows]
    figure, axes = plt.subplots(figsize=(10, max(3, 0.5 * len(rows) + 1.5)))
    positions = range(len(rows))
    axes.barh([p + 0.2 for p in positions], revenue, height=0.4, label="revenue")
    axes.barh([p - 0.2 for p in positions], spend, height=0.4, label="spend")
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    currencies = sorted({r.currency for r in rows})
    axes.set_xlabel(f"amount ({', '.join(currencies) or 'no revenue'})")
    axes.set_title(f"Revenue by channel under {response.model}")
    for p, row in zip(positions, rows, strict=True):
        if row.HasField("roi"):
            axes.annotate(
                f"ROI {row.roi:.0%}",
                (max(revenue[p], spend[p]), p),
                fontsize=8,
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
    axes.legend()
    _save(figure, path)


def funnel_chart(response: pb.GetFunnelResponse, path: Path) -> None:
    """Stage counts per channel, with the close rate over each group."""
    rows = list(response.rows)
    figure, axes = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(_STAGES)
    for index, stage in enumerate(_STAGES):
        axes.bar(
            [c + index * width for c in range(len(rows))],
            [getattr(r, stage) for r in rows],
            width=width,
            label=stage,
        )
    axes.set_xticks(
        [c + 0.4 - width / 2 for c in range(len(rows))], [r.channel for r in rows]
    )
    for c, row in enumerate(rows):
        if row.HasField("close_rate"):
            axes.annotate(
                f"close {row.close_rate:.0%}",
                (c + 0.4, max(row.visitors, row.leads)),
                ha="center",
                fontsize=8,
                xytext=(0, 4),
                textcoords="offset points",
            )
    axes.set_ylabel("people")
    axes.set_title("Funnel by channel")
    axes.legend(ncols=3, fontsize=8)
    _save(figure, path)


def journey_chart(response: pb.GetCustomerJourneyResponse, path: Path) -> None:
    """A timeline: one row per kind of fact, one dot per fact."""
    kinds: list[str] = []
    for entry in response.entries:
        name = pb.EntryKind.Name(entry.kind).removeprefix("ENTRY_KIND_").lower()
        if name not in kinds:
            kinds.append(name)
    figure, axes = plt.subplots(figsize=(11, 1 + 0.45 * max(len(kinds), 1)))
    first = response.entries[0].occurred_at.seconds if response.entries else 0
    for entry in response.entries:
        name = pb.EntryKind.Name(entry.kind).removeprefix("ENTRY_KIND_").lower()
        when = (entry.occurred_at.seconds - first) / 86_400
        axes.plot([when], [kinds.index(name)], "o")
        label = entry.channel or entry.stage
        if label:
            axes.annotate(
                label,
                (when, kinds.index(name)),
                fontsize=7,
                xytext=(3, 4),
                textcoords="offset points",
            )
    axes.set_yticks(range(len(kinds)), kinds)
    axes.set_title(
        f"Journey of {response.lead_id}" + (" (erased)" if response.erased else "")
    )
    if response.entries:
        start = response.entries[0].occurred_at.ToJsonString()[:10]
        axes.set_xlabel(f"days since {start}")
    _save(figure, path)


def consent_chart(response: pb.GetConsentStatusResponse, path: Path) -> None:
    """Counts per purpose and channel (stacked by state), or a person's states."""
    figure, axes = plt.subplots(figsize=(10, 5))
    if response.counts:
        labels = [
            f"{consent_types.Purpose.Name(c.purpose).removeprefix('PURPOSE_').lower()}"
            f"/{consent_types.Channel.Name(c.channel).removeprefix('CHANNEL_').lower()}"
            for c in response.counts
        ]
        bottom = [0] * len(labels)
        for state in ("opted_in", "pending_confirmation", "opted_out"):
            values = [getattr(c, state) for c in response.counts]
            axes.bar(labels, values, bottom=bottom, label=state)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        axes.set_ylabel("consent records")
        axes.tick_params(axis="x", labelrotation=45)
        axes.legend()
    else:
        states: dict[str, list[str]] = defaultdict(list)
        for item in response.effective:
            state = consent_types.ConsentState.Name(item.state).removeprefix(
                "CONSENT_STATE_"
            )
            purpose = consent_types.Purpose.Name(item.purpose).removeprefix("PURPOSE_")
            states[state.lower()].append(purpose.lower())
        names = sorted(states)
        axes.bar(names, [len(states[n]) for n in names])
        for index, name in enumerate(names):
            axes.annotate(
                "\n".join(states[name]),
                (index, len(states[name])),
                ha="center",
                fontsize=7,
                xytext=(0, 4),
                textcoords="offset points",
            )
        axes.set_ylabel("purposes")
    axes.set_title("Consent")
    _save(figure, path)


def value_chart(response: pb.GetCustomerValueResponse, path: Path) -> None:
    """NRR, ENC, EGR and total growth per currency, as percentages."""
    figure, axes = plt.subplots(figsize=(8, 4))
    names = ("nrr", "enc", "egr", "total_growth")
    width = 0.8 / max(len(response.growth), 1)
    for index, growth in enumerate(response.growth):
        values = [100 * getattr(growth, n) if growth.HasField(n) else 0 for n in names]
        axes.bar(
            [p + index * width for p in range(len(names))],
            values,
            width=width,
            label=growth.currency,
        )
    axes.set_xticks(range(len(names)), ["NRR", "ENC", "EGR", "growth"])
    axes.set_ylabel("%")
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set_title(f"{response.period.from_month} to {response.period.to_month}")
    axes.legend()
    _save(figure, path)
