"""The `closedloop` command: its three groups joined under one root."""

from __future__ import annotations

import typer

from apps.cli import events, projections, reports

app = typer.Typer(
    help="Operate closedloop: projections, the event log, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(projections.app, name="projections")
app.add_typer(events.app, name="events")
app.add_typer(reports.app, name="report")


def main() -> None:
    app()
