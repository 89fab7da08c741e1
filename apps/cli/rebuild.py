"""Builds a projection's new generation from the whole log, with a progress bar.

`projections add` and `projections rebuild` both come here; an interrupted build
resumes from its position when the same command runs again.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import typer
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
from rich.text import Text

from apps.cli.output import console, fail
from apps.cli.runtime import connect, load_registry, open_store, run_command
from apps.cli.settings import _settings

if TYPE_CHECKING:
    from closedloop.projections.runner import Progress as RunProgress
    from closedloop.projections.store import Generation

CLI_OWNER = "cli"


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="cyan")


def build_projection(
    name: str, *, restart: bool, batch_size: int, show_progress: bool, new_only: bool
) -> None:
    from closedloop.projections.runner import Outcome, RunnerSettings, build  # noqa: PLC0415
    from closedloop.projections.store import owner_id  # noqa: PLC0415

    settings = _settings()
    registry = load_registry()
    try:
        projection = registry.get(name)()
    except LookupError as error:
        raise fail(str(error)) from None
    store = open_store(settings)
    existing = store.generations(name)
    if new_only and any(g.state == "active" for g in existing):
        store.close()
        raise fail(
            f"{name} is added already; `closedloop projections rebuild {name}` "
            "builds it again"
        )
    building = [
        g for g in existing if g.state == "building" and g.version == projection.version
    ]
    if building and all(g.created_by != CLI_OWNER for g in building):
        store.close()
        raise fail(
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
        nc = await connect(settings)
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

    run_command(run)
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
        raise fail(f"{generation.key} is being built by {generation.owner}")
    console.print(
        f"{generation.key} interrupted at position {generation.position} "
        f"({outcome.value}); run the same command again to resume"
    )
    raise typer.Exit(130)
