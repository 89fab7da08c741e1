"""The read models on PostgreSQL (by URL, in a schema of their own) hold exactly the
rows they hold on SQLite, built through the runner from a real log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import nats
import pytest

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.projections import ReadStore, discover
from closedloop.projections.runner import Outcome, RunnerSettings, build
from closedloop.testing.readside import (
    apply_events,
    publish,
    scripted_quarter,
    snapshot,
    wait_for_log,
)

if TYPE_CHECKING:
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


async def test_postgres_read_models_equal_sqlite_ones(
    own_nats_server: NatsServer, postgres_url: str
) -> None:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    events = scripted_quarter().log.events
    await publish(nc, events)
    await wait_for_log(nc, len(events))
    store = ReadStore(f"{postgres_url}?schema=read_models")
    try:
        for cls in discover({}).projections.values():
            projection = cls()
            generation, outcome = await build(
                store,
                projection,
                nc,
                owner="pg-test",
                settings=RunnerSettings(batch_size=9),
            )
            assert outcome is Outcome.ACTIVATED
            assert generation.position == len(events)
            reference, key = apply_events(projection, events)
            assert snapshot(store, projection, generation.key) == snapshot(
                reference, projection, key
            ), projection.name
        with store.read() as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
        assert schema == "read_models"
    finally:
        store.close()
        await nc.close()
