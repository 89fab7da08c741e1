"""Rebuild benchmark: revenue_by_channel and customer_journey from a log of N events.

The benchmark writes its own log (1,000,000 events by default: visitors' touches,
leads and their stages, deals won, recognised revenue, and each win credited under
three attribution models) into a nats-server of its own, then measures in one run:

* the raw rate of reading that log from JetStream and decoding every event (the
  same reader the runner uses, without any SQL);
* the rebuild of each projection from position 0 into a fresh SQLite read store,
  through the runner (`closedloop.projections.runner.build`), in events per second
  of log, as the ratio to the raw rate;
* the peak resident memory of each phase and how much it grew: the runner streams,
  so it must not grow with the log.

    python tests/bench/bench_rebuild.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

#: Memory that a rebuild may add to the process, whatever the size of the log.
MEMORY_BOUND_MB = 256.0
BATCH = 1000
MODELS = ("linear", "first_touch", "time_decay")
CHANNELS = (
    "paid_search",
    "paid_social",
    "email",
    "organic_search",
    "direct",
    "referral",
)


def say(message: str) -> None:
    sys.stderr.write(f"[bench_rebuild] {message}\n")
    sys.stderr.flush()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:  # noqa: PTH123 - a tiny /proc read
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


class PeakMemory:
    """Samples this process's resident memory while a phase runs."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def as_dict(self) -> dict[str, float]:
        return {
            "rss_start_mb": round(self.start, 1),
            "rss_peak_mb": round(self.peak, 1),
            "rss_growth_mb": round(self.peak - self.start, 1),
        }


def log_events(count: int) -> Iterator[tuple[str, dict[str, str], bytes]]:
    """`count` events as the relays would publish them, made as they are sent."""
    from closedloop.attribution.v1 import events_pb2 as attribution  # noqa: PLC0415
    from closedloop.bus.cloudevents import Envelope  # noqa: PLC0415
    from closedloop.common.v1.money_pb2 import Money  # noqa: PLC0415
    from closedloop.deal.v1 import events_pb2 as deal  # noqa: PLC0415
    from closedloop.deal.v1 import types_pb2 as deal_types  # noqa: PLC0415
    from closedloop.lead.v1 import events_pb2 as lead  # noqa: PLC0415
    from closedloop.lead.v1 import types_pb2 as lead_types  # noqa: PLC0415
    from closedloop.protobuf import timestamp  # noqa: PLC0415

    start = datetime(2026, 1, 1, tzinfo=UTC)
    versions: dict[str, int] = {}
    sent = 0

    def event(
        message: Any, aggregate: str, at: datetime
    ) -> tuple[str, dict[str, str], bytes]:
        version = versions.get(aggregate, 0) + 1
        versions[aggregate] = version
        event_type = message.DESCRIPTOR.full_name
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            source="/closedloop/" + event_type.split(".")[1],
            subject=aggregate,
            time=at,
            sequence=version,
        )
        return event_type, envelope.headers(), message.SerializeToString()

    person = 0
    while sent < count:
        person += 1
        at = start + timedelta(minutes=person)
        when = timestamp(at)
        visitor = f"v{person}"
        visitor_id = f"visitor-{person}"
        lead_id = str(uuid.UUID(int=person))
        deal_id = str(uuid.UUID(int=10**12 + person))
        channel = CHANNELS[person % len(CHANNELS)]
        touched = [CHANNELS[(person + n) % len(CHANNELS)] for n in range(3)]
        batch = []
        for touch in range(3):
            batch.append(  # noqa: PERF401 - one event per touch, built in place
                event(
                    lead.TouchpointRecorded(
                        touchpoint=lead_types.Touchpoint(
                            touchpoint_id=str(uuid.uuid4()),
                            anonymous_id=visitor,
                            channel=lead_types.Channel.Value(  # type: ignore[arg-type]
                                "CHANNEL_" + touched[touch].upper()
                            ),
                            campaign=f"campaign-{person % 40}",
                            occurred_at=when,
                        )
                    ),
                    visitor_id,
                    at,
                )
            )
        batch.append(
            event(
                lead.LeadCaptured(
                    lead_id=lead_id,
                    email="pii:v1:token",
                    anonymous_id=visitor,
                    occurred_at=when,
                    email_digest=f"{person:064x}",
                ),
                lead_id,
                at,
            )
        )
        batch.append(
            event(
                lead.VisitorIdentified(
                    lead_id=lead_id, anonymous_id=visitor, occurred_at=when
                ),
                lead_id,
                at,
            )
        )
        batch.append(
            event(
                lead.LeadQualified(lead_id=lead_id, score=50, occurred_at=when),
                lead_id,
                at,
            )
        )
        amount = Money(minor_units=100_000 + person % 1000, currency="USD")
        batch.append(
            event(
                deal.DealOpened(
                    deal_id=deal_id, lead_id=lead_id, amount=amount, occurred_at=when
                ),
                deal_id,
                at,
            )
        )
        batch.append(
            event(
                lead.LeadConverted(lead_id=lead_id, deal_id=deal_id, occurred_at=when),
                lead_id,
                at,
            )
        )
        batch.append(
            event(
                deal.DealWon(
                    deal_id=deal_id, lead_id=lead_id, amount=amount, closed_at=when
                ),
                deal_id,
                at,
            )
        )
        batch.append(
            event(
                deal.RevenueRecognized(
                    deal_id=deal_id,
                    lead_id=lead_id,
                    revenue_id=str(uuid.uuid4()),
                    amount=amount,
                    kind=deal_types.REVENUE_KIND_NEW,
                    recognized_at=when,
                ),
                deal_id,
                at,
            )
        )
        half = amount.minor_units // 2
        for model in MODELS:
            batch.append(  # noqa: PERF401 - one event per model, built in place
                event(
                    attribution.RevenueAttributed(
                        deal_id=deal_id,
                        lead_id=lead_id,
                        model=model,
                        model_key=f"{model}(lookback=7776000s)",
                        conversion_kind=attribution.CONVERSION_KIND_WON,
                        amount=amount,
                        occurred_at=when,
                        credits=[
                            attribution.Credit(
                                channel=channel,
                                campaign=f"campaign-{person % 40}",
                                amount=Money(minor_units=half, currency="USD"),
                            ),
                            attribution.Credit(
                                channel="direct",
                                amount=Money(
                                    minor_units=amount.minor_units - half,
                                    currency="USD",
                                ),
                            ),
                        ],
                    ),
                    f"conversion-{deal_id}",
                    at,
                )
            )
        yield from batch[: count - sent]
        sent += min(len(batch), count - sent)


