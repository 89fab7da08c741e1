"""A service that cannot reach NATS logs its attempts without the URL's credentials."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from closedloop.config import ServiceConfig
from closedloop.testing.streams import eventually
from services.lead.__main__ import bootstrap

if TYPE_CHECKING:
    from pathlib import Path

#: A password planted in the NATS URL; it must show in no log line.
PLANTED = "s3cret-pw"


async def test_attempts_to_reach_nats_are_logged_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServiceConfig.from_env(
        "lead",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": f"nats://lead:{PLANTED}@127.0.0.1:1",
            "CLOSEDLOOP_LEAD_GRPC_PORT": "0",
        },
    )
    caplog.set_level(logging.DEBUG)
    service = await bootstrap(config)
    try:

        async def refused_twice() -> bool:
            return caplog.text.count("NATS error") >= 2

        await eventually(refused_twice)
    finally:
        await service.stop()
    assert PLANTED not in caplog.text
