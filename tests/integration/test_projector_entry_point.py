"""A projection from another distribution is found by its entry point and backfilled
from the whole log by `closedloop projections add`.

The fixture package is really installed (with its entry point), into a folder of its
own that the CLI gets on PYTHONPATH, so the project's virtualenv stays as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.projections import ReadStore
from closedloop.testing.readside import (
    publish,
    scripted_quarter,
    wait_for_log,
)

if TYPE_CHECKING:
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.nats]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extra_projection"


def run(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_an_installed_projection_is_backfilled_by_add(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    installed = await asyncio.to_thread(
        run,
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "--target",
        str(site),
        str(source),
    )
    assert installed.returncode == 0, installed.stderr
    assert (site / "extra_projection" / "touch_count.py").exists()

    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    events = scripted_quarter().log.events
    await publish(nc, events)
    head = await wait_for_log(nc, len(events))
    await nc.close()

    store_url = f"sqlite:///{tmp_path / 'read.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")},
        "PYTHONPATH": str(site),
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        "CLOSEDLOOP_PROJECTOR_STORE_URL": store_url,
    }
    closedloop = [sys.executable, "-m", "apps.cli"]
    listed = await asyncio.to_thread(
        run, *closedloop, "projections", "list", "--json", env=env
    )
    assert listed.returncode == 0, listed.stderr
    by_name = {p["name"]: p for p in json.loads(listed.stdout)}
    assert by_name["touch_count"]["source"] == (
        "entry point touch_count = extra_projection.touch_count:TouchCount"
    )
    assert by_name["touch_count"]["handles"] == [
        "closedloop.lead.v1.TouchpointRecorded"
    ]

    added = await asyncio.to_thread(
        run,
        *closedloop,
        "projections",
        "add",
        "touch_count",
        "--batch-size",
        "16",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert (
        f"touch_count v1 g1 is active: {head} log messages, 10 events applied"
        in added.stdout
    )

    store = ReadStore(store_url)
    active = store.active("touch_count")
    assert active is not None
    assert active.position == head
    with store.read() as conn:
        counts = dict(
            conn.exec_driver_sql("SELECT channel, touches FROM touch_count_v1").all()
        )
    store.close()
    assert counts == {
        "paid_search": 3,
        "paid_social": 4,
        "direct": 1,
        "word_of_mouth": 2,
    }

    again = await asyncio.to_thread(
        run, *closedloop, "projections", "add", "touch_count", env=env
    )
    assert again.returncode == 1
    assert "added already" in again.stderr
    # Without the package on the path, the projection is simply not installed.
    env.pop("PYTHONPATH")
    missing = await asyncio.to_thread(
        run, *closedloop, "projections", "add", "touch_count", env=env
    )
    assert missing.returncode == 1
    assert "no projection named 'touch_count'" in missing.stderr
