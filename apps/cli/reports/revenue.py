"""`closedloop report revenue`: revenue by channel or campaign under a model."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from apps.cli.output import console, major, percent, print_json
from apps.cli.reports.charts import chart_path, write_chart
from apps.cli.reports.client import call_insights_pages
from apps.cli.reports.options import ChartOption, FromOption, JsonOption, ToOption
from apps.cli.settings import _settings


class GroupByOption(StrEnum):
    channel = "channel"
    campaign = "campaign"
    channel_and_campaign = "channel-and-campaign"


class ConversionOption(StrEnum):
    won = "won"
    recognized = "recognized"


def report_revenue(
    model: Annotated[
        str, typer.Option(help="Attribution model, e.g. linear.")
    ] = "linear",
    from_month: FromOption = "",
    to_month: ToOption = "",
    group_by: Annotated[GroupByOption, typer.Option()] = GroupByOption.channel,
    conversion: Annotated[ConversionOption, typer.Option()] = ConversionOption.won,
    by_month: Annotated[bool, typer.Option(help="One row per month too.")] = False,
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """Revenue by channel or campaign under a model, with spend, ROI, ROAS, CAC."""
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    chart = chart_path(chart)
    response = call_insights_pages(
        "GetRevenueByChannel",
        pb.GetRevenueByChannelRequest(
            model=model,
            period=pb.Period(from_month=from_month, to_month=to_month),
            group_by={
                GroupByOption.channel: pb.GROUP_BY_CHANNEL,
                GroupByOption.campaign: pb.GROUP_BY_CAMPAIGN,
                GroupByOption.channel_and_campaign: pb.GROUP_BY_CHANNEL_AND_CAMPAIGN,
            }[group_by],
            conversion=pb.CONVERSION_REVENUE_RECOGNIZED
            if conversion is ConversionOption.recognized
            else pb.CONVERSION_WON,
            by_month=by_month,
        ),
        _settings(),
        "rows",
    )
    if as_json:
        print_json(response)
    else:
        period = f"{from_month or '…'} to {to_month or '…'}"
        table = Table(
            "month",
            "channel",
            "campaign",
            "revenue",
            "spend",
            "ROI",
            "ROAS",
            "CAC",
            "customers",
            title=f"revenue under {model}, {period}",
        )
        for row in response.rows:
            table.add_row(
                row.month,
                row.channel,
                row.campaign,
                major(row.revenue.minor_units, row.currency),
                major(row.spend.minor_units, row.currency)
                if row.spend.minor_units
                else "-",
                percent(row, "roi"),
                f"{row.roas:.2f}" if row.HasField("roas") else "-",
                major(round(row.cac_minor_units), row.currency)
                if row.HasField("cac_minor_units")
                else "-",
                f"{row.customers:.2f}",
            )
        console.print(table)
    write_chart(response, chart)
