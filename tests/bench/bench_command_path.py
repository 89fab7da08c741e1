"""Command path: RecordTouchpoint over gRPC, next to its two raw baselines.

For each store (SQLite file, PostgreSQL database) the lead service runs as a real
process (`python -m services.lead`, with its relay and its own nats-server)
and is driven with 1 and 64 concurrent clients from separate client processes. Each
client call stream records touchpoints for its own anonymous visitors, with an
idempotency key per call. The same client, in the same processes, measures:

- the echo baseline: a grpc.aio server with nothing but the standard health service,
  in its own process, answering `grpc.health.v1.Health/Check`;
- the append baseline: one loop saving one small new aggregate per transaction
  through the eventsourcing library's own sqlite / postgres module, on the same kind
  of store, no gRPC.

Every measurement is taken `--trials` times (3), baselines and service in turn, and
the median of each is reported: a shared machine's slow spells fall on all of them.

Target: at least half the throughput of the slower of the two baselines.

    python tests/bench/bench_command_path.py [--window 5] [--stores sqlite,postgres]
        [--trials 3]

`--without-relay` points the service at a NATS address where nothing listens, so its
relay never runs: the difference is what the relay costs the command path.
`--relay-outbox thread` has the relay map events in the service's own process
instead of its outbox worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import machine  # noqa: E402

CLIENTS = (1, 64)
STORES = ("sqlite", "postgres")
TARGET_FRACTION = 0.5
#: A NATS address where nothing listens (port 1 is never served on loopback).
NOWHERE = "nats://127.0.0.1:1"
PY_SPY = os.environ.get("PY_SPY", "/tmp/tools/bin/py-spy")  # noqa: S108


class Ping(Aggregate):
    """The smallest aggregate worth saving: one event with one field."""

    @event("Pinged")
    def __init__(self, n: int) -> None:
        self.n = n


class AppendLoop(Application[uuid.UUID]):
    name = "BenchAppend"


def append_loop(store_url: str, *, warmup: float, window: float) -> dict[str, Any]:
    """One new small aggregate per transaction, as fast as one loop can save."""
    from closedloop.eventstore.store import StoreLocation  # noqa: PLC0415

    env = {
        k: v
        for k, v in StoreLocation.parse(store_url).eventsourcing_env().items()
        if not k.startswith("SUBJECT_KEYS")
    }
    app = AppendLoop(env=env)
    try:
        n = 0
        latencies: list[float] = []
        start = time.monotonic()
        measure_from = start + warmup
        measure_to = measure_from + window
        while True:
            began = time.monotonic()
            if began >= measure_to:
                break
            app.save(Ping(n))
            n += 1
            if began >= measure_from:
                latencies.append((time.monotonic() - began) * 1000)
    finally:
        app.close()
    return {
        "window_s": window,
        "warmup_s": warmup,
        "saves": len(latencies),
        "per_second": round(len(latencies) / window, 1),
        **machine.latency_stats(latencies),
    }


@contextlib.contextmanager
def py_spy(pid: int, out: Path, seconds: float) -> Any:
    """Samples the service while the load runs (raw folded stacks), if asked to."""
    process = subprocess.Popen(
        [
            PY_SPY,
            "record",
            "-p",
            str(pid),
            "-f",
            "raw",
            "-o",
            str(out),
            "-d",
            str(int(seconds) + 60),
            "--threads",
            "--nonblocking",
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def measure_service(
    kind: str,
    store_url: str,
    *,
    clients: tuple[int, ...],
    processes: int,
    warmup: float,
    window: float,
    profile_dir: Path | None,
    without_relay: bool = False,
    relay_outbox: str = "process",
) -> dict[str, Any]:
    """Starts nats-server and the lead service on `store_url`, drives the load."""
    from closedloop.natsserver import NatsServer  # noqa: PLC0415
    from closedloop.testing.processes import ServiceProcess  # noqa: PLC0415

    scratch = machine.work_dir(f"cmd-{kind}")
    nats = NatsServer(store_dir=scratch / "nats").start()
    service = ServiceProcess(
        "lead",
        scratch / "data",
        NOWHERE if without_relay else nats.url,
        extra_env={
            "CLOSEDLOOP_LEAD_STORE_URL": store_url,
            "CLOSEDLOOP_SECRET_KEY": "bench-secret-key-not-for-production",
            "CLOSEDLOOP_RELAY_OUTBOX": relay_outbox,
        },
    )
    results: dict[str, Any] = {}
    try:
        await service.start(timeout=60)
        assert service.process is not None
        assert nats.process is not None
        watch = {"service": [service.process.pid], "nats": [nats.process.pid]}
        for n in clients:
            machine.say(f"command path: {kind}, {n} client(s)")
            spec = machine.LoadSpec(
                address=service.address,
                target="lead",
                clients=n,
                processes=processes if n > 1 else 1,
                warmup=warmup,
                window=window,
                run_id=f"{kind}{n}-{uuid.uuid4().hex[:8]}",
            )
            profiling: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                profiling = py_spy(
                    service.process.pid,
                    profile_dir / f"service-{kind}-{n}.txt",
                    warmup + window,
                )
            with profiling:
                results[str(n)] = await machine.drive_load(spec, watch)
            machine.say(f"  {_line(results[str(n)])}")
    finally:
        code = await service.stop()
        nats.stop()
        results["service_exit_code"] = code
        if code != 0:
            results["service_log_tail"] = service.log_text()[-2000:]
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _line(result: dict[str, Any]) -> str:
    text = (
        f"{machine.rate(result['per_second'])}, p50 {machine.ms(result['p50_ms'])}, "
        f"p99 {machine.ms(result['p99_ms'])}"
    )
    if result.get("errors"):
        text += f", errors {result['errors']}"
    return text


async def run(
    *, trials: int = 1, profile_dir: Path | None = None, **options: Any
) -> dict[str, Any]:
    """Every measurement `trials` times, baselines and service in turn; medians.

    A shared machine has slow spells; taking turns spreads them over baselines and
    service alike, and the median trial of each figure is the one reported. The
    options are run_once's; the service is profiled in the first round only.
    """
    reports = []
    for trial in range(1, trials + 1):
        if trials > 1:
            machine.say(f"command path: trial {trial} of {trials}")
        reports.append(
            await run_once(profile_dir=profile_dir if trial == 1 else None, **options)
        )
    report = reports[0]
    report["settings"]["trials"] = trials
    for group in ("echo", "append_loop"):
        for key in report[group]:
            report[group][key] = machine.median_result([r[group][key] for r in reports])
    for kind, by_clients in report["service"].items():
        for key, value in by_clients.items():
            if isinstance(value, dict) and "per_second" in value:
                by_clients[key] = machine.median_result(
                    [r["service"][kind][key] for r in reports]
                )
    report["rows"] = rows(report)
    return report


async def run_once(
    *,
    stores: tuple[str, ...],
    clients: tuple[int, ...],
    processes: int,
    warmup: float,
    window: float,
    profile_dir: Path | None,
    without_relay: bool = False,
    relay_outbox: str = "process",
) -> dict[str, Any]:
    from closedloop.testing.postgres import (  # noqa: PLC0415
        postgres_available,
        temporary_database,
    )

    report: dict[str, Any] = {
        "settings": {
            "clients": list(clients),
            "client_processes": processes,
            "warmup_s": warmup,
            "window_s": window,
            "touchpoints_per_visitor": machine.TOUCHPOINTS_PER_VISITOR,
            "target": "at least half the throughput of the slower baseline",
            "relay": "not running (--without-relay)"
            if without_relay
            else f"running, outbox: {relay_outbox}",
        },
        "echo": {},
        "append_loop": {},
        "service": {},
        "unavailable": {},
    }
    echo = await machine.EchoServer().start()
    try:
        assert echo.process is not None
        for n in clients:
            machine.say(f"echo baseline: {n} client(s)")
            report["echo"][str(n)] = await machine.drive_load(
                machine.LoadSpec(
                    address=echo.address,
                    target="health",
                    clients=n,
                    processes=processes if n > 1 else 1,
                    warmup=warmup,
                    window=window,
                    run_id=f"echo{n}",
                ),
                {"service": [echo.process.pid]},
            )
            machine.say(f"  {_line(report['echo'][str(n)])}")
    finally:
        echo.stop()

    for kind in stores:
        if kind == "sqlite":
            scratch = machine.work_dir("append-sqlite")
            try:
                machine.say("append baseline: sqlite")
                report["append_loop"][kind] = await asyncio.to_thread(
                    append_loop,
                    f"sqlite:///{scratch / 'append.db'}",
                    warmup=warmup,
                    window=window,
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            machine.say(f"  {_line(report['append_loop'][kind])}")
            service_scratch = machine.work_dir("sqlite-store")
            try:
                report["service"][kind] = await measure_service(
                    kind,
                    f"sqlite:///{service_scratch / 'lead' / 'events.db'}",
                    clients=clients,
                    processes=processes,
                    warmup=warmup,
                    window=window,
                    profile_dir=profile_dir,
                    without_relay=without_relay,
                    relay_outbox=relay_outbox,
                )
            finally:
                shutil.rmtree(service_scratch, ignore_errors=True)
            continue
        if os.environ.get("CLOSEDLOOP_SKIP_POSTGRES") == "1":
            report["unavailable"][kind] = "CLOSEDLOOP_SKIP_POSTGRES=1"
            continue
        if not postgres_available():
            report["unavailable"][kind] = "PostgreSQL not reachable on 127.0.0.1:5432"
            continue
        with temporary_database("closedloop_bench") as url:
            machine.say("append baseline: postgres")
            report["append_loop"][kind] = await asyncio.to_thread(
                append_loop, url, warmup=warmup, window=window
            )
            machine.say(f"  {_line(report['append_loop'][kind])}")
        with temporary_database("closedloop_bench") as url:
            report["service"][kind] = await measure_service(
                kind,
                url,
                clients=clients,
                processes=processes,
                warmup=warmup,
                window=window,
                profile_dir=profile_dir,
                without_relay=without_relay,
                relay_outbox=relay_outbox,
            )
    return report


STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows: each figure next to its baselines from the same run."""
    out: list[dict[str, Any]] = []
    for kind, reason in report["unavailable"].items():
        out.append(
            {
                "benchmark": "command path",
                "case": f"{STORE_NAMES[kind]}: RecordTouchpoint",
                "result": f"not measured: {reason}",
                "baseline": "",
                "target": "",
                "met": None,
            }
        )
    for kind, by_clients in report["service"].items():
        loop = report["append_loop"].get(kind)
        for n in report["settings"]["clients"]:
            measured = by_clients.get(str(n))
            echo = report["echo"].get(str(n))
            if measured is None or echo is None or loop is None:
                continue
            slower_name, slower = min(
                (("echo", echo["per_second"]), ("append loop", loop["per_second"])),
                key=lambda item: item[1],
            )
            needed = TARGET_FRACTION * slower
            ratio = measured["per_second"] / slower if slower else 0.0
            result = _line(measured)
            result += (
                f" (CPU: service {measured.get('service_cpu_pct', 0):.0f}%, "
                f"clients {measured.get('client_cpu_pct', 0):.0f}%, "
                f"machine {measured.get('machine_busy_pct', 0):.0f}% busy)"
            )
            out.append(
                {
                    "benchmark": "command path",
                    "case": (
                        f"{STORE_NAMES[kind]}, {n} client{'s' if n > 1 else ''}: "
                        "RecordTouchpoint commands/s, latency"
                    ),
                    "result": result,
                    "baseline": (f"echo {_line(echo)}; append loop {_line(loop)}"),
                    "target": (
                        f">= {machine.rate(needed)} (half of {slower_name}); "
                        f"got {ratio:.2f}x {slower_name}"
                    ),
                    "met": measured["per_second"] >= needed
                    and not measured.get("errors"),
                }
            )
    return out


