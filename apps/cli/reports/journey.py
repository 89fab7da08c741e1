"""`closedloop report journey`: one person's touches and stages in time order."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from apps.cli.output import console, fail, print_json
from apps.cli.reports.charts import chart_path, write_chart
from apps.cli.reports.client import call_insights_pages
from apps.cli.reports.options import ChartOption, JsonOption
from apps.cli.settings import _settings


def report_journey(
    lead_id: Annotated[str, typer.Option(help="Any lead of the person.")] = "",
    email: Annotated[str, typer.Option(help="The person's email address.")] = "",
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """A person's journey in time order, every page of it."""
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    if bool(lead_id) == bool(email):
        raise fail("name the person with --lead-id or --email")
    chart = chart_path(chart)
    request = (
        pb.GetCustomerJourneyRequest(lead_id=lead_id)
        if lead_id
        else pb.GetCustomerJourneyRequest(email=email)
    )
    response = call_insights_pages(
        "GetCustomerJourney", request, _settings(), "entries"
    )
    if as_json:
        print_json(response)
    else:
        erased = " (erased)" if response.erased else ""
        table = Table(
            "business time",
            "what",
            "event",
            title=f"journey of lead {response.lead_id}: {response.stage}{erased}",
        )
        for entry in response.entries:
            table.add_row(
                entry.occurred_at.ToJsonString(),
                entry.summary,
                entry.event_type.rsplit(".", 1)[-1],
            )
        console.print(table)
    write_chart(response, chart)
