"""`closedloop events`: the log (CLOSEDLOOP_LOG) live, decoded, and counted by type."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from apps.cli.output import console
from apps.cli.runtime import connect, run_command
from apps.cli.settings import _settings

app = typer.Typer(help="The event log (CLOSEDLOOP_LOG).")


def event_line(seq: int, headers: dict[str, str], data: bytes) -> str:
    """One line per event: sequence, recorded time, type, subject, payload as JSON."""
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415

    from closedloop.bus.cloudevents import decode_payload  # noqa: PLC0415

    event_type = headers.get("ce-type", "?")
    try:
        payload = json.dumps(
            MessageToDict(
                decode_payload(event_type, data), preserving_proto_field_name=True
            ),
            separators=(",", ":"),
            sort_keys=True,
        )
    except Exception as error:  # noqa: BLE001 - a tail shows what it cannot decode too
        payload = f"<cannot decode: {error}>"
    return (
        f"{seq:>8} {headers.get('ce-time', '?'):<27} {event_type} "
        f"{headers.get('ce-subject', '')} {payload}"
    )


@app.command("tail")
def events_tail(
    subject: Annotated[
        list[str] | None,
        typer.Option(
            help="NATS subject filter, e.g. closedloop.deal.v1.>; repeatable."
        ),
    ] = None,
    from_start: Annotated[bool, typer.Option(help="Start at the first event.")] = False,
    last: Annotated[int, typer.Option(min=0, help="Start this many events back.")] = 0,
    limit: Annotated[
        int, typer.Option(min=0, help="Stop after this many (0: never).")
    ] = 0,
) -> None:
    """Prints the log live, decoded, one line per event."""
    from closedloop.projections.reader import LogReader, log_last_seq  # noqa: PLC0415

    settings = _settings()

    async def run(stop: asyncio.Event) -> int:
        nc = await connect(settings)
        reader = LogReader(nc, batch_size=200, subjects=tuple(subject or ()))
        head = await log_last_seq(nc)
        start = 1 if from_start else max(head - last + 1, 1)
        printed = 0
        try:
            await reader.open(start)
            while not stop.is_set():
                batch = await reader.next_batch(0.5)
                for message in batch.messages:
                    sys.stdout.write(
                        event_line(message.seq, message.headers, message.data) + "\n"
                    )
                    printed += 1
                    if limit and printed >= limit:
                        return 0
                sys.stdout.flush()
        finally:
            await reader.close()
            await nc.close()
        return 0

    run_command(run)


@app.command("stats")
def events_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts the log's events by type."""
    from closedloop.bus.streams import LOG_STREAM  # noqa: PLC0415

    settings = _settings()
    counts: dict[str, int] = {}

    async def run(_: asyncio.Event) -> int:
        nc = await connect(settings)
        try:
            info = await nc.jetstream().stream_info(LOG_STREAM, subjects_filter=">")
        finally:
            await nc.close()
        counts.update({k: int(v) for k, v in (info.state.subjects or {}).items()})
        return 0

    run_command(run)
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    if as_json:
        total = sum(counts.values())
        sys.stdout.write(
            json.dumps({"total": total, "by_type": ordered}, indent=2) + "\n"
        )
        return
    table = Table("event type", "count", title="CLOSEDLOOP_LOG")
    for event_type, count in ordered.items():
        table.add_row(event_type, f"{count:,}")
    table.add_row("[bold]total[/bold]", f"[bold]{sum(counts.values()):,}[/bold]")
    console.print(table)
