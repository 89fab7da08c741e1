"""`closedloop report value`: lifetime value, NRR and earned growth of a period."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from apps.cli.output import console, major, percent, print_json
from apps.cli.reports.charts import chart_path, write_chart
from apps.cli.reports.client import call_insights_pages
from apps.cli.reports.options import ChartOption, FromOption, JsonOption, ToOption
from apps.cli.settings import _settings


def report_value(
    from_month: FromOption,
    to_month: ToOption,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """Lifetime value, NRR, earned vs bought customers, earned growth rate.

    The `limit` customers of most lifetime value, asked for a page at a time.
    """
    from closedloop.grpckit.paging import MAX_PAGE_SIZE  # noqa: PLC0415
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    chart = chart_path(chart)
    response = call_insights_pages(
        "GetCustomerValue",
        pb.GetCustomerValueRequest(
            period=pb.Period(from_month=from_month, to_month=to_month),
            page_size=min(limit, MAX_PAGE_SIZE),
        ),
        _settings(),
        "customers",
        at_most=limit,
    )
    if as_json:
        print_json(response)
    else:
        growth = Table(
            "currency",
            "revenue",
            "previous",
            "NRR",
            "ENC",
            "EGR",
            "growth",
            title=f"{from_month} to {to_month} against "
            f"{response.previous_period.from_month} to "
            f"{response.previous_period.to_month}",
        )
        for g in response.growth:
            growth.add_row(
                g.currency,
                major(g.revenue_this_period, g.currency),
                major(g.revenue_last_period, g.currency),
                percent(g, "nrr"),
                percent(g, "enc"),
                percent(g, "egr"),
                percent(g, "total_growth"),
            )
        console.print(growth)
        kinds = Table("acquisition", "customers", "lifetime value", "average")
        for a in response.acquisitions:
            kinds.add_row(
                pb.Acquisition.Name(a.acquisition).removeprefix("ACQUISITION_").lower(),
                str(a.customers),
                major(a.lifetime_value, a.currency),
                major(round(a.average_lifetime_value), a.currency),
            )
        console.print(kinds)
    write_chart(response, chart)
