"""The relay against a real nats-server and real SQLite / PostgreSQL stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import nats
import psycopg
import pytest

from closedloop.bus.cloudevents import Envelope
from closedloop.bus.streams import (
    LOG_STREAM,
    StreamSettings,
    context_stream,
    provision_streams,
)
from closedloop.eventstore.store import StoreLocation
from closedloop.relay import Relay, RelaySettings, event_id
from closedloop.relay.outbox import OutboxRecipe, ThreadOutbox, WorkerOutbox
from closedloop.relay.positions import RelayPositions, RelayState
from closedloop.testing.streams import eventually, read_stream
from services.lead.application import LeadStore
from services.lead.domain import TouchpointRequest, Visitor
from services.lead.wire import SOURCE, to_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from nats.aio.client import Client

    from closedloop.natsserver import NatsServer

pytestmark = pytest.mark.nats
STREAM = context_stream("lead")


def new_visitor(n_touchpoints: int = 1) -> Visitor:
    visitor = Visitor(f"anon-{uuid.uuid4()}", datetime.now(UTC))
    for i in range(n_touchpoints):
        visitor.record_touchpoint(
            TouchpointRequest(
                touchpoint_id=uuid.uuid4(),
                channel="paid_search",
                source="google",
                medium="cpc",
                campaign="spring",
                content="",
                interaction="ad_click",
                occurred_at=datetime.now(UTC),
                idempotency_key=f"k{i}",
            )
        )
    return visitor


@pytest.fixture
def store(store_url: str) -> Iterator[LeadStore]:
    env = StoreLocation.parse(store_url).eventsourcing_env()
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        # Without the library's table lock, concurrent transactions may commit their
        # notification ids out of order: the case the relay must survive.
        env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y"
    app = LeadStore(env=env)
    app.store_url = store_url  # type: ignore[attr-defined]
    yield app
    app.close()


@pytest.fixture
async def nc(own_nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(own_nats_server.url)
    await provision_streams(client.jetstream(), StreamSettings())
    yield client
    await client.close()


def make_relay(
    store: LeadStore, nc: Client, *, in_worker: bool = False, **settings: Any
) -> Relay:
    """A relay reading in a thread, or in a worker process as services run it."""
    location = StoreLocation.parse(store.store_url)  # type: ignore[attr-defined]
    recipe = OutboxRecipe(LeadStore, dict(store.env), to_message, SOURCE)
    return Relay(
        name="lead-relay",
        outbox=recipe.outbox("process" if in_worker else "thread", store),
        nc=nc,
        stream=STREAM,
        positions=RelayPositions(location.sqlalchemy_url(), schema=location.pg_schema),
        settings=RelaySettings(**settings),
    )


def count_reads(relay: Relay, store: LeadStore) -> list[int]:
    """Sizes of the relay's reads of the store, in order (a thread outbox only)."""
    reads: list[int] = []
    select = store.recorder.select_notifications

    def counted(*args: Any, **kwargs: Any) -> Any:
        found = select(*args, **kwargs)
        reads.append(len(found))
        return found

    assert isinstance(relay.outbox, ThreadOutbox)
    relay.outbox.reader.recorder = SimpleNamespace(select_notifications=counted)  # type: ignore[assignment]
    return reads


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[Relay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()


def store_event_ids(store: LeadStore) -> list[str]:
    notifications = store.recorder.select_notifications(1, 1_000_000)
    return [event_id(n.originator_id, n.originator_version) for n in notifications]


async def stream_event_ids(nc: Client, stream: str = STREAM) -> list[str]:
    return [
        Envelope.from_headers(m.headers).event_id
        for m in await read_stream(nc.jetstream(), stream)
    ]


async def test_stream_holds_exactly_the_events_written_from_many_threads(
    store: LeadStore, nc: Client
) -> None:
    relay = make_relay(
        store, nc, in_worker=True, gap_timeout=1.0, batch_size=64, poll_interval=0.05
    )
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(40):
                store.save(new_visitor(n_touchpoints=2))
        except BaseException as error:
            errors.append(error)

    async with running(relay):
        threads = [threading.Thread(target=writer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join)
        assert not errors
        expected = await asyncio.to_thread(store_event_ids, store)
        assert len(expected) == 8 * 40 * 3

        async def caught_up() -> bool:
            return relay.position >= len(expected) and not relay.state.open_gaps

        await eventually(caught_up, timeout=60)
    published = await stream_event_ids(nc)
    assert len(published) == len(set(published)), "a message was published twice"
    assert sorted(published) == sorted(expected)
    # The log stream sources the context stream: same events there too.
    await eventually(lambda: _count(nc, LOG_STREAM, len(expected)), timeout=30)


async def _count(nc: Client, stream: str, expected: int) -> bool:
    info = await nc.jetstream().stream_info(stream)
    return bool(info.state.messages == expected)


@pytest.mark.postgres
@pytest.mark.parametrize("commit_after", [0.3, 2.0], ids=["within-gap-timeout", "late"])
async def test_out_of_order_commit_is_never_skipped(
    postgres_url: str, nc: Client, commit_after: float
) -> None:
    """A transaction holds notification id N while N+1 commits first."""
    env = StoreLocation.parse(postgres_url).eventsourcing_env()
    env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y"
    store = LeadStore(env=env)
    store.store_url = postgres_url  # type: ignore[attr-defined]
    try:
        store.save(new_visitor())  # ids 1, 2
        relay = make_relay(store, nc, gap_timeout=1.0, poll_interval=0.05)
        slow = new_visitor()
        stored = [store.mapper.to_stored_event(e) for e in slow.collect_events()]
        location = StoreLocation.parse(postgres_url)
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        conn = psycopg.connect(
            f"host={location.pg_host} port={location.pg_port} "
            f"user={location.pg_user} dbname={location.pg_dbname}"
        )
        try:
            with conn.cursor() as cur:
                for s in stored:  # ids 3, 4: not committed yet
                    cur.execute(
                        f"INSERT INTO {table} "  # noqa: S608 - the library's table name
                        "(originator_id, originator_version, topic, state)"
                        " VALUES (%s, %s, %s, %s)",
                        (s.originator_id, s.originator_version, s.topic, s.state),
                    )
            store.save(new_visitor())  # ids 5, 6 commit first
            async with running(relay):
                await asyncio.sleep(commit_after)
                conn.commit()
                expected = await asyncio.to_thread(store_event_ids, store)
                assert len(expected) == 6

                async def all_published() -> bool:
                    ids = await stream_event_ids(nc)
                    return sorted(ids) == sorted(expected) and not relay.state.open_gaps

                await eventually(all_published, timeout=30)
        finally:
            conn.close()
        published = await stream_event_ids(nc)
        assert len(published) == len(set(published)) == 6
        if commit_after < 1.0:
            # It waited for the gap: the stream keeps the store's order.
            assert published == expected
    finally:
        store.close()


async def test_restart_resumes_from_the_stream_without_duplicates(
    store: LeadStore, nc: Client
) -> None:
    for _ in range(10):
        store.save(new_visitor())
    relay = make_relay(store, nc, poll_interval=0.05)
    async with running(relay):
        await eventually(lambda: _count(nc, STREAM, 20))
    # A crash after JetStream acknowledged but before the position was stored.
    relay._positions.save(relay.name, RelayState(position=4))
    for _ in range(5):
        store.save(new_visitor())
    again = make_relay(store, nc, poll_interval=0.05)
    async with running(again):
        await eventually(lambda: _count(nc, STREAM, 30))
        await asyncio.sleep(0.3)
    published = await stream_event_ids(nc)
    assert len(published) == len(set(published)) == 30
    assert published == await asyncio.to_thread(store_event_ids, store)


async def test_the_stored_position_is_written_at_most_once_an_interval(
    store: LeadStore, nc: Client
) -> None:
    relay = make_relay(store, nc, poll_interval=0.05, save_interval=60.0)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), 30)
        for _ in range(3):
            store.save(new_visitor())
            relay.wake()
        await eventually(lambda: _count(nc, STREAM, 6))

        async def caught_up() -> bool:
            return relay.position == 6

        await eventually(caught_up)
        # Caught up, but the store is not written again within the interval: the
        # stream's last message carries the position meanwhile.
        stored = await asyncio.to_thread(relay._positions.load, relay.name)
        assert stored.position == 0
        await relay.save_position()  # what a graceful stop does
        stored = await asyncio.to_thread(relay._positions.load, relay.name)
        assert stored.position == 6


