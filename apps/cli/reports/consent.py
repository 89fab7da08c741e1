"""`closedloop report consent`: consent of a person with its audit trail, or counts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from apps.cli.output import console, fail, print_json
from apps.cli.reports.charts import chart_path, write_chart
from apps.cli.reports.client import call_insights_pages
from apps.cli.reports.options import ChartOption, JsonOption
from apps.cli.settings import _settings


def report_consent(  # noqa: C901 - two layouts of one answer
    lead_id: Annotated[str, typer.Option(help="A lead.")] = "",
    email: Annotated[str, typer.Option(help="An email address.")] = "",
    history: Annotated[bool, typer.Option(help="Show the audit trail.")] = False,
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """Consent per purpose and channel: of a person, or counts over everyone."""
    from closedloop.consent.v1 import types_pb2 as consent_types  # noqa: PLC0415
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    if lead_id and email:
        raise fail("name the person with --lead-id or --email, not both")
    chart = chart_path(chart)
    request = pb.GetConsentStatusRequest(include_history=history)
    if lead_id:
        request.lead_id = lead_id
    elif email:
        request.email = email

    def purpose(number: int) -> str:
        return str(consent_types.Purpose.Name(number)).removeprefix("PURPOSE_").lower()  # type: ignore[arg-type]

    def channel(number: int) -> str:
        return (
            str(consent_types.Channel.Name(number))
            .removeprefix("CHANNEL_")
            .lower()
            .replace("unspecified", "all")
        )  # type: ignore[arg-type]

    def state(number: int) -> str:
        return (
            str(consent_types.ConsentState.Name(number))
            .removeprefix("CONSENT_STATE_")
            .lower()
        )  # type: ignore[arg-type]

    response = call_insights_pages(
        "GetConsentStatus", request, _settings(), "subjects.history"
    )
    if as_json:
        print_json(response)
    elif not (lead_id or email):
        table = Table(
            "purpose",
            "channel",
            "opted in",
            "opted out",
            "pending",
            title="consent records",
        )
        for count in response.counts:
            table.add_row(
                purpose(count.purpose),
                channel(count.channel),
                str(count.opted_in),
                str(count.opted_out),
                str(count.pending_confirmation),
            )
        console.print(table)
    else:
        table = Table(
            "purpose",
            "channel",
            "state",
            "decided at",
            title="consent now (all records)",
        )
        for item in response.effective:
            table.add_row(
                purpose(item.purpose),
                channel(item.channel),
                state(item.state),
                item.decided_at.ToJsonString() if item.HasField("decided_at") else "-",
            )
        console.print(table)
        for subject in response.subjects:
            if history:
                trail = Table(
                    "occurred",
                    "recorded",
                    "kind",
                    "purpose",
                    "channel",
                    "method",
                    "source",
                    "notice",
                    title=f"audit trail of {subject.subject_aggregate_id}"
                    + (" (erased)" if subject.erased else ""),
                )
                for change in subject.history:
                    trail.add_row(
                        change.occurred_at.ToJsonString(),
                        change.recorded_at.ToJsonString(),
                        str(consent_types.ChangeKind.Name(change.kind))
                        .removeprefix("CHANGE_KIND_")
                        .lower(),  # type: ignore[arg-type]
                        purpose(change.purpose),
                        channel(change.channel),
                        str(consent_types.Method.Name(change.method))
                        .removeprefix("METHOD_")
                        .lower(),  # type: ignore[arg-type]
                        str(consent_types.SourceSystem.Name(change.source_system))
                        .removeprefix("SOURCE_SYSTEM_")
                        .lower(),  # type: ignore[arg-type]
                        change.notice_version,
                    )
                console.print(trail)
    write_chart(response, chart)
