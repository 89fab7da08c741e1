"""The projector as a real process, killed with SIGKILL while it applies batches.

Each time it comes back it resumes from the position stored with its rows: no event
is lost, none is counted twice, and events that the log holds twice (a context
republished under new message ids) count once too.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
import sqlalchemy as sa

from closedloop.attribution.v1 import events_pb2 as attribution
from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections import ReadStore
from closedloop.readmodels.customer_journey import entries
from closedloop.readmodels.revenue_by_channel import revenue
from closedloop.testing.readside import (
    Published,
    Scenario,
    ident,
    publish,
    wait_for_log,
)

if TYPE_CHECKING:
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

PEOPLE = 700
CHANNELS = ("paid_search", "paid_social", "email", "organic_search", "direct")
KILLS = 3


def story(rng: random.Random) -> Scenario:
    """Touches, leads and attributed wins of many people, with known totals."""
    s = Scenario()
    channels = [lead_types.Channel.Value(f"CHANNEL_{c.upper()}") for c in CHANNELS]
    for n in range(PEOPLE):
        day = f"2026-0{1 + n % 6}-{1 + n % 27:02d}"
        visitor = f"v{n}"
        s.touch(day, visitor=visitor, channel=rng.choice(channels))
        lead = s.capture(f"p{n}", day, visitor=visitor)
        amount = rng.randint(1, 100) * 1000
        split = rng.randint(0, amount)
        s.attribute(
            ident("deal", f"d{n}"),
            lead,
            day,
            "linear",
            [
                (rng.choice(CHANNELS), "", split),
                (rng.choice(CHANNELS), "", amount - split),
            ],
        )
    return s


def expected_revenue(events: list[Published]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for event in events:
        if isinstance(event.message, attribution.RevenueAttributed):
            for credit in event.message.credits:
                totals[credit.channel] += credit.amount.minor_units
    return totals


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.projector"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def positions(store: ReadStore) -> dict[str, int]:
    return {g.name: g.position for g in store.generations()}


def lowest(store: ReadStore) -> int:
    found = positions(store)
    return min(found.values()) if len(found) == 2 else 0


async def test_sigkill_at_any_moment_loses_and_doubles_nothing(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    rng = random.Random(7)
    events = story(rng).log.events
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await publish(nc, events, acknowledged=False)
    # Part of the log again, as a republished context would put it: same events,
    # new message ids.
    repeated = rng.sample(events, 150)
    for event in repeated:
        headers = dict(
            event.headers(), **{"Nats-Msg-Id": "again-" + event.envelope.event_id}
        )
        await nc.publish(event.subject, event.data(), headers=headers)
    head = await wait_for_log(nc, len(events) + len(repeated))
    await nc.close()

    store_url = f"sqlite:///{tmp_path / 'read.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")},
        "CLOSEDLOOP_DATA_DIR": str(tmp_path),
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        "CLOSEDLOOP_PROJECTOR_STORE_URL": store_url,
        "CLOSEDLOOP_PROJECTOR_BATCH_SIZE": "10",
        "CLOSEDLOOP_PROJECTOR_ONLY": "revenue_by_channel,customer_journey",
    }
    log = tmp_path / "projector.log"
    store = ReadStore(store_url)
    killed_at: list[int] = []
    process = start(env, log)
    try:
        for _ in range(KILLS):
            # Let this process commit some batches of its own, then kill it at a
            # random moment: mid-batch, mid-transaction, or between reads.
            before = lowest(store)
            while lowest(store) <= before < head:
                assert process.poll() is None, log.read_text()
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, 0.05))
            killed_at.append(lowest(store))
            process.send_signal(signal.SIGKILL)
            process.wait()
            process = start(env, log)
        for _ in range(3000):
            done = [g for g in store.generations() if g.state == "active"]
            if len(done) == 2 and min(g.position for g in done) >= head:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(
                f"not caught up: {positions(store)} of {head}\n{log.read_text()}"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert len(killed_at) == KILLS
    assert all(0 < at < head for at in killed_at), (killed_at, head)

    for generation in store.generations():
        assert (generation.key.generation, generation.parked) == (1, 0)
    revenue_table = store.tables_for(
        _projection("revenue_by_channel"), _key(store, "revenue_by_channel")
    )[revenue]
    journey_table = store.tables_for(
        _projection("customer_journey"), _key(store, "customer_journey")
    )[entries]
    with store.read() as conn:
        totals = Counter(
            dict(
                conn.execute(
                    sa.select(
                        revenue_table.c.channel,
                        sa.func.sum(revenue_table.c.revenue_minor),
                    ).group_by(revenue_table.c.channel)
                ).all()
            )
        )
        journey_entries = conn.execute(
            sa.select(sa.func.count()).select_from(journey_table)
        ).scalar()
        conversions = conn.execute(
            sa.select(sa.func.sum(revenue_table.c.conversions))
        ).scalar()
    store.close()
    assert totals == expected_revenue(events)
    assert conversions == 2 * PEOPLE
    # A touch, a capture and an identification per person; each once.
    assert journey_entries == 3 * PEOPLE


def _projection(name: str) -> object:
    from closedloop.projections import discover  # noqa: PLC0415

    return discover({}).get(name)()


def _key(store: ReadStore, name: str) -> object:
    active = store.active(name)
    assert active is not None
    return active.key