async def test_a_caught_up_relay_reads_the_store_only_for_new_commits_or_a_poll(
    store: LeadStore, nc: Client
) -> None:
    relay = make_relay(store, nc, poll_interval=30.0)
    reads = count_reads(relay, store)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), 30)
        await asyncio.sleep(0.1)
        reads.clear()
        for n in range(1, 4):
            store.save(new_visitor())
            relay.wake(committed=2 * n)  # what the command executor reports

            async def published(expected: int = 2 * n) -> bool:
                return await _count(nc, STREAM, expected)

            await eventually(published, timeout=10)
            await asyncio.sleep(0.05)
        # One read per commit: a short batch says the log is read out, so no empty
        # read follows just to confirm it.
        assert reads == [2, 2, 2]
        for _ in range(5):
            relay.wake(committed=6)  # nothing new: no read of the store
            await asyncio.sleep(0.05)
        assert reads == [2, 2, 2]
        # A wake-up that names no commit is looked into, whatever the relay knew.
        store.save(new_visitor())
        relay.wake()
        await eventually(lambda: _count(nc, STREAM, 8), timeout=10)


async def test_commits_during_a_publish_go_out_together_after_it(
    store: LeadStore, nc: Client
) -> None:
    """At the tail the relay gathers new commits rather than chasing each one."""
    relay = make_relay(store, nc, poll_interval=30.0, linger=0.2)
    reads = count_reads(relay, store)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), 30)
        await asyncio.sleep(0.1)
        reads.clear()
        for n in range(1, 41):  # a commit every 20 ms for 0.8 s: 80 events
            await asyncio.to_thread(store.save, new_visitor())
            relay.wake(committed=2 * n)
            await asyncio.sleep(0.02)
        await eventually(lambda: _count(nc, STREAM, 80), timeout=10)
        # About one read per linger (0.2 s), never one per commit; none comes back
        # empty just to confirm that the log was read out.
        assert sum(reads) == 80
        assert len(reads) <= 10
        assert 0 not in reads


