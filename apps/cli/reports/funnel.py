"""`closedloop report funnel`: stage counts, cohort rates and times by channel."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from apps.cli.output import console, percent, print_json
from apps.cli.reports.charts import chart_path, write_chart
from apps.cli.reports.client import call_insights
from apps.cli.reports.options import ChartOption, FromOption, JsonOption, ToOption
from apps.cli.settings import _settings


class TouchOption(StrEnum):
    first = "first"
    last = "last"


class CohortOption(StrEnum):
    lead = "lead"
    mql = "mql"


def _days(duration: Any, field: str) -> str:
    if not duration.HasField(field):
        return "-"
    value = getattr(duration, field)
    return f"{(value.seconds + value.nanos / 1e9) / 86_400:.1f} d"


def report_funnel(
    touch: Annotated[
        TouchOption, typer.Option(help="first touch, or last before lead")
    ] = TouchOption.first,
    cohort: Annotated[
        CohortOption, typer.Option(help="cohort by lead or MQL month")
    ] = CohortOption.lead,
    from_month: FromOption = "",
    to_month: ToOption = "",
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """The funnel by channel: stage counts, cohort rates, close rate, median times."""
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    chart = chart_path(chart)
    response = call_insights(
        "GetFunnel",
        pb.GetFunnelRequest(
            touch=pb.TOUCH_LAST_BEFORE_LEAD
            if touch is TouchOption.last
            else pb.TOUCH_FIRST,
            cohort_stage=pb.COHORT_STAGE_MQL
            if cohort is CohortOption.mql
            else pb.COHORT_STAGE_LEAD,
            period=pb.Period(from_month=from_month, to_month=to_month),
        ),
        _settings(),
    )
    if as_json:
        print_json(response)
    else:
        table = Table(
            "channel",
            "visitors",
            "leads",
            "MQL",
            "SAL",
            "opps",
            "won",
            "lead→MQL",
            "MQL→SAL",
            "close rate",
            "lead→MQL (median)",
            "opp→won (median)",
            title=f"funnel by {touch.value} touch, {cohort.value} cohort",
        )
        for row in [*response.rows, response.total]:
            table.add_row(
                row.channel or "[bold]all[/bold]",
                str(row.visitors),
                str(row.leads),
                str(row.mqls),
                str(row.sals),
                str(row.opportunities),
                str(row.won),
                percent(row, "lead_to_mql_rate"),
                percent(row, "mql_to_sal_rate"),
                percent(row, "close_rate"),
                _days(row, "median_lead_to_mql"),
                _days(row, "median_opportunity_to_won"),
            )
        console.print(table)
    write_chart(response, chart)
