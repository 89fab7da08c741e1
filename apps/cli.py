"""`closedloop`: the operator's command line for projections, the log and reports.

    closedloop projections list | status | add NAME | rebuild NAME | retry-parked
    closedloop events tail [--subject closedloop.deal.v1.>] | stats
    closedloop report revenue | funnel | journey | consent | value [--json] [--chart F]

Projection commands work on the read store (CLOSEDLOOP_PROJECTOR_STORE_URL) and the
log (CLOSEDLOOP_NATS_URL) directly; reports ask the insights service
(CLOSEDLOOP_INSIGHTS_ADDRESS, default 127.0.0.1:50055).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from closedloop.config import DEFAULT_GRPC_PORTS, EndpointEnv, PeersEnv, ProcessEnv

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from google.protobuf.message import Message
    from nats.aio.client import Client

    from closedloop.projections import Registry
    from closedloop.projections.runner import Progress as RunProgress
    from closedloop.projections.store import Generation, ReadStore

app = typer.Typer(
    help="Operate closedloop: projections, the event log, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
projections_app = typer.Typer(help="Read models: list, status, add, rebuild, retry.")
events_app = typer.Typer(help="The event log (CLOSEDLOOP_LOG).")
report_app = typer.Typer(
    help="Reports from the insights service: tables, JSON, charts."
)
app.add_typer(projections_app, name="projections")
app.add_typer(events_app, name="events")
app.add_typer(report_app, name="report")

# Piped output is not cut at 80 columns: tables stay one row per line.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)

CLI_OWNER = "cli"


@dataclass
class Settings:
    store_url: str
    nats_url: str
    address: str


def _insights_address() -> str:
    host = ProcessEnv.from_env().grpc_host
    port = EndpointEnv.of("insights").grpc_port
    return f"{host}:{DEFAULT_GRPC_PORTS['insights'] if port is None else port}"


def _settings() -> Settings:
    from services.projector.config import ReadStoreEnv  # noqa: PLC0415

    env = ReadStoreEnv.from_env()
    return Settings(
        store_url=env.read_store_url(),
        nats_url=env.nats_url,
        address=PeersEnv.from_env().insights_address or _insights_address(),
    )


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _registry() -> Registry:
    from closedloop.projections import discover  # noqa: PLC0415

    registry = discover()
    for name, error in sorted(registry.errors.items()):
        errors.print(f"[yellow]warning:[/yellow] projection {name} not loaded: {error}")
    return registry


def _store(settings: Settings) -> ReadStore:
    from closedloop.projections import ReadStore  # noqa: PLC0415

    return ReadStore(settings.store_url)


async def _connect(settings: Settings) -> Client:
    from nats.aio.client import Client as Nats  # noqa: PLC0415

    nc = Nats()

    async def quiet(_: Exception) -> None:
        return None

    try:
        await nc.connect(
            settings.nats_url,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=quiet,
        )
    except Exception as error:
        # A failed connect leaves the client's tasks behind; close ends them.
        with contextlib.suppress(Exception):
            await nc.close()
        raise _fail(f"cannot reach NATS at {settings.nats_url}: {error}") from error
    return nc


def _run(coroutine: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Runs a command; Ctrl-C or SIGTERM sets `stop` so it can end cleanly."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await coroutine(stop)

    return asyncio.run(main())


# -- projections ----------------------------------------------------------------------


@projections_app.command("list")
def projections_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The installed projections: name, version, events handled, where from."""
    registry = _registry()
    if as_json:
        listed = [
            {
                "name": name,
                "version": registry.get(name).version,
                "handles": sorted(registry.get(name).handled_types()),
                "description": registry.get(name).description,
                "source": registry.sources[name],
            }
            for name in registry.names()
        ]
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
        return
    table = Table("name", "version", "handles", "description", "source")
    for name in registry.names():
        cls = registry.get(name)
        table.add_row(
            name,
            str(cls.version),
            str(len(cls.handles)),
            cls.description,
            registry.sources[name],
        )
    console.print(table)