async def test_a_backlog_is_read_batch_after_batch_without_waiting_for_polls(
    store: LeadStore, nc: Client
) -> None:
    for _ in range(100):
        store.save(new_visitor(n_touchpoints=4))  # 500 events
    relay = make_relay(store, nc, poll_interval=30.0, batch_size=16, window=2)
    async with running(relay):
        await eventually(lambda: _count(nc, STREAM, 500), timeout=20)


async def test_a_recreated_stream_is_republished_from_the_store(
    store: LeadStore, nc: Client
) -> None:
    for _ in range(5):
        store.save(new_visitor())
    relay = make_relay(store, nc, poll_interval=0.05)
    async with running(relay):
        await eventually(lambda: _count(nc, STREAM, 10))
    # The stream is lost (deleted and provisioned again): its events come back.
    await nc.jetstream().delete_stream(STREAM)
    await provision_streams(nc.jetstream(), StreamSettings())
    again = make_relay(store, nc, poll_interval=0.05)
    async with running(again):
        await eventually(lambda: _count(nc, STREAM, 10))
    published = await stream_event_ids(nc)
    assert published == await asyncio.to_thread(store_event_ids, store)


async def test_relay_catches_up_after_nats_was_away(
    store: LeadStore, own_nats_server: NatsServer
) -> None:
    """Saves go on while NATS is down; afterwards each event is in the stream once."""
    client = await nats.connect(
        own_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    await provision_streams(client.jetstream(), StreamSettings())
    relay = make_relay(store, client, poll_interval=0.05, publish_timeout=1.0)
    try:
        async with running(relay):
            for _ in range(5):
                await asyncio.to_thread(store.save, new_visitor())
            await eventually(lambda: _count(client, STREAM, 10))
            await asyncio.to_thread(own_nats_server.stop)
            started = time.monotonic()
            for _ in range(20):
                await asyncio.to_thread(store.save, new_visitor())
            assert time.monotonic() - started < 20
            await asyncio.sleep(1.0)
            await asyncio.to_thread(own_nats_server.start)
            await eventually(lambda: _count(client, STREAM, 50), timeout=60)
            await asyncio.sleep(0.5)
        published = await stream_event_ids(client)
        assert len(published) == len(set(published)) == 50
        assert sorted(published) == sorted(
            await asyncio.to_thread(store_event_ids, store)
        )
    finally:
        await client.close()


async def test_the_relay_starts_another_outbox_worker_when_one_dies(
    store: LeadStore, nc: Client
) -> None:
    """Reading and mapping happen in a worker process; killing it loses nothing."""
    relay = make_relay(store, nc, in_worker=True, poll_interval=0.05)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), 60)
        assert isinstance(relay.outbox, WorkerOutbox)
        first = relay.outbox.worker_pid
        assert first is not None
        for _ in range(5):
            store.save(new_visitor())
        await eventually(lambda: _count(nc, STREAM, 10))
        os.kill(first, signal.SIGKILL)
        for _ in range(5):
            store.save(new_visitor())
        await eventually(lambda: _count(nc, STREAM, 20), timeout=60)
        assert relay.outbox.worker_pid not in {None, first}
    published = await stream_event_ids(nc)
    assert published == await asyncio.to_thread(store_event_ids, store)


async def test_a_stopped_relay_leaves_no_outbox_worker_behind(
    store: LeadStore, nc: Client
) -> None:
    relay = make_relay(store, nc, in_worker=True)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), 60)
        assert isinstance(relay.outbox, WorkerOutbox)
        pid = relay.outbox.worker_pid
        assert pid is not None
    assert relay.outbox.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
