"""The closed-loop report of the simulated quarter: tables, and charts as PNG."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from closedloop.attribution.v1 import attribution_service_pb2 as attribution_pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.grpckit.paging import joined_pages, page_call
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc

#: Heuristic models credit each win as it happens; the data-driven ones are trained
#: once the quarter is over and shown as channel weights below.
REPORT_MODELS = ("first_touch", "last_touch", "linear", "time_decay", "w_shaped")
QUARTER = pb.Period(from_month="2026-07", to_month="2026-09")
GROWTH_PERIOD = pb.Period(from_month="2026-09", to_month="2026-09")


@dataclass
class QuarterReport:
    """What the report shows, as numbers, so tests and the dashboard can check them."""

    revenue: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> ch -> $
    spend: dict[str, int] = field(default_factory=dict)
    customers: dict[str, float] = field(default_factory=dict)  # linear, fractional
    funnel: list[dict[str, Any]] = field(default_factory=list)
    acquisitions: dict[str, tuple[int, int]] = field(default_factory=dict)
    growth: dict[str, float | None] = field(default_factory=dict)
    consent: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: model -> channel -> share of conversions, trained on every journey.
    channel_models: dict[str, dict[str, float]] = field(default_factory=dict)
    journeys: dict[str, tuple[int, int]] = field(default_factory=dict)


async def wait_for_read_side(address: str, *, timeout: float = 180.0) -> None:
    """Waits until every projection has applied the whole log, twice in a row."""
    deadline = time.monotonic() + timeout
    settled = 0
    async with grpc.aio.insecure_channel(address) as channel:
        insights = insights_service_pb2_grpc.InsightsServiceStub(channel)
        while time.monotonic() < deadline:
            reply = await insights.ListProjections(
                pb.ListProjectionsRequest(), timeout=5
            )
            active = [
                p for p in reply.projections if p.state == pb.PROJECTION_STATE_ACTIVE
            ]
            if active and all(p.lag == 0 for p in active):
                settled += 1
                if settled >= 3:  # noqa: PLR2004 - quiet for a while: attribution is done
                    return
            else:
                settled = 0
            await asyncio.sleep(1.0)


async def train_channel_models(address: str, report: QuarterReport) -> None:
    """Trains Markov and Shapley on every journey of the quarter, won or not."""
    async with grpc.aio.insecure_channel(address) as channel:
        attribution = attribution_service_pb2_grpc.AttributionServiceStub(channel)
        try:
            reply = await attribution.TrainModel(
                attribution_pb.TrainModelRequest(), timeout=120
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return  # nothing converted yet
        for model in reply.channel_models:
            report.channel_models[model.model] = {
                c.channel: c.share for c in model.channels
            }
            report.journeys[model.model] = (model.journeys, model.converting_journeys)


async def gather_report(address: str) -> QuarterReport:
    report = QuarterReport()
    async with grpc.aio.insecure_channel(address) as channel:
        insights = insights_service_pb2_grpc.InsightsServiceStub(channel)
        for model in REPORT_MODELS:
            reply = await joined_pages(
                page_call(
                    insights.GetRevenueByChannel,
                    pb.GetRevenueByChannelRequest(
                        model=model, period=QUARTER, group_by=pb.GROUP_BY_CHANNEL
                    ),
                    timeout=30,
                ),
                "rows",
            )
            rows = [r for r in reply.rows if r.currency == "USD"]
            report.revenue[model] = {r.channel: r.revenue.minor_units for r in rows}
            if model == "linear":
                report.spend = {r.channel: r.spend.minor_units for r in rows}
                report.customers = {r.channel: r.customers for r in rows}
        funnel = await insights.GetFunnel(
            pb.GetFunnelRequest(touch=pb.TOUCH_FIRST, period=QUARTER), timeout=30
        )
        for row in funnel.rows:
            report.funnel.append(
                {
                    "channel": row.channel,
                    "visitors": row.visitors,
                    "leads": row.leads,
                    "mqls": row.mqls,
                    "sals": row.sals,
                    "opportunities": row.opportunities,
                    "won": row.won,
                    "close_rate": row.close_rate
                    if row.HasField("close_rate")
                    else None,
                }
            )
        # Acquisitions and growth are over every customer, the same on every page:
        # the first page of customers answers.
        value = await insights.GetCustomerValue(
            pb.GetCustomerValueRequest(period=QUARTER), timeout=30
        )
        # Growth compares a period with the one before it: September with August,
        # since the simulated company's history starts with the quarter.
        monthly = await insights.GetCustomerValue(
            pb.GetCustomerValueRequest(period=GROWTH_PERIOD), timeout=30
        )
        for summary in value.acquisitions:
            name = pb.Acquisition.Name(summary.acquisition).removeprefix("ACQUISITION_")
            report.acquisitions[name.lower()] = (
                summary.customers,
                summary.lifetime_value,
            )
        for figures in monthly.growth:
            if figures.currency == "USD":
                report.growth = {
                    "nrr": figures.nrr if figures.HasField("nrr") else None,
                    "enc": figures.enc if figures.HasField("enc") else None,
                    "egr": figures.egr if figures.HasField("egr") else None,
                    "new_customers": float(figures.new_customers),
                    "new_earned_customers": float(figures.new_earned_customers),
                }
        # Counts over everyone are one page: only a person's audit trail pages.
        consent = await insights.GetConsentStatus(
            pb.GetConsentStatusRequest(), timeout=30
        )
        for count in consent.counts:
            purpose = consent_types.Purpose.Name(count.purpose).removeprefix("PURPOSE_")
            opted_in, opted_out = report.consent.get(purpose.lower(), (0, 0))
            report.consent[purpose.lower()] = (
                opted_in + count.opted_in,
                opted_out + count.opted_out,
            )
    return report


def dollars(minor_units: float) -> str:
    return f"${minor_units / 100:,.0f}"


def print_report(  # noqa: C901 - one table after the other
    report: QuarterReport, console: Console | None = None
) -> None:
    console = console or Console()
    channels = sorted(
        {c for by_channel in report.revenue.values() for c in by_channel}
        | set(report.spend)
    )
    table = Table(
        title="Revenue won by channel, Q3 2026, under five attribution models"
    )
    table.add_column("channel")
    for model in REPORT_MODELS:
        table.add_column(model, justify="right")
    table.add_column("spend", justify="right")
    table.add_column("ROI (linear)", justify="right")
    table.add_column("CAC (linear)", justify="right")
    for channel in channels:
        linear = report.revenue.get("linear", {}).get(channel, 0)
        spend = report.spend.get(channel, 0)
        customers = report.customers.get(channel, 0.0)
        table.add_row(
            channel,
            *(
                dollars(report.revenue.get(m, {}).get(channel, 0))
                for m in REPORT_MODELS
            ),
            dollars(spend) if spend else "-",
            f"{(linear - spend) / spend:+.0%}" if spend else "-",
            dollars(spend / customers) if spend and customers else "-",
        )
    console.print(table)

    if report.channel_models:
        journeys, converting = next(iter(report.journeys.values()))
        learned = Table(
            title=f"Data-driven models: share of conversions per channel, trained on "
            f"{journeys} journeys ({converting} won)"
        )
        learned.add_column("channel")
        for model in report.channel_models:
            learned.add_column(f"{model}", justify="right")
        for channel in sorted({c for m in report.channel_models.values() for c in m}):
            learned.add_row(
                channel,
                *(f"{m.get(channel, 0.0):.1%}" for m in report.channel_models.values()),
            )
        console.print(learned)

    funnel = Table(title="Funnel by first-touch channel (leads created in Q3 2026)")
    for column in (
        "channel",
        "visitors",
        "leads",
        "MQL",
        "SAL",
        "deals",
        "won",
        "close rate",
    ):
        funnel.add_column(column, justify="left" if column == "channel" else "right")
    for row in sorted(report.funnel, key=lambda r: -int(r["leads"])):
        rate = row["close_rate"]
        funnel.add_row(
            str(row["channel"]),
            *(
                str(row[k])
                for k in ("visitors", "leads", "mqls", "sals", "opportunities", "won")
            ),
            f"{rate:.0%}" if rate is not None else "-",
        )
    console.print(funnel)

    earned = Table(title="Earned vs bought customers")
    for column in ("acquisition", "customers", "lifetime value"):
        earned.add_column(column)
    for name, (count, value) in sorted(report.acquisitions.items()):
        earned.add_row(name, str(count), dollars(value))
    console.print(earned)
    egr = report.growth.get("egr")
    console.print(
        "Earned growth rate, September vs August (NRR + ENC - 100%): "
        + (
            f"{egr:+.1%}"
            if egr is not None
            else "n/a (no revenue in the previous quarter)"
        )
    )

    consent = Table(title="Consent coverage per purpose (consent records)")
    for column in ("purpose", "opted in", "opted out"):
        consent.add_column(column)
    for purpose, (opted_in, opted_out) in sorted(report.consent.items()):
        consent.add_row(purpose, str(opted_in), str(opted_out))
    console.print(consent)


def draw_charts(report: QuarterReport, folder: Path) -> list[Path]:
    import matplotlib as mpl  # noqa: PLC0415 - only the report draws

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    channels = sorted({c for by in report.revenue.values() for c in by})
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / max(len(REPORT_MODELS), 1)
    for i, model in enumerate(REPORT_MODELS):
        values = [report.revenue.get(model, {}).get(c, 0) / 100 for c in channels]
        ax.bar(
            [x + i * width for x in range(len(channels))], values, width, label=model
        )
    ax.set_xticks(
        [x + width * (len(REPORT_MODELS) - 1) / 2 for x in range(len(channels))]
    )
    ax.set_xticklabels(channels, rotation=30, ha="right")
    ax.set_ylabel("revenue won (USD)")
    ax.set_title("Revenue by channel under each attribution model, Q3 2026")
    ax.legend()
    written.append(_save(fig, folder / "revenue_by_channel.png"))

    rows = [r for r in report.funnel if r["opportunities"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar([r["channel"] for r in rows], [100 * (r["close_rate"] or 0) for r in rows])
    ax.set_ylabel("close rate (won / deals), %")
    ax.set_title("Close rate by first-touch channel")
    ax.tick_params(axis="x", rotation=30)
    written.append(_save(fig, folder / "close_rate_by_channel.png"))

    spend_channels = [c for c in channels if report.spend.get(c)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    roi = [
        100
        * (report.revenue.get("linear", {}).get(c, 0) - report.spend[c])
        / report.spend[c]
        for c in spend_channels
    ]
    ax.bar(
        spend_channels, roi, color=["tab:green" if v >= 0 else "tab:red" for v in roi]
    )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("ROI under linear attribution, %")
    ax.set_title("Return on spend by channel")
    written.append(_save(fig, folder / "roi_by_channel.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted(report.acquisitions)
    ax.bar(names, [report.acquisitions[n][0] for n in names])
    ax.set_ylabel("customers")
    ax.set_title("Earned vs bought customers")
    written.append(_save(fig, folder / "earned_vs_bought.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    purposes = sorted(report.consent)
    ax.bar(purposes, [report.consent[p][0] for p in purposes], label="opted in")
    ax.bar(
        purposes,
        [report.consent[p][1] for p in purposes],
        bottom=[report.consent[p][0] for p in purposes],
        label="opted out",
    )
    ax.set_title("Consent coverage per purpose")
    ax.tick_params(axis="x", rotation=30)
    ax.legend()
    written.append(_save(fig, folder / "consent_coverage.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    return path
