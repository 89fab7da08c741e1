"""Service settings from the environment: defaults, errors naming the variable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from closedloop.config import ConfigError, ServiceConfig

if TYPE_CHECKING:
    from pathlib import Path


def test_the_relay_maps_in_a_worker_process_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    base = {"CLOSEDLOOP_DATA_DIR": str(tmp_path)}
    assert ServiceConfig.from_env("lead", base).relay_outbox == "process"
    threaded = {**base, "CLOSEDLOOP_RELAY_OUTBOX": "thread"}
    assert ServiceConfig.from_env("lead", threaded).relay_outbox == "thread"


def test_an_unknown_relay_outbox_is_refused_by_name(tmp_path: Path) -> None:
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path), "CLOSEDLOOP_RELAY_OUTBOX": "fork"}
    with pytest.raises(ConfigError, match="CLOSEDLOOP_RELAY_OUTBOX"):
        ServiceConfig.from_env("lead", env)
