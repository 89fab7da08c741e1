"""Service settings from the environment: defaults, errors naming the variable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from closedloop.config import ConfigError, ServiceConfig
from services.projector.config import ProjectorConfig

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


def test_defaults_and_peers(tmp_path: Path) -> None:
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path), "CLOSEDLOOP_LEAD_ADDRESS": "lead:7"}
    config = ServiceConfig.from_env("deal", env)
    assert config.data_dir == tmp_path.resolve()
    assert config.nats_url == "nats://127.0.0.1:14222"
    assert config.store_url == f"sqlite:///{tmp_path / 'deal' / 'events.db'}"
    assert config.grpc_address == "127.0.0.1:50052"
    assert config.stream_replicas == 1
    assert config.duplicate_window_seconds == 600.0
    assert config.secret_key == (tmp_path / "secret.key").read_text().encode()
    assert config.peer_address("lead") == "lead:7"
    assert config.peer_address("consent") == "127.0.0.1:50053"


def test_a_given_mapping_is_read_instead_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSEDLOOP_NATS_URL", "nats://from-the-environment:4222")
    base = {"CLOSEDLOOP_DATA_DIR": str(tmp_path)}
    assert ServiceConfig.from_env("lead", base).nats_url == "nats://127.0.0.1:14222"
    monkeypatch.setenv("CLOSEDLOOP_DATA_DIR", str(tmp_path))
    assert ServiceConfig.from_env("lead").nats_url == "nats://from-the-environment:4222"


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path), "CLOSEDLOOP_LEAD_GRPC_PORT": ""}
    assert ServiceConfig.from_env("lead", env).grpc_port == 50051


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOSEDLOOP_LEAD_GRPC_PORT", "fifty"),
        ("CLOSEDLOOP_STREAM_REPLICAS", "1.5"),
        ("CLOSEDLOOP_DUPLICATE_WINDOW_SECONDS", "long"),
    ],
)
def test_a_malformed_number_is_refused_by_name(
    tmp_path: Path, name: str, value: str
) -> None:
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=name):
        ServiceConfig.from_env("lead", env)


def test_projector_settings(tmp_path: Path) -> None:
    base = {"CLOSEDLOOP_DATA_DIR": str(tmp_path)}
    config = ProjectorConfig.from_env(base)
    assert config.store_url == f"sqlite:///{tmp_path / 'projector' / 'read.db'}"
    assert (config.batch_size, config.max_attempts, config.auto_build) == (500, 3, True)
    assert config.only == ()
    config = ProjectorConfig.from_env(
        {
            **base,
            "CLOSEDLOOP_PROJECTOR_ONLY": " customer_value, ,funnel_by_channel ",
            "CLOSEDLOOP_PROJECTOR_AUTO_BUILD": "0",
            "CLOSEDLOOP_PROJECTOR_STORE_URL": "sqlite://",
        }
    )
    assert config.only == ("customer_value", "funnel_by_channel")
    assert not config.auto_build
    assert config.store_url == "sqlite://"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOSEDLOOP_PROJECTOR_BATCH_SIZE", "0"),
        ("CLOSEDLOOP_PROJECTOR_MAX_ATTEMPTS", "three"),
        ("CLOSEDLOOP_PROJECTOR_AUTO_BUILD", "maybe"),
    ],
)
def test_a_bad_projector_setting_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ProjectorConfig.from_env({name: value})
