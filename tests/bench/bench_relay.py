"""Relay: events per second from the store to JetStream, next to raw publishing.

A SQLite lead store is filled with N events (visitors and their touchpoints, saved
through the LeadStore application in large transactions). Then, in each trial, the
stream is re-created empty and:

- a Relay (closedloop.relay), set up as a service sets it up (reading and mapping in
  its outbox worker process), publishes the whole store into it, timed from when it
  is ready until its position reaches the end of the store;
- the same messages (mapped once by the same outbox reader, so the same subjects,
  payloads and headers) are published raw with nats-py's `js.publish_async` into the
  stream re-created empty, twice: all pipelined with the acknowledgements awaited at
  the end, and in windows of the relay's batch size.

Relay and raw take turns, so a slow spell of the shared machine falls on both; each
figure is the median of its trials. Target: the relay reaches at least 70 percent of
the faster raw rate.

    python tests/bench/bench_relay.py [--events 20000] [--trials 3]
        [--relay-outbox process|thread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import machine  # noqa: E402

TARGET_FRACTION = 0.7
TOUCHPOINTS_PER_VISITOR = 9  # with VisitorFirstSeen: 10 events per visitor
VISITORS_PER_SAVE = 250


def prefill(store_url: str, events: int) -> int:
    """Saves about `events` events directly through the application; returns count."""
    from closedloop.eventstore.metadata import EventMeta  # noqa: PLC0415
    from closedloop.eventstore.store import StoreLocation  # noqa: PLC0415
    from services.lead.application import LeadStore  # noqa: PLC0415
    from services.lead.domain import (  # noqa: PLC0415
        TouchpointRequest,
        Visitor,
    )

    store = LeadStore(env=StoreLocation.parse(store_url).eventsourcing_env())
    sources = [("google", "cpc", "paid_search"), ("newsletter", "email", "email")]
    try:
        written = 0
        batch: list[Visitor] = []
        v = 0
        while written < events:
            now = datetime.now(UTC)
            visitor = Visitor(f"relay-bench-{v}", now)
            left = events - written - 1
            for i in range(min(TOUCHPOINTS_PER_VISITOR, left)):
                source, medium, channel = sources[i % len(sources)]
                visitor.record_touchpoint(
                    TouchpointRequest(
                        touchpoint_id=uuid.uuid4(),
                        channel=channel,
                        source=source,
                        medium=medium,
                        campaign=f"campaign-{i % 7}",
                        content="",
                        interaction="ad_click",
                        occurred_at=now,
                        attributes={"gclid": f"g{v}-{i}"},
                        idempotency_key=f"k{v}-{i}",
                    )
                )
            meta = EventMeta.new()
            for pending in visitor.pending_events:
                meta.attach(pending)
            written += len(visitor.pending_events)
            batch.append(visitor)
            v += 1
            if len(batch) >= VISITORS_PER_SAVE or written >= events:
                store.save(*batch)
                batch = []
        return written
    finally:
        store.close()


async def run(events: int, trials: int, relay_outbox: str) -> dict[str, Any]:
    from closedloop import bus  # noqa: PLC0415
    from closedloop.bus.cloudevents import RELAY_POSITION_HEADER  # noqa: PLC0415
    from closedloop.bus.streams import (  # noqa: PLC0415
        StreamSettings,
        context_stream,
        provision_streams,
    )
    from closedloop.eventstore.store import StoreLocation  # noqa: PLC0415
    from closedloop.natsserver import NatsServer  # noqa: PLC0415
    from closedloop.relay import Relay, RelaySettings  # noqa: PLC0415
    from closedloop.relay.outbox import OutboxRecipe  # noqa: PLC0415
    from closedloop.relay.positions import RelayPositions  # noqa: PLC0415
    from services.lead.application import LeadStore  # noqa: PLC0415
    from services.lead.wire import SOURCE, to_message  # noqa: PLC0415

    scratch = machine.work_dir("relay")
    store_url = f"sqlite:///{scratch / 'lead' / 'events.db'}"
    location = StoreLocation.parse(store_url)
    machine.say(f"relay: filling a SQLite store with {events:,} events")
    began = time.monotonic()
    written = await asyncio.to_thread(prefill, store_url, events)
    fill_s = time.monotonic() - began
    stream = context_stream("lead")
    settings = StreamSettings()
    server = NatsServer(store_dir=scratch / "nats").start()
    store = LeadStore(env=location.eventsourcing_env())
    nc = await bus.connect(server.url, name="bench-relay")
    js = nc.jetstream()
    report: dict[str, Any] = {"events": written, "prefill_s": round(fill_s, 2)}
    try:
        await provision_streams(js, settings, ("lead",), include_log=False)
        recipe = OutboxRecipe(
            LeadStore, location.eventsourcing_env(), to_message, SOURCE
        )
        relay_settings = RelaySettings()
        positions = RelayPositions(location.sqlalchemy_url())
        top = store.recorder.max_notification_id() or 0

        async def fresh_stream() -> None:
            await js.delete_stream(stream)
            await provision_streams(js, settings, ("lead",), include_log=False)

        async def publish_through_relay() -> dict[str, Any]:
            """From an empty stream: the relay republishes the store from the start."""
            await fresh_stream()
            relay = Relay(
                name="lead-relay",
                outbox=recipe.outbox(relay_outbox, store),  # as a service sets it up
                nc=nc,
                stream=stream,
                positions=positions,
                settings=relay_settings,
            )
            started = time.monotonic()
            task = asyncio.create_task(relay.run())
            # Timed from when it is ready: its outbox worker has started, like a
            # service's relay long before a backlog builds up.
            await asyncio.wait_for(relay.ready.wait(), 60)
            began = time.monotonic()
            deadline = began + 300
            while relay.position < top and time.monotonic() < deadline:
                if task.done():
                    task.result()  # raises what stopped it
                await asyncio.sleep(0.002)
            seconds = time.monotonic() - began
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await relay.close()
            info = await js.stream_info(stream)
            return {
                "start_s": round(began - started, 2),
                "seconds": round(seconds, 3),
                "published": relay.published,
                "per_second": round(relay.published / seconds, 1),
                "stream_messages": info.state.messages,
                "reached_end": relay.position >= top,
            }

        # The same messages (subjects, payloads, headers), mapped once in this
        # process by the same reader, then published raw.
        messages: list[tuple[str, bytes, dict[str, str]]] = []
        reader_store, reader = recipe.open()
        start = 1
        while events_read := reader.read(start, 1000):
            messages.extend(
                (subject, payload, {**headers, RELAY_POSITION_HEADER: str(position)})
                for position, subject, payload, headers in events_read
                if subject
            )
            start = events_read[-1][0] + 1
        reader_store.close()

        async def publish_raw(window: int) -> dict[str, Any]:
            await fresh_stream()
            began = time.monotonic()
            for offset in range(0, len(messages), window):
                futures = [
                    await js.publish_async(subject, payload, headers=headers)
                    for subject, payload, headers in messages[offset : offset + window]
                ]
                await asyncio.wait_for(asyncio.gather(*futures), 60)
            seconds = time.monotonic() - began
            info = await js.stream_info(stream)
            return {
                "seconds": round(seconds, 3),
                "published": len(messages),
                "per_second": round(len(messages) / seconds, 1),
                "stream_messages": info.state.messages,
            }

        raw_cases = (
            ("acks_at_end", len(messages)),
            (f"windows_of_{relay_settings.batch_size}", relay_settings.batch_size),
        )
        relay_trials: list[dict[str, Any]] = []
        raw_trials: dict[str, list[dict[str, Any]]] = {
            label: [] for label, _ in raw_cases
        }
        # Relay and raw take turns, so that a slow spell of a shared machine falls
        # on both; each figure is the median of its trials.
        for trial in range(1, trials + 1):
            machine.say(f"relay: trial {trial} of {trials}, {top:,} notifications")
            relay_trials.append(await publish_through_relay())
            machine.say(f"  relay {machine.rate(relay_trials[-1]['per_second'])}")
            for label, window in raw_cases:
                raw_trials[label].append(await publish_raw(window))
                rate = machine.rate(raw_trials[label][-1]["per_second"])
                machine.say(f"  raw publish_async, {label.replace('_', ' ')}: {rate}")
        report["trials"] = trials
        report["relay_outbox"] = relay_outbox
        report["relay"] = {
            **machine.median_result(relay_trials),
            "batch_size": relay_settings.batch_size,
            "complete": all(
                t["reached_end"] and t["stream_messages"] == t["published"]
                for t in relay_trials
            ),
        }
        report["raw"] = {
            label: machine.median_result(found) for label, found in raw_trials.items()
        }
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        store.close()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report["rows"] = rows(report)
    return report


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    relay = report["relay"]
    best_label, best = max(report["raw"].items(), key=lambda kv: kv[1]["per_second"])
    needed = TARGET_FRACTION * best["per_second"]
    ratio = relay["per_second"] / best["per_second"] if best["per_second"] else 0.0
    raw_text = "; ".join(
        f"{label.replace('_', ' ')} {machine.rate(r['per_second'])}"
        for label, r in report["raw"].items()
    )
    complete = relay["complete"]
    return [
        {
            "benchmark": "relay",
            "case": (
                f"SQLite store to JetStream, {report['events']:,} events "
                f"(batches of {relay['batch_size']}; medians of {report['trials']} "
                "trials, relay and raw in turn)"
            ),
            "result": (
                f"{machine.rate(relay['per_second'])} ({relay['seconds']:.2f} s"
                f"{'' if complete else ', INCOMPLETE'})"
            ),
            "baseline": f"raw js.publish_async of the same messages: {raw_text}",
            "target": (
                f">= {machine.rate(needed)} (70% of raw, "
                f"{best_label.replace('_', ' ')}); got {ratio:.0%} of raw"
            ),
            "met": complete and relay["per_second"] >= needed,
        }
    ]


def main(
    events: int = 20_000, trials: int = 3, relay_outbox: str = "process"
) -> dict[str, Any]:
    started = time.monotonic()
    report = asyncio.run(run(events, trials, relay_outbox))
    report["runtime_s"] = round(time.monotonic() - started, 1)
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=3)
    machine.add_relay_outbox_option(parser)
    args = parser.parse_args()
    report = main(
        events=args.events, trials=args.trials, relay_outbox=args.relay_outbox
    )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    _cli()
