"""Shared benchmark helpers: the machine, the load client, the echo server, tables.

Run as a script it is one of the helper processes the benchmarks start:

    python tests/bench/machine.py load-worker '<json spec>'   # one client process
    python tests/bench/machine.py echo-server <port>          # the bare gRPC baseline

The load client runs in separate processes so that it is not the bottleneck of the
process it measures. Each worker opens its own grpc.aio channel and runs a number of
closed-loop call streams (each awaits its reply, then sends the next). All workers
start at the same instant, call for a warm-up period that is not counted, then for a
measurement window; a call counts if it started inside the window, and the latency
of every counted call is reported (wall time from send to reply).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = REPO / "bench-results"
THIS_FILE = Path(__file__).resolve()

#: Touchpoints recorded for one anonymous visitor before a stream moves to a new one
#: (a realistic journey is short; a visitor with thousands of touchpoints is not).
TOUCHPOINTS_PER_VISITOR = 20


# -- the machine -----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory and Python: what a figure must be read against."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def filesystem_of(path: Path) -> str:
    """The file system type and device holding `path` (fsync cost depends on it)."""
    best = ("", "unknown", "")
    with contextlib.suppress(OSError):
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount_point, kind = line.split()[:3]
            inside = target == mount_point or target.startswith(
                mount_point.rstrip("/") + "/"
            )
            if inside and len(mount_point) >= len(best[0]):
                best = (mount_point, kind, device)
    return f"{best[1]} ({best[2]})" if best[2] else best[1]


def work_dir(prefix: str) -> Path:
    """A scratch folder beside the results (gitignored), on the repository's disk.

    Not /tmp: that is often a tmpfs, where SQLite's fsync costs nothing.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"work-{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    path.mkdir(parents=True)
    return path


