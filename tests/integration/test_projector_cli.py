"""The operator CLI against a real log: events tail and stats, and a blue/green
rebuild that is interrupted with Ctrl-C and resumed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import nats
import pytest

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.config import ServiceConfig
from closedloop.grpckit.paging import DEFAULT_PAGE_SIZE
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections import ReadStore
from closedloop.testing.readside import (
    apply_events,
    ident,
    publish,
    scripted_quarter,
    snapshot,
    wait_for_log,
)
from services.insights.__main__ import bootstrap
from services.projector.projections.customer_journey import CustomerJourney

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from closedloop.natsserver import NatsServer
    from closedloop.testing.readside import Published, Scenario

pytestmark = [pytest.mark.nats]

VISITS = 1500
LONG_JOURNEY = 150


async def closedloop(
    env: dict[str, str], *args: str, interrupt_when: asyncio.Event | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apps.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if interrupt_when is not None:
        await asyncio.wait_for(interrupt_when.wait(), 60)
        process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def may_touches(s: Scenario, visits: Iterable[tuple[str, int]]) -> None:
    """An email touch per (visitor, hour), the nth on May 1 + n % 28."""
    for n, (visitor, hour) in enumerate(visits):
        s.touch(
            f"2026-05-{1 + n % 28:02d}",
            visitor=visitor,
            hour=hour,
            channel=lead_types.CHANNEL_EMAIL,
        )


async def on_the_log(
    server: NatsServer, s: Scenario, *, acknowledged: bool = True
) -> list[Published]:
    nc = await nats.connect(server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await publish(nc, s.log.events, acknowledged=acknowledged)
    await wait_for_log(nc, len(s.log.events))
    await nc.close()
    return s.log.events


@pytest.fixture
async def log(own_nats_server: NatsServer) -> list[Published]:
    s = scripted_quarter()
    may_touches(s, ((f"crowd-{n}", 12) for n in range(VISITS)))
    return await on_the_log(own_nats_server, s, acknowledged=False)


def cli_env(own_nats_server: NatsServer, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")},
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        "CLOSEDLOOP_PROJECTOR_STORE_URL": f"sqlite:///{tmp_path / 'read.db'}",
    }


async def test_events_stats_and_tail(
    log: list[Published], own_nats_server: NatsServer, tmp_path: Path
) -> None:
    env = cli_env(own_nats_server, tmp_path)
    (
        (code, stats, err),
        (code2, tail, err2),
        (code3, deals, err3),
    ) = await asyncio.gather(
        closedloop(env, "events", "stats", "--json"),
        closedloop(env, "events", "tail", "--from-start", "--limit", "3"),
        closedloop(
            env,
            "events",
            "tail",
            "--subject",
            "closedloop.deal.v1.>",
            "--from-start",
            "--limit",
            "2",
        ),
    )
    assert (code, code2, code3) == (0, 0, 0), (err, err2, err3)
    counted = json.loads(stats)
    assert counted["total"] == len(log)
    assert counted["by_type"]["closedloop.lead.v1.TouchpointRecorded"] == 10 + VISITS
    assert counted["by_type"]["closedloop.deal.v1.DealWon"] == 5
    lines = tail.splitlines()
    assert len(lines) == 3
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    for line in lines:
        _, recorded, event_type, _subject, payload = line.split(maxsplit=4)
        assert recorded.startswith("2026-01-01T")
        assert event_type.startswith("closedloop.")
        assert json.loads(payload)
    assert all("closedloop.deal.v1." in line for line in deals.splitlines())
    assert "DealOpened" in deals.splitlines()[0]


async def test_rebuild_shows_progress_and_resumes_after_ctrl_c(
    log: list[Published], own_nats_server: NatsServer, tmp_path: Path
) -> None:
    env = cli_env(own_nats_server, tmp_path)
    store = ReadStore(env["CLOSEDLOOP_PROJECTOR_STORE_URL"])
    started = asyncio.Event()

    async def watch() -> None:
        while True:
            found = await asyncio.to_thread(store.generations, "customer_journey")
            if found and found[0].position > 0:
                started.set()
                return
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    code, out, err = await closedloop(
        env,
        "projections",
        "rebuild",
        "customer_journey",
        "--batch-size",
        "5",
        interrupt_when=started,
    )
    await watcher
    assert code == 130, err
    assert "interrupted at position" in out
    (generation,) = store.generations("customer_journey")
    assert generation.state == "building"
    assert 0 < generation.position < len(log)
    assert generation.build_target == len(log)

    code, status, err = await closedloop(env, "projections", "status", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(status)["projections"]}
    assert rows["customer_journey"]["state"] == "building"
    assert rows["customer_journey"]["lag"] == len(log) - generation.position
    assert rows["revenue_by_channel"]["state"] == "not added"

    code, out, err = await closedloop(
        env, "projections", "rebuild", "customer_journey", "--batch-size", "500"
    )
    assert code == 0, err
    assert "events/s" in out
    version = CustomerJourney.version
    assert f"customer_journey v{version} g1 is active: {len(log)} log messages" in out
    active = store.active("customer_journey")
    assert active is not None
    assert active.position == len(log)
    projection = CustomerJourney()
    reference, key = apply_events(projection, log, batch_size=100)
    assert snapshot(store, projection, active.key) == snapshot(
        reference, projection, key
    )

    # A second rebuild goes blue/green: generation 2 while generation 1 serves.
    code, out, err = await closedloop(
        env, "projections", "rebuild", "customer_journey", "--no-progress"
    )
    assert code == 0, err
    states = {g.key.generation: g.state for g in store.generations("customer_journey")}
    assert states == {1: "retired", 2: "active"}
    store.close()


async def test_the_journey_report_shows_every_page(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    """A journey longer than a page is printed whole, in its order."""
    s = scripted_quarter()
    may_touches(s, (("v-ann", n // 28) for n in range(LONG_JOURNEY)))
    await on_the_log(own_nats_server, s)
    env = cli_env(own_nats_server, tmp_path)
    code, _, err = await closedloop(
        env, "projections", "rebuild", "customer_journey", "--no-progress"
    )
    assert code == 0, err
    insights = await bootstrap(
        ServiceConfig.from_env(
            "insights", {**env, "CLOSEDLOOP_INSIGHTS_GRPC_PORT": "0"}
        ),
        environ=env,
    )
    try:
        env["CLOSEDLOOP_INSIGHTS_ADDRESS"] = f"127.0.0.1:{insights.server.port}"
        code, out, err = await closedloop(
            env, "report", "journey", "--lead-id", ident("lead", "ann"), "--json"
        )
    finally:
        await insights.stop()
    assert code == 0, err
    shown = json.loads(out)
    # Her 16 entries of the quarter and the touches after, more than a page.
    assert len(shown["entries"]) == 16 + LONG_JOURNEY > DEFAULT_PAGE_SIZE
    times = [e["occurred_at"] for e in shown["entries"]]
    assert times == sorted(times)
    assert len({e["event_id"] for e in shown["entries"]}) == len(times)
    assert "next_page_token" not in shown


async def test_unknown_projection_and_unreachable_nats(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    env = cli_env(own_nats_server, tmp_path)
    code, _, err = await closedloop(env, "projections", "rebuild", "nonesuch")
    assert code == 1
    assert "no projection named 'nonesuch'" in err
    env["CLOSEDLOOP_NATS_URL"] = "nats://127.0.0.1:1"
    code, _, err = await closedloop(env, "events", "stats")
    assert code == 1
    assert "cannot reach NATS" in err


async def test_unreachable_nats_is_named_without_its_credentials(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    env = cli_env(own_nats_server, tmp_path)
    env["CLOSEDLOOP_NATS_URL"] = "nats://cli:planted-pw@127.0.0.1:1"
    code, out, err = await closedloop(env, "events", "stats")
    assert code == 1
    assert "cannot reach NATS at nats://***@127.0.0.1:1" in err
    assert "planted-pw" not in out + err
