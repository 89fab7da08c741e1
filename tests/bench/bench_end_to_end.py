"""End to end: from a command's acknowledgement to the change visible in a read model.

The lead service and the projector run as real processes on their own nats-server.
A client sends RecordTouchpoint at a steady rate (500/s by default) and notes when
each call was acknowledged. A watcher follows the event log (CLOSEDLOOP_LOG) to learn
each touchpoint's log sequence, and polls the projector's read store every few
milliseconds for the position customer_journey has applied: a change is visible
when that position reaches its sequence. Latency = visible - acknowledged.

Target: p99 under 250 ms at 500 commands/s.

    python tests/bench/bench_end_to_end.py [--rate 500] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import machine  # noqa: E402

TARGET_P99_MS = 250.0
PROJECTION = "customer_journey"


async def run(rate: int, seconds: float, relay_outbox: str) -> dict[str, Any]:
    import grpc  # noqa: PLC0415
    import nats  # noqa: PLC0415
    import sqlalchemy as sa  # noqa: PLC0415

    from closedloop.bus.cloudevents import decode_payload  # noqa: PLC0415
    from closedloop.bus.streams import (  # noqa: PLC0415
        LOG_STREAM,
        StreamSettings,
        provision_streams,
    )
    from closedloop.lead.v1 import (  # noqa: PLC0415
        events_pb2,
        lead_service_pb2_grpc,
    )
    from closedloop.lead.v1 import lead_service_pb2 as pb  # noqa: PLC0415
    from closedloop.natsserver import NatsServer  # noqa: PLC0415
    from closedloop.testing.processes import ServiceProcess  # noqa: PLC0415

    work = machine.work_dir("e2e")
    data = work / "data"
    server = NatsServer(store_dir=work / "nats").start()
    projector: subprocess.Popen[bytes] | None = None
    lead = ServiceProcess(
        "lead", data, server.url, extra_env={"CLOSEDLOOP_RELAY_OUTBOX": relay_outbox}
    )
    try:
        nc = await nats.connect(server.url)
        await provision_streams(nc.jetstream(), StreamSettings())
        await lead.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
        env.update(
            CLOSEDLOOP_DATA_DIR=str(data),
            CLOSEDLOOP_NATS_URL=server.url,
            CLOSEDLOOP_PROJECTOR_ONLY=PROJECTION,
        )
        log = (data / "projector.log").open("ab")
        projector = subprocess.Popen(
            [sys.executable, "-m", "services.projector"],
            env=env,
            stdout=log,
            stderr=log,
        )
        read_db = data / "projector" / "read.db"
        for _ in range(300):
            if read_db.exists():
                break
            await asyncio.sleep(0.1)
        engine = sa.create_engine(f"sqlite:///{read_db}")
        query = sa.text(
            "SELECT MAX(position) FROM closedloop_projection_generations "
            "WHERE name = :name AND state = 'active'"
        )

        def position() -> int:
            with engine.connect() as conn:
                value = conn.execute(query, {"name": PROJECTION}).scalar()
            return int(value or 0)

        sequence_of: dict[str, int] = {}
        acked: dict[str, float] = {}
        visible: dict[str, float] = {}

        async def on_log(msg: Any) -> None:
            if msg.subject.endswith(".TouchpointRecorded"):
                event = decode_payload(msg.subject, msg.data)
                assert isinstance(event, events_pb2.TouchpointRecorded)
                sequence_of[event.touchpoint.touchpoint_id] = (
                    msg.metadata.sequence.stream
                )

        sub = await nc.jetstream().subscribe(
            ">", stream=LOG_STREAM, ordered_consumer=True, cb=on_log
        )
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set() or any(t not in visible for t in acked):
                now = time.monotonic()
                applied = await asyncio.to_thread(position)
                for touchpoint_id, seq in list(sequence_of.items()):
                    if touchpoint_id not in visible and seq <= applied:
                        visible[touchpoint_id] = now
                if stop.is_set() and time.monotonic() > deadline_after_stop:
                    break
                await asyncio.sleep(0.003)

        channel = grpc.aio.insecure_channel(lead.address)
        stub = lead_service_pb2_grpc.LeadServiceStub(channel)
        # Warm up: the projection exists and has applied something.
        for i in range(20):
            await stub.RecordTouchpoint(
                pb.RecordTouchpointRequest(anonymous_id=f"warm-{i}", source="google")
            )
        for _ in range(300):
            if await asyncio.to_thread(position) > 0:
                break
            await asyncio.sleep(0.1)
        deadline_after_stop = float("inf")
        watcher = asyncio.create_task(watch())
        total = int(rate * seconds)
        interval = 1.0 / rate
        started = time.monotonic()
        in_flight: set[asyncio.Task[None]] = set()

        async def send(i: int) -> None:
            reply = await stub.RecordTouchpoint(
                pb.RecordTouchpointRequest(
                    anonymous_id=f"e2e-{i % 400}",
                    source="google",
                    medium="cpc",
                    idempotency_key=f"e2e-{i}",
                ),
                timeout=10,
            )
            acked[reply.touchpoint_id] = time.monotonic()

        for i in range(total):
            due = started + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(i))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
        sent_seconds = time.monotonic() - started
        deadline_after_stop = time.monotonic() + 30
        stop.set()
        await watcher
        await sub.unsubscribe()
        await channel.close()
        await nc.close()
        engine.dispose()
        latencies = [
            max(0.0, (visible[t] - acked[t]) * 1000) for t in acked if t in visible
        ]
        stats = machine.latency_stats(latencies)
        p99 = stats.get("p99_ms", float("nan"))
        return {
            "rows": [
                {
                    "benchmark": "end to end",
                    "case": (
                        f"command ack to {PROJECTION} read model at {rate} commands/s"
                    ),
                    "result": (
                        f"p50 {machine.ms(stats.get('p50_ms', float('nan')))}, "
                        f"p99 {machine.ms(p99)}, over {len(latencies)} of {total} "
                        f"commands; achieved {machine.rate(total / sent_seconds)}"
                    ),
                    "baseline": "-",
                    "target": f"p99 < {TARGET_P99_MS:.0f} ms",
                    "met": bool(p99 < TARGET_P99_MS) and len(latencies) == total,
                }
            ],
            "latency_ms": stats,
            "commands": total,
            "seen": len(latencies),
        }
    finally:
        if projector is not None:
            projector.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                projector.wait(15)
            if projector.poll() is None:
                projector.kill()
        await lead.stop()
        server.stop()


def main(
    rate: int = 500, seconds: float = 8.0, relay_outbox: str = "process"
) -> dict[str, Any]:
    return asyncio.run(run(rate, seconds, relay_outbox))


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8.0)
    machine.add_relay_outbox_option(parser)
    args = parser.parse_args()
    report = main(args.rate, args.seconds, args.relay_outbox)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    _cli()
