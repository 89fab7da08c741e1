"""Every process runs one loop: banner once started, a graceful stop on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

PROBE = """
import asyncio
from closedloop.process import Running, run_forever

async def start() -> Running:
    async def stop() -> None:
        await asyncio.sleep(0.05)
        print("stopped gracefully", flush=True)
    return Running(name="probe", banner="probe ready\\nsecond line", on_stop=stop)

run_forever(start, collect_less=False)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_process_gracefully(sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "probe ready\n"
        assert process.stdout.readline() == "second line\n"
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out == "stopped gracefully\n"
    assert "stopping probe" in err