async def fill_log(url: str, count: int) -> int:
    import nats  # noqa: PLC0415

    from closedloop.bus.streams import StreamSettings, provision_streams  # noqa: PLC0415
    from closedloop.testing.readside import wait_for_log  # noqa: PLC0415

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    try:
        await provision_streams(nc.jetstream(), StreamSettings())
        sent = 0
        for sent, (subject, headers, data) in enumerate(log_events(count), start=1):
            await nc.publish(subject, data, headers=headers)
            if sent % 20_000 == 0:
                await nc.flush(timeout=60)
                # Keep the server's sourcing close behind, so the log fills evenly.
                info = await nc.jetstream().stream_info("CLOSEDLOOP_LOG")
                while sent - info.state.messages > 200_000:
                    await asyncio.sleep(0.2)
                    info = await nc.jetstream().stream_info("CLOSEDLOOP_LOG")
        await nc.flush(timeout=60)
        return await wait_for_log(nc, count, timeout=600)
    finally:
        await nc.close()


async def read_raw(url: str, head: int) -> dict[str, Any]:
    """Reads the whole log with the runner's reader and decodes every event."""
    import nats  # noqa: PLC0415

    from closedloop.bus.cloudevents import Envelope, decode_payload  # noqa: PLC0415
    from closedloop.projections.reader import LogReader  # noqa: PLC0415

    nc = await nats.connect(url)
    reader = LogReader(nc, batch_size=BATCH)
    decoded = 0
    with PeakMemory() as memory:
        began = time.perf_counter()
        await reader.open(1)
        position = 0
        while position < head:
            batch = await reader.next_batch(1.0)
            for message in batch.messages:
                envelope = Envelope.from_headers(message.headers)
                decode_payload(envelope.event_type, message.data)
                decoded += 1
                position = message.seq
        seconds = time.perf_counter() - began
        await reader.close()
    await nc.close()
    return {
        "events": decoded,
        "seconds": round(seconds, 2),
        "per_second": round(decoded / seconds, 1),
        **memory.as_dict(),
    }