def _status_rows(
    generations: Sequence[Generation], registry: Registry, head: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    named = {g.name for g in generations}
    for g in generations:
        installed = registry.projections.get(g.name)
        progress = ""
        if g.state == "building" and g.build_target:
            progress = f"{min(g.position / g.build_target, 1.0):.0%}"
        rows.append(
            {
                "name": g.name,
                "version": g.version,
                "generation": g.key.generation,
                "state": g.state,
                "position": g.position,
                "lag": max(head - g.position, 0) if head >= 0 else None,
                "parked": g.parked,
                "events_applied": g.events_applied,
                "progress": progress,
                "owner": g.owner if g.heartbeat_at > time.time() - 15 else "",
                "installed_version": installed.version if installed else None,
                "last_error": g.last_error,
            }
        )
    rows.extend(
        {
            "name": name,
            "version": registry.get(name).version,
            "generation": None,
            "state": "not added",
            "position": 0,
            "lag": head if head >= 0 else None,
            "parked": 0,
            "events_applied": 0,
            "progress": "",
            "owner": "",
            "installed_version": registry.get(name).version,
            "last_error": "",
        }
        for name in registry.names()
        if name not in named
    )
    return rows


@projections_app.command("status")
def projections_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each generation: state, log position, lag, parked events, lease holder."""
    settings = _settings()
    registry = _registry()
    store = _store(settings)

    async def head(_: asyncio.Event) -> int:
        from closedloop.projections.reader import log_last_seq  # noqa: PLC0415

        with contextlib.suppress(Exception):
            nc = await asyncio.wait_for(_connect(settings), 5)
            try:
                return await log_last_seq(nc)
            finally:
                await nc.close()
        return -1

    last = _run(head)
    rows = _status_rows(store.generations(), registry, last)
    store.close()
    if as_json:
        sys.stdout.write(
            json.dumps({"log_position": last, "projections": rows}, indent=2) + "\n"
        )
        return
    table = Table(
        "name",
        "version",
        "gen",
        "state",
        "position",
        "lag",
        "parked",
        "applied",
        "owner",
        title=f"log position {last if last >= 0 else 'unknown (NATS unreachable)'}",
    )
    for row in rows:
        state = row["state"] + (f" {row['progress']}" if row["progress"] else "")
        if row["installed_version"] not in {None, row["version"]}:
            state += f" (installed: v{row['installed_version']})"
        table.add_row(
            row["name"],
            str(row["version"]),
            str(row["generation"] or "-"),
            state,
            str(row["position"]),
            "?" if row["lag"] is None else str(row["lag"]),
            Text(str(row["parked"]), style="red" if row["parked"] else ""),
            str(row["events_applied"]),
            row["owner"],
        )
    console.print(table)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="cyan")


def _build(
    name: str, *, restart: bool, batch_size: int, show_progress: bool, new_only: bool
) -> None:
    from closedloop.projections.runner import Outcome, RunnerSettings, build  # noqa: PLC0415
    from closedloop.projections.store import owner_id  # noqa: PLC0415

    settings = _settings()
    registry = _registry()
    try:
        projection = registry.get(name)()
    except LookupError as error:
        raise _fail(str(error)) from None
    store = _store(settings)
    existing = store.generations(name)
    if new_only and any(g.state == "active" for g in existing):
        store.close()
        raise _fail(
            f"{name} is added already; `closedloop projections rebuild {name}` "
            "builds it again"
        )
    building = [
        g for g in existing if g.state == "building" and g.version == projection.version
    ]
    if building and all(g.created_by != CLI_OWNER for g in building):
        store.close()
        raise _fail(
            f"the projector is building {name} already; follow it with "
            "`closedloop projections status`"
        )
    started = time.monotonic()
    outcome_box: list[tuple[Generation, Outcome]] = []
    # A resumed build counts its rate from where it stood.
    resumed = [
        g.position for g in building if g.created_by == CLI_OWNER and not restart
    ]
    first_position = resumed[-1:]

    async def run(stop: asyncio.Event) -> int:
        nc = await _connect(settings)
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress,
            transient=False,
        )
        task_id = progress.add_task(f"{name} v{projection.version}", total=None)

        def on_progress(update: RunProgress) -> None:
            progress.update(
                task_id,
                description=f"{update.key} {update.state}",
                completed=update.position,
                total=max(update.head, update.position, 1),
            )

        try:
            with progress:
                outcome_box.append(
                    await build(
                        store,
                        projection,
                        nc,
                        owner=owner_id(CLI_OWNER),
                        created_by=CLI_OWNER,
                        settings=RunnerSettings(batch_size=batch_size),
                        on_progress=on_progress,
                        stop=stop,
                        restart=restart,
                    )
                )
        finally:
            await nc.close()
        return 0

    _run(run)
    store.close()
    generation, outcome = outcome_box[0]
    elapsed = time.monotonic() - started
    done = generation.position - (first_position[0] if first_position else 0)
    rate = done / elapsed if elapsed else 0.0
    if outcome is Outcome.ACTIVATED:
        console.print(
            f"{generation.key} is active: {generation.position} log messages, "
            f"{generation.events_applied} events applied, {generation.parked} parked, "
            f"{rate:,.0f} events/s"
        )
        return
    if outcome is Outcome.LEASE_HELD:
        raise _fail(f"{generation.key} is being built by {generation.owner}")
    console.print(
        f"{generation.key} interrupted at position {generation.position} "
        f"({outcome.value}); run the same command again to resume"
    )
    raise typer.Exit(130)


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str, typer.Argument(help="The projection, e.g. revenue_by_channel.")
    ],
    restart: Annotated[
        bool, typer.Option(help="Discard an interrupted build and start from 0.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Builds the projection again from the whole log, blue/green.

    The new generation fills its own tables while the active one keeps serving; when
    it caught up, the switch is one transaction. Ctrl-C stops after the current
    batch; the same command resumes from there.
    """
    _build(
        name,
        restart=restart,
        batch_size=batch_size,
        show_progress=progress,
        new_only=False,
    )


@projections_app.command("add")
def projections_add(
    name: Annotated[str, typer.Argument(help="An installed projection not added yet.")],
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Backfills a newly installed projection from the whole log, then activates it."""
    _build(
        name,
        restart=False,
        batch_size=batch_size,
        show_progress=progress,
        new_only=True,
    )


@projections_app.command("retry-parked")
def projections_retry_parked(
    name: Annotated[str | None, typer.Argument(help="Only this projection.")] = None,
) -> None:
    """Applies parked events again (after a fix); those that apply now are resolved."""
    from closedloop.projections.runner import Applier  # noqa: PLC0415

    settings = _settings()
    registry = _registry()
    store = _store(settings)
    live = {g.key: g for g in store.generations(name) if g.state != "retired"}
    table = Table("projection", "seq", "event", "result")
    resolved = failed = 0
    appliers: dict[Any, Applier] = {}
    for parked in store.parked():
        if parked.key not in live or (name and parked.key.name != name):
            continue
        cls = registry.projections.get(parked.key.name)
        if cls is None or cls.version != parked.key.version:
            table.add_row(
                str(parked.key),
                str(parked.seq),
                parked.event_type,
                "skipped: not installed at this version",
            )
            continue
        applier = appliers.setdefault(parked.key, Applier(store, cls(), parked.key))
        error = applier.retry_parked(parked)
        if error is None:
            resolved += 1
            table.add_row(
                str(parked.key),
                str(parked.seq),
                parked.event_type,
                "[green]applied[/green]",
            )
        else:
            failed += 1
            table.add_row(
                str(parked.key),
                str(parked.seq),
                parked.event_type,
                f"[red]{error}[/red]",
            )
    store.close()
    console.print(table)
    console.print(f"{resolved} applied, {failed} still parked")
    if failed:
        raise typer.Exit(1)


# -- events ---------------------------------------------------------------------------


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


@events_app.command("tail")
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
        nc = await _connect(settings)
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

    _run(run)


@events_app.command("stats")
def events_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts the log's events by type."""
    from closedloop.bus.streams import LOG_STREAM  # noqa: PLC0415

    settings = _settings()
    counts: dict[str, int] = {}

    async def run(_: asyncio.Event) -> int:
        nc = await _connect(settings)
        try:
            info = await nc.jetstream().stream_info(LOG_STREAM, subjects_filter=">")
        finally:
            await nc.close()
        counts.update({k: int(v) for k, v in (info.state.subjects or {}).items()})
        return 0

    _run(run)
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


# -- reports --------------------------------------------------------------------------


def _call(method: str, request: Message, settings: Settings) -> Any:
    import grpc  # noqa: PLC0415

    from closedloop.insights.v1 import insights_service_pb2_grpc  # noqa: PLC0415

    async def call() -> Any:
        async with grpc.aio.insecure_channel(settings.address) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            try:
                return await getattr(stub, method)(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                code = error.code().name
                raise _fail(
                    f"{method} at {settings.address}: {code}: {error.details()}"
                ) from None

    return asyncio.run(call())


def _print_json(message: Message) -> None:
    from google.protobuf.json_format import MessageToJson  # noqa: PLC0415

    sys.stdout.write(
        MessageToJson(message, preserving_proto_field_name=True, indent=2) + "\n"
    )


def major(amount: int, currency: str) -> str:
    """Minor units as the currency writes them: 1234567 USD -> 12,345.67 USD."""
    from babel.numbers import get_currency_precision  # noqa: PLC0415

    digits = get_currency_precision(currency) if currency else 2
    value = amount / (10**digits)
    return f"{value:,.{digits}f} {currency}"


def _percent(message: Message, field: str) -> str:
    return f"{getattr(message, field):.1%}" if message.HasField(field) else "-"


def _chart_path(chart: Path | None) -> Path | None:
    if chart is not None and chart.suffix.lower() != ".png":
        raise _fail("--chart takes a .png file")
    return chart


class GroupByOption(StrEnum):
    channel = "channel"
    campaign = "campaign"
    channel_and_campaign = "channel-and-campaign"


class ConversionOption(StrEnum):
    won = "won"
    recognized = "recognized"


JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
ChartOption = Annotated[
    Path | None, typer.Option("--chart", help="Also draw it into this PNG file.")
]
FromOption = Annotated[str, typer.Option("--from", help="First month, e.g. 2026-01.")]
ToOption = Annotated[str, typer.Option("--to", help="Last month, e.g. 2026-03.")]


@report_app.command("revenue")
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

    chart = _chart_path(chart)
    response = _call(
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
    )
    if as_json:
        _print_json(response)
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
                _percent(row, "roi"),
                f"{row.roas:.2f}" if row.HasField("roas") else "-",
                major(round(row.cac_minor_units), row.currency)
                if row.HasField("cac_minor_units")
                else "-",
                f"{row.customers:.2f}",
            )
        console.print(table)
    if chart is not None:
        from services.insights.charts import revenue_chart  # noqa: PLC0415

        revenue_chart(response, chart)
        errors.print(f"chart written to {chart}")


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


@report_app.command("funnel")
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

    chart = _chart_path(chart)
    response = _call(
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
        _print_json(response)
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
                _percent(row, "lead_to_mql_rate"),
                _percent(row, "mql_to_sal_rate"),
                _percent(row, "close_rate"),
                _days(row, "median_lead_to_mql"),
                _days(row, "median_opportunity_to_won"),
            )
        console.print(table)
    if chart is not None:
        from services.insights.charts import funnel_chart  # noqa: PLC0415

        funnel_chart(response, chart)
        errors.print(f"chart written to {chart}")


@report_app.command("journey")
def report_journey(
    lead_id: Annotated[str, typer.Option(help="Any lead of the person.")] = "",
    email: Annotated[str, typer.Option(help="The person's email address.")] = "",
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """A person's journey in time order."""
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    if bool(lead_id) == bool(email):
        raise _fail("name the person with --lead-id or --email")
    chart = _chart_path(chart)
    request = (
        pb.GetCustomerJourneyRequest(lead_id=lead_id)
        if lead_id
        else pb.GetCustomerJourneyRequest(email=email)
    )
    response = _call("GetCustomerJourney", request, _settings())
    if as_json:
        _print_json(response)
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
    if chart is not None:
        from services.insights.charts import journey_chart  # noqa: PLC0415

        journey_chart(response, chart)
        errors.print(f"chart written to {chart}")


@report_app.command("consent")
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
        raise _fail("name the person with --lead-id or --email, not both")
    chart = _chart_path(chart)
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

    response = _call("GetConsentStatus", request, _settings())
    if as_json:
        _print_json(response)
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
    if chart is not None:
        from services.insights.charts import consent_chart  # noqa: PLC0415

        consent_chart(response, chart)
        errors.print(f"chart written to {chart}")


@report_app.command("value")
def report_value(
    from_month: FromOption,
    to_month: ToOption,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JsonOption = False,
    chart: ChartOption = None,
) -> None:
    """Lifetime value, NRR, earned vs bought customers, earned growth rate."""
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415

    chart = _chart_path(chart)
    response = _call(
        "GetCustomerValue",
        pb.GetCustomerValueRequest(
            period=pb.Period(from_month=from_month, to_month=to_month), limit=limit
        ),
        _settings(),
    )
    if as_json:
        _print_json(response)
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
                _percent(g, "nrr"),
                _percent(g, "enc"),
                _percent(g, "egr"),
                _percent(g, "total_growth"),
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
    if chart is not None:
        from services.insights.charts import value_chart  # noqa: PLC0415

        value_chart(response, chart)
        errors.print(f"chart written to {chart}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
