"""The projector process: one runner per generation it follows.

The runners are kept in line with the read store's bookkeeping every second.

For each installed projection it follows the active generation of the installed
version. When there is none (a projection just installed, or a new version), and
auto-build is on, it creates a generation and builds it from position 0, blue/green:
the old version's tables keep serving until the new one caught up and the switch
happened. Generations that the CLI builds (`closedloop projections rebuild|add`) are
left to the CLI until they are active. A generation switched away from is retired,
and its runner stops at its next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from closedloop import bus
from closedloop.projections.runner import GenerationRunner, Outcome, RunnerSettings
from closedloop.projections.store import (
    ACTIVE,
    BUILDING,
    GenerationKey,
    ReadStore,
    owner_id,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client

    from closedloop.projections.base import Projection
    from services.projector.config import ProjectorConfig

log = logging.getLogger(__name__)

CREATED_BY = "projector"


@dataclass
class Projector:
    """Supervises the runners; `run()` returns when `stop` is set."""

    config: ProjectorConfig
    store: ReadStore
    projections: Sequence[Projection]
    nc: Client
    owner: str = field(default_factory=lambda: owner_id(CREATED_BY))
    runners: dict[GenerationKey, asyncio.Task[Outcome]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settings(self) -> RunnerSettings:
        return RunnerSettings(
            batch_size=self.config.batch_size, max_attempts=self.config.max_attempts
        )

    async def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("projector: reconciling failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.config.poll_seconds)
        finally:
            await self.shutdown()

    async def reconcile(self) -> None:
        """Starts a runner for each generation to follow; stops the others."""
        wanted: dict[GenerationKey, Projection] = {}
        for projection in self.projections:
            for key in await self._targets(projection):
                wanted[key] = projection
        for key, task in list(self.runners.items()):
            if task.done():
                self.runners.pop(key)
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s: runner failed: %r", key, task.exception())
            elif key not in wanted:
                task.cancel()
                self.runners.pop(key)
        for key, projection in wanted.items():
            if key not in self.runners:
                runner = GenerationRunner(
                    self.store,
                    projection,
                    key,
                    self.nc,
                    owner=self.owner,
                    settings=self.settings,
                )
                self.runners[key] = asyncio.create_task(
                    runner.run(stop=self.stop), name=str(key)
                )

    async def _targets(self, projection: Projection) -> list[GenerationKey]:
        generations = await asyncio.to_thread(self.store.generations, projection.name)
        mine = [g for g in generations if g.version == projection.version]
        targets = [g.key for g in mine if g.state == ACTIVE]
        building = [g for g in mine if g.state == BUILDING]
        targets += [g.key for g in building if g.created_by == CREATED_BY]
        if not targets and not building and self.config.auto_build:
            created = await asyncio.to_thread(
                lambda: self.store.create_generation(projection, created_by=CREATED_BY)
            )
            log.info("%s: building from the whole log", created.key)
            targets.append(created.key)
        return targets

    async def shutdown(self) -> None:
        self.stop.set()
        tasks = list(self.runners.values())
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        self.runners.clear()


async def start_projector(
    config: ProjectorConfig,
    projections: Sequence[Projection],
    *,
    store: ReadStore | None = None,
) -> tuple[Projector, asyncio.Task[None]]:
    """Connects, opens the read store, and starts supervising in a task."""
    nc = await bus.connect(config.nats_url, name="closedloop-projector")
    if store is None:
        store = await asyncio.to_thread(ReadStore, config.store_url)
    projector = Projector(config=config, store=store, projections=projections, nc=nc)
    task = asyncio.create_task(projector.run(), name="projector")
    return projector, task


async def stop_projector(projector: Projector, task: asyncio.Task[None]) -> None:
    projector.stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        await projector.nc.close()