async def rebuild(url: str, name: str, store_dir: Path, head: int) -> dict[str, Any]:
    import nats  # noqa: PLC0415

    from closedloop.projections import ReadStore, discover  # noqa: PLC0415
    from closedloop.projections.runner import RunnerSettings, build  # noqa: PLC0415

    projection = discover({}).get(name)()
    store = ReadStore(f"sqlite:///{store_dir / f'{name}.db'}")
    nc = await nats.connect(url)
    last_report = [time.monotonic()]

    def progress(update: Any) -> None:
        if time.monotonic() - last_report[0] > 10:
            last_report[0] = time.monotonic()
            say(f"  {name}: {update.position:,} of {update.head:,}")

    with PeakMemory() as memory:
        began = time.perf_counter()
        generation, outcome = await build(
            store,
            projection,
            nc,
            owner="bench",
            settings=RunnerSettings(batch_size=BATCH),
            on_progress=progress,
        )
        seconds = time.perf_counter() - began
    await nc.close()
    store.close()
    return {
        "outcome": outcome.value,
        "position": generation.position,
        "complete": generation.position >= head and generation.state == "active",
        "events_applied": generation.events_applied,
        "parked": generation.parked,
        "seconds": round(seconds, 2),
        "per_second": round(head / seconds, 1),
        **memory.as_dict(),
    }


PROJECTIONS = ("revenue_by_channel", "customer_journey")
#: The issue's target: a rebuild at least half as fast as the raw read.
TARGET_RATIO = 0.5


async def run(
    events: int, projections: tuple[str, ...] = PROJECTIONS
) -> dict[str, Any]:
    from closedloop.natsserver import NatsServer  # noqa: PLC0415

    scratch = Path(tempfile.mkdtemp(prefix="closedloop-bench-rebuild-"))
    server = NatsServer(store_dir=scratch / "nats").start()
    report: dict[str, Any] = {"benchmark": "rebuild", "events": events}
    try:
        say(f"writing a log of {events:,} events")
        began = time.perf_counter()
        head = await fill_log(server.url, events)
        report["log"] = {
            "messages": head,
            "seconds_to_write": round(time.perf_counter() - began, 1),
        }
        say("reading and decoding the raw log")
        report["raw"] = await read_raw(server.url, head)
        say(f"  {report['raw']['per_second']:,.0f} events/s")
        report["rebuilds"] = {}
        for name in projections:
            say(f"rebuilding {name}")
            result = await rebuild(server.url, name, scratch, head)
            result["ratio_to_raw"] = round(
                result["per_second"] / report["raw"]["per_second"], 3
            )
            report["rebuilds"][name] = result
            rate, ratio = result["per_second"], result["ratio_to_raw"]
            say(f"  {rate:,.0f} events/s ({ratio:.0%} of raw)")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report["rows"] = rows(report)
    return report


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    raw = report["raw"]
    found = []
    for name, result in report["rebuilds"].items():
        bounded = result["rss_growth_mb"] < MEMORY_BOUND_MB
        fast = result["ratio_to_raw"] >= TARGET_RATIO
        found.append(
            {
                "benchmark": "rebuild",
                "case": (
                    f"{name} from {report['events']:,} events "
                    f"(SQLite, batches of {BATCH})"
                ),
                "result": (
                    f"{result['per_second']:,.0f} events/s "
                    f"({result['seconds']:.1f} s); "
                    f"{result['ratio_to_raw']:.0%} of raw; "
                    f"peak RSS {result['rss_peak_mb']:.0f} MB "
                    f"(+{result['rss_growth_mb']:.0f} MB)"
                    + ("" if result["complete"] else "; INCOMPLETE")
                ),
                "baseline": (
                    "raw read + decode of the same log: "
                    f"{raw['per_second']:,.0f} events/s, "
                    f"peak RSS {raw['rss_peak_mb']:.0f} MB"
                ),
                "target": (
                    f">= {TARGET_RATIO:.0%} of raw; "
                    f"memory bounded: growth < {MEMORY_BOUND_MB:.0f} MB"
                ),
                "met": bool(result["complete"] and bounded and fast),
            }
        )
    return found


def main(
    events: int = 1_000_000, projections: tuple[str, ...] = PROJECTIONS
) -> dict[str, Any]:
    started = time.monotonic()
    report = asyncio.run(run(events, projections))
    report["runtime_s"] = round(time.monotonic() - started, 1)
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--projection",
        action="append",
        choices=PROJECTIONS,
        help="rebuild only this one (repeatable; default: all)",
    )
    args = parser.parse_args()
    chosen = tuple(args.projection or PROJECTIONS)
    report = main(events=args.events, projections=chosen)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    _cli()