def git_commit() -> dict[str, Any]:
    """HEAD and whether the work tree differs from it (read-only git commands)."""
    info: dict[str, Any] = {"commit": "unknown", "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        # --no-optional-locks: status must not even refresh the index file.
        status = subprocess.run(
            [
                "git",
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        info["dirty"] = bool(status.strip())
    return info


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def add_relay_outbox_option(parser: argparse.ArgumentParser) -> None:
    """`--relay-outbox process|thread`: where the relay maps events."""
    parser.add_argument(
        "--relay-outbox",
        choices=("process", "thread"),
        default="process",
        help="where the relay maps stored events (CLOSEDLOOP_RELAY_OUTBOX)",
    )


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The result with the median rate (the lower middle one of an even count), and
    every round's rate beside it."""
    ranked = sorted(results, key=lambda r: r["per_second"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["all_per_second"] = [r["per_second"] for r in results]
    return chosen


def say(message: str) -> None:
    """Progress goes to stderr; stdout is kept for the results table."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- statistics and formatting ---------------------------------------------------------


def latency_stats(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p99, mean and max in milliseconds (nearest rank)."""
    if not latencies_ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(latencies_ms)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
        return ordered[index]

    return {
        "p50_ms": round(rank(0.50), 3),
        "p99_ms": round(rank(0.99), 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
        "max_ms": round(ordered[-1], 3),
    }


def rate(value: float) -> str:
    """A throughput, with thousands separated: 12,345/s."""
    return f"{value:,.0f}/s"


def ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


# -- CPU accounting --------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process so far (Linux /proc); 0 if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return 0.0, 0.0
    values = [float(v) for v in line.split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuWatch:
    """CPU used by named groups of processes over a window, as a % of one core."""

    groups: dict[str, list[int]]
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _t: float = 0.0

    def start(self) -> None:
        self._start = {
            name: sum(cpu_seconds(p) for p in pids)
            for name, pids in self.groups.items()
        }
        self._machine = machine_busy()
        self._t = time.monotonic()

    def stop(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._t, 1e-9)
        used = {
            f"{name}_cpu_pct": round(
                100 * (sum(cpu_seconds(p) for p in pids) - self._start[name]) / elapsed,
                1,
            )
            for name, pids in self.groups.items()
        }
        busy, total = machine_busy()
        if total > self._machine[1]:
            used["machine_busy_pct"] = round(
                100 * (busy - self._machine[0]) / (total - self._machine[1]), 1
            )
        return used


# -- the load client -------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One load run: where, what, how many concurrent calls, for how long."""

    address: str
    target: str  # "lead" (RecordTouchpoint) or "health" (the echo baseline)
    clients: int
    processes: int
    warmup: float
    window: float
    run_id: str


async def drive_load(
    spec: LoadSpec, watch: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """Runs `spec.clients` call streams spread over `spec.processes` processes."""
    processes = max(1, min(spec.processes, spec.clients))
    shares = [
        spec.clients // processes + (1 if i < spec.clients % processes else 0)
        for i in range(processes)
    ]
    workers = []
    for index, streams in enumerate(shares):
        worker_spec = {
            "address": spec.address,
            "target": spec.target,
            "streams": streams,
            "worker": index,
            "run_id": spec.run_id,
            "warmup": spec.warmup,
            "window": spec.window,
        }
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(THIS_FILE),
                "load-worker",
                json.dumps(worker_spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=REPO,
            )
        )
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 60)
            if line.strip() != b"ready":
                msg = f"load worker did not start: {line!r}"
                raise RuntimeError(msg)
        start_at = time.monotonic() + 0.3
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{start_at}\n".encode())
            await worker.stdin.drain()
        groups = dict(watch or {})
        groups["client"] = [w.pid for w in workers]
        cpu = CpuWatch(groups)
        await asyncio.sleep(max(0.0, start_at + spec.warmup - time.monotonic()))
        cpu.start()
        await asyncio.sleep(
            max(0.0, start_at + spec.warmup + spec.window - time.monotonic())
        )
        usage = cpu.stop()
        outputs = [
            await asyncio.wait_for(w.communicate(), spec.window + 60) for w in workers
        ]
    finally:
        for worker in workers:
            if worker.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.kill()
                await worker.wait()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    for stdout, _ in outputs:
        report = json.loads(stdout.decode().strip().splitlines()[-1])
        latencies.extend(report["latencies_ms"])
        for code, count in report["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {
        "target": spec.target,
        "clients": spec.clients,
        "client_processes": processes,
        "window_s": spec.window,
        "warmup_s": spec.warmup,
        "calls": len(latencies),
        "per_second": round(len(latencies) / spec.window, 1),
        **latency_stats(latencies),
        "errors": errors,
        **usage,
    }


async def _load_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import grpc  # noqa: PLC0415 - only the worker processes need gRPC
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    from closedloop.lead.v1 import (  # noqa: PLC0415
        lead_service_pb2,
        lead_service_pb2_grpc,
        types_pb2,
    )

    channel = grpc.aio.insecure_channel(spec["address"])
    await asyncio.wait_for(channel.channel_ready(), 30)
    health = health_pb2_grpc.HealthStub(channel)
    leads = lead_service_pb2_grpc.LeadServiceStub(channel)
    check = health_pb2.HealthCheckRequest()
    sources = [("google", "cpc"), ("linkedin", "paid_social"), ("newsletter", "email")]

    def caller(stream: int) -> Any:
        prefix = f"{spec['run_id']}-w{spec['worker']}-s{stream}"
        if spec["target"] == "health":

            async def call_health(_: int) -> None:
                await health.Check(check, timeout=10)

            return call_health

        async def call_lead(i: int) -> None:
            source, medium = sources[i % len(sources)]
            await leads.RecordTouchpoint(
                lead_service_pb2.RecordTouchpointRequest(
                    anonymous_id=f"bench-{prefix}-v{i // TOUCHPOINTS_PER_VISITOR}",
                    source=source,
                    medium=medium,
                    campaign=f"campaign-{i % 7}",
                    interaction=types_pb2.INTERACTION_AD_CLICK,
                    idempotency_key=f"{prefix}-{i}",
                ),
                timeout=10,
            )

        return call_lead

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    start_at = float(await loop.run_in_executor(None, sys.stdin.readline))
    measure_from = start_at + float(spec["warmup"])
    measure_to = measure_from + float(spec["window"])
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def stream(number: int) -> None:
        call = caller(number)
        i = 0
        while True:
            sent = time.monotonic()
            if sent >= measure_to:
                return
            try:
                await call(i)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
                await asyncio.sleep(0.01)
            else:
                if sent >= measure_from:
                    latencies.append((time.monotonic() - sent) * 1000)
            i += 1

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    await asyncio.gather(*(stream(n) for n in range(int(spec["streams"]))))
    await channel.close()
    return {"latencies_ms": [round(x, 4) for x in latencies], "errors": errors}


# -- the echo baseline: a gRPC server with nothing else --------------------------------


async def _echo_server(port: int) -> None:
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415
    from grpc_health.v1._async import HealthServicer  # noqa: PLC0415

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(1)


@dataclass
class EchoServer:
    """The bare grpc.aio baseline as a separate process."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> EchoServer:
        from closedloop.grpckit.health import wait_healthy  # noqa: PLC0415
        from closedloop.natsserver import free_port  # noqa: PLC0415

        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(THIS_FILE), "echo-server", str(self.port)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        await wait_healthy(self.address, 30)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "load-worker":
        report = asyncio.run(_load_worker(json.loads(argv[1])))
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    if len(argv) == 2 and argv[0] == "echo-server":
        asyncio.run(_echo_server(int(argv[1])))
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
