"""`closedloop report`: the insights service's answers as tables, JSON or charts."""

from __future__ import annotations

import typer

from apps.cli.reports import consent, funnel, journey, revenue, value

app = typer.Typer(help="Reports from the insights service: tables, JSON, charts.")
app.command("revenue")(revenue.report_revenue)
app.command("funnel")(funnel.report_funnel)
app.command("journey")(journey.report_journey)
app.command("consent")(consent.report_consent)
app.command("value")(value.report_value)
