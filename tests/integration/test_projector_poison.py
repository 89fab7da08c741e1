"""A poison message is parked, counted, and does not stop its projection; after a
fix, `closedloop projections retry-parked` applies it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest

from closedloop.attribution.v1 import events_pb2 as attribution
from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.projections import discover
from closedloop.projections.loader import EXTRA_ENV
from closedloop.readmodels.revenue_by_channel import revenue
from closedloop.testing.readside import (
    Scenario,
    ident,
    publish,
    scripted_quarter,
    snapshot,
    wait_caught_up,
    wait_for_log,
)
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

if TYPE_CHECKING:
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.nats]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extra_projection"
TOUCH_COUNT = "extra_projection.touch_count:TouchCount"
REJECT_ENV = "EXTRA_PROJECTION_REJECT_CAMPAIGN"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_poison_is_parked_and_the_projection_goes_on(
    own_nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(FIXTURE))
    monkeypatch.setenv(REJECT_ENV, "spring-social")
    registry = discover({EXTRA_ENV: TOUCH_COUNT})
    assert "touch_count" in registry.projections, registry.errors
    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    await provision_streams(js, StreamSettings())
    events = scripted_quarter().log.events
    half = len(events) // 2
    await publish(nc, events[:half])
    # 1. A DealWon whose payload is not protobuf.
    garbage = dict(events[0].headers(), **{"ce-type": "closedloop.deal.v1.DealWon"})
    garbage.update({"ce-id": "poison-1", "Nats-Msg-Id": "poison-1"})
    await js.publish("closedloop.deal.v1.DealWon", b"\x08\xff\xff\xff", headers=garbage)
    # 2. A message without CloudEvents headers at all.
    await js.publish(
        "closedloop.lead.v1.Unheard", b"hello", headers={"Nats-Msg-Id": "p2"}
    )
    # 3. Credits that do not add up to their conversion: decodes, cannot apply.
    s = Scenario()
    s.attribute(
        ident("deal", "p"),
        ident("lead", "p"),
        "2026-02-02",
        "linear",
        [("email", "", 100)],
    )
    broken = s.log.events[-1].message
    assert isinstance(broken, attribution.RevenueAttributed)
    broken.amount.minor_units = 101
    await publish(nc, s.log.events)
    await publish(nc, events[half:])
    head = await wait_for_log(nc, len(events) + 3)

    store_url = f"sqlite:///{tmp_path / 'read.db'}"
    config = ProjectorConfig.from_env(
        {
            "CLOSEDLOOP_NATS_URL": own_nats_server.url,
            "CLOSEDLOOP_PROJECTOR_STORE_URL": store_url,
            "CLOSEDLOOP_PROJECTOR_BATCH_SIZE": "10",
        }
    )
    projections = [cls() for cls in registry.projections.values()]
    projector, task = await start_projector(config, projections)
    try:
        await wait_caught_up(projector)
        parked = {g.name: g.parked for g in projector.store.generations()}
        positions = {g.name: g.position for g in projector.store.generations()}
    finally:
        await stop_projector(projector, task)
        await nc.close()
    assert set(positions.values()) == {head}
    assert parked == {
        "consent_status": 1,
        "customer_journey": 2,
        "customer_value": 2,
        "funnel_by_channel": 2,
        "revenue_by_channel": 2,
        # Bob's, Eve's and Yan's touches of the refused campaign, and the headless one.
        "touch_count": 4,
    }
    store = projector.store
    by_seq = {(p.key.name, p.event_id): p.error for p in store.parked()}
    assert by_seq[
        ("revenue_by_channel", s.log.events[-1].envelope.event_id)
    ].startswith("ProjectionError: credits of deal")
    assert by_seq[("customer_journey", "poison-1")].startswith("cannot decode")
    # Everything after the poison was applied: the quarter's revenue is all there.
    active = store.active("revenue_by_channel")
    assert active is not None
    rows = snapshot(
        store,
        projections[[p.name for p in projections].index("revenue_by_channel")],
        active.key,
    )[revenue.name]
    assert sum(r[7] for r in rows if r[6] == "linear") == 2_300_000

    # After the fix (the campaign is no longer refused), the parked touches apply.
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CLOSEDLOOP_", REJECT_ENV))
        },
        "CLOSEDLOOP_PROJECTOR_STORE_URL": store_url,
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        EXTRA_ENV: TOUCH_COUNT,
        "PYTHONPATH": str(FIXTURE),
    }
    done = await asyncio.to_thread(
        cli, "projections", "retry-parked", "touch_count", env=env
    )
    assert done.returncode == 1, done.stderr  # the headless message still fails
    assert "3 applied, 1 still parked" in done.stdout
    touch_count = store.active("touch_count")
    assert touch_count is not None
    assert touch_count.parked == 1
    counts = dict(
        snapshot(store, registry.get("touch_count")(), touch_count.key)[
            "touch_count_v1"
        ]
    )
    assert counts == {
        "paid_search": 3,
        "paid_social": 4,
        "direct": 1,
        "word_of_mouth": 2,
    }
    status = await asyncio.to_thread(cli, "projections", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert '"parked": 1' in status.stdout
