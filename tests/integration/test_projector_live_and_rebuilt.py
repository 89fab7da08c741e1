"""Following the log live and rebuilding from position 0 give exactly the same rows.

A real nats-server holds the log; the projector follows it while the scripted
quarter is published in waves; then every projection is rebuilt blue/green through
the same code the CLI uses, while the projector keeps running.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats
import pytest

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections import ACTIVE, RETIRED, discover
from closedloop.projections.runner import Outcome, RunnerSettings, build
from closedloop.testing.readside import (
    Scenario,
    publish,
    scripted_quarter,
    snapshot,
    wait_caught_up,
    wait_for_log,
)
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

if TYPE_CHECKING:
    from pathlib import Path

    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.nats]


async def test_live_and_rebuilt_agree(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    config = ProjectorConfig.from_env(
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": own_nats_server.url,
            "CLOSEDLOOP_PROJECTOR_BATCH_SIZE": "7",
        }
    )
    projections = [cls() for cls in discover({}).projections.values()]
    projector, task = await start_projector(config, projections)
    try:
        events = scripted_quarter().log.events
        third = len(events) // 3
        sent = 0
        for wave in (events[:third], events[third : 2 * third], events[2 * third :]):
            sent += await publish(nc, wave)
            # The log sources the context streams a moment later: wait for it first.
            await wait_for_log(nc, sent)
            await wait_caught_up(projector)
        live = {}
        for p in projections:
            active = projector.store.active(p.name)
            assert active is not None
            assert active.key.generation == 1
            assert active.position == len(events)
            live[p.name] = snapshot(projector.store, p, active.key)
        assert all(any(rows for rows in tables.values()) for tables in live.values())

        for p in projections:
            generation, outcome = await build(
                projector.store,
                p,
                nc,
                owner="test-rebuild",
                settings=RunnerSettings(batch_size=13),
            )
            assert outcome is Outcome.ACTIVATED
            assert generation.key.generation == 2
            assert generation.state == ACTIVE
            assert snapshot(projector.store, p, generation.key) == live[p.name]
            states = {
                g.key.generation: g.state for g in projector.store.generations(p.name)
            }
            assert states == {1: RETIRED, 2: ACTIVE}

        # The projector follows the new generations live from here.
        s = Scenario()
        s.touch("2026-07-01", visitor="v-late", channel=lead_types.CHANNEL_EMAIL)
        await publish(nc, s.log.events)
        head = await wait_for_log(nc, len(events) + len(s.log.events))
        await wait_caught_up(projector)
        for p in projections:
            active = projector.store.active(p.name)
            assert active is not None
            assert (active.key.generation, active.position) == (2, head)
    finally:
        await stop_projector(projector, task)
        await nc.close()


async def test_an_interrupted_build_resumes_where_it_stopped(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    events = scripted_quarter().log.events
    await publish(nc, events)
    await wait_for_log(nc, len(events))
    from closedloop.projections import ReadStore  # noqa: PLC0415
    from services.projector.projections.customer_journey import (  # noqa: PLC0415
        CustomerJourney,
    )

    store = ReadStore(f"sqlite:///{tmp_path / 'read.db'}")
    projection = CustomerJourney()
    stop = asyncio.Event()
    seen: list[int] = []

    def on_progress(update: object) -> None:
        seen.append(update.position)  # type: ignore[attr-defined]
        if len(seen) == 3:
            stop.set()

    generation, outcome = await build(
        store,
        projection,
        nc,
        owner="cli-1",
        settings=RunnerSettings(batch_size=10),
        on_progress=on_progress,
        stop=stop,
    )
    assert outcome is Outcome.STOPPED
    assert generation.state == "building"
    assert generation.position == 30
    assert store.active(projection.name) is None
    generation, outcome = await build(
        store, projection, nc, owner="cli-2", settings=RunnerSettings(batch_size=10)
    )
    assert outcome is Outcome.ACTIVATED
    assert (generation.key.generation, generation.position) == (1, len(events))
    from closedloop.testing.readside import apply_events  # noqa: PLC0415

    reference, key = apply_events(projection, events)
    assert snapshot(store, projection, generation.key) == snapshot(
        reference, projection, key
    )
    await nc.close()
