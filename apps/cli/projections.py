"""`closedloop projections`: the installed read models and their generations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from apps.cli.output import console
from apps.cli.rebuild import build_projection
from apps.cli.runtime import connect, load_registry, open_store, run_command
from apps.cli.settings import _settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from closedloop.projections import Registry
    from closedloop.projections.store import Generation

app = typer.Typer(help="Read models: list, status, add, rebuild, retry.")


@app.command("list")
def projections_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The installed projections: name, version, events handled, where from."""
    registry = load_registry()
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


@app.command("status")
def projections_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each generation: state, log position, lag, parked events, lease holder."""
    settings = _settings()
    registry = load_registry()
    store = open_store(settings)

    async def head(_: asyncio.Event) -> int:
        from closedloop.projections.reader import log_last_seq  # noqa: PLC0415

        with contextlib.suppress(Exception):
            nc = await asyncio.wait_for(connect(settings), 5)
            try:
                return await log_last_seq(nc)
            finally:
                await nc.close()
        return -1

    last = run_command(head)
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


@app.command("rebuild")
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
    build_projection(
        name,
        restart=restart,
        batch_size=batch_size,
        show_progress=progress,
        new_only=False,
    )


@app.command("add")
def projections_add(
    name: Annotated[str, typer.Argument(help="An installed projection not added yet.")],
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Backfills a newly installed projection from the whole log, then activates it."""
    build_projection(
        name,
        restart=False,
        batch_size=batch_size,
        show_progress=progress,
        new_only=True,
    )


@app.command("retry-parked")
def projections_retry_parked(
    name: Annotated[str | None, typer.Argument(help="Only this projection.")] = None,
) -> None:
    """Applies parked events again (after a fix); those that apply now are resolved."""
    from closedloop.projections.runner import Applier  # noqa: PLC0415

    settings = _settings()
    registry = load_registry()
    store = open_store(settings)
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