def main(
    window: float = 5.0,
    warmup: float = 1.0,
    stores: tuple[str, ...] = STORES,
    clients: tuple[int, ...] = CLIENTS,
    processes: int = 0,
    profile_dir: str = "",
    without_relay: bool = False,
    trials: int = 3,
    relay_outbox: str = "process",
) -> dict[str, Any]:
    processes = processes or max(2, min(4, os.cpu_count() or 2))
    started = time.monotonic()
    report = asyncio.run(
        run(
            stores=tuple(stores),
            clients=tuple(clients),
            processes=processes,
            warmup=warmup,
            window=window,
            profile_dir=Path(profile_dir) if profile_dir else None,
            without_relay=without_relay,
            trials=trials,
            relay_outbox=relay_outbox,
        )
    )
    report["runtime_s"] = round(time.monotonic() - started, 1)
    return report


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--processes", type=int, default=0, help="client processes")
    parser.add_argument(
        "--profile-dir", default="", help="py-spy raw profiles of the service here"
    )
    parser.add_argument(
        "--without-relay",
        action="store_true",
        help="the service cannot reach NATS, so its relay never runs",
    )
    parser.add_argument(
        "--trials", type=int, default=3, help="rounds of every measurement; medians"
    )
    machine.add_relay_outbox_option(parser)
    args = parser.parse_args()
    report = main(
        window=args.window,
        warmup=args.warmup,
        stores=tuple(s for s in args.stores.split(",") if s),
        clients=tuple(int(c) for c in args.clients.split(",") if c),
        processes=args.processes,
        profile_dir=args.profile_dir,
        without_relay=args.without_relay,
        trials=args.trials,
        relay_outbox=args.relay_outbox,
    )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    _cli()
