"""`make demo`: start closedloop if needed, simulate a quarter, print the report.

python -m apps.demo [--seed 7] [--visitors 5000] [--charts var/demo-report]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from apps.demo.driver import Addresses, QuarterDriver
from apps.demo.report import (
    draw_charts,
    gather_report,
    print_report,
    train_channel_models,
    wait_for_read_side,
)
from apps.demo.scenario import plan_quarter
from apps.devrun import GRPC_SERVICES, SERVICES
from closedloop.config import ProcessEnv, ServiceConfig
from closedloop.grpckit.health import wait_healthy
from services.insights.web import dashboard_url

# Wide enough for the report's tables when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 150)


def _address(service: str) -> str:
    return ServiceConfig.from_env(service).grpc_address


async def _healthy(services: list[str], timeout: float) -> bool:
    try:
        await asyncio.gather(*(wait_healthy(_address(s), timeout) for s in services))
    except TimeoutError:
        return False
    return True


async def ensure_running() -> None:
    """Uses the running system, or starts `make run`'s launcher in the background."""
    names = [name for name, _ in SERVICES if name in GRPC_SERVICES]
    if await _healthy(names, 1.0):
        console.print("closedloop is running; using it.")
        return
    data_dir = ProcessEnv.from_env().data_dir
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = (data_dir / "logs" / "devrun.log").open("ab")
    process = subprocess.Popen(  # noqa: ASYNC220 - our own launcher, started once
        [sys.executable, "-m", "apps.devrun"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    (data_dir / "devrun.pid").write_text(str(process.pid))
    console.print(f"started closedloop in the background (pid {process.pid})")
    if not await _healthy(names, 120.0):
        msg = f"closedloop did not start; see {data_dir / 'logs'}"
        raise SystemExit(msg)


async def main(seed: int, visitors: int, charts: Path) -> None:
    await ensure_running()
    plan = plan_quarter(seed, visitors)
    console.print(
        f"simulating Q3 2026: {visitors} visitors, {plan.steps} calls (seed {seed})"
    )
    driver = QuarterDriver(
        Addresses(
            lead=_address("lead"),
            deal=_address("deal"),
            consent=_address("consent"),
            attribution=_address("attribution"),
        )
    )
    started = time.monotonic()
    try:
        result = await driver.run(plan)
    finally:
        await driver.close()
    console.print(
        f"{sum(result.calls.values())} calls in {time.monotonic() - started:.0f} s"
        + (f"; {sum(result.skipped.values())} already done" if result.skipped else "")
    )
    console.print("waiting for attribution and the read models to catch up...")
    await wait_for_read_side(_address("insights"))
    report = await gather_report(_address("insights"))
    await train_channel_models(_address("attribution"), report)
    print_report(report, console)
    written = draw_charts(report, charts)
    console.print(f"charts written to {charts}: " + ", ".join(p.name for p in written))
    console.print(
        f"dashboard: {dashboard_url(dict(os.environ))} "
        "(closedloop keeps running; stop it with `make stop`)"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--charts", type=Path, default=Path("var/demo-report"))
    args = parser.parse_args()
    if args.visitors < 1:
        parser.error("--visitors must be at least 1")
    asyncio.run(main(args.seed, args.visitors, args.charts.resolve()))


if __name__ == "__main__":
    cli()
