"""Service settings from the environment: defaults, errors naming the variable."""

from __future__ import annotations

import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_generated_secret_key_is_private_from_the_start(tmp_path: Path) -> None:
    data = tmp_path / "var"
    permissive = os.umask(0)  # what the process is given must not decide it
    try:
        config = ServiceConfig.from_env("lead", {"CLOSEDLOOP_DATA_DIR": str(data)})
    finally:
        os.umask(permissive)
    assert (_mode(data), _mode(data / "secret.key")) == (0o700, 0o600)
    assert len(config.secret_key) == 64
    assert [path.name for path in data.iterdir()] == ["secret.key"]  # no leftovers


def test_processes_starting_at_once_share_one_secret_key(tmp_path: Path) -> None:
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(
            pool.map(
                lambda _: ServiceConfig.from_env("lead", env).secret_key, range(32)
            )
        )
    assert keys == {(tmp_path / "secret.key").read_bytes()}


def test_a_secret_key_readable_by_others_is_kept_and_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "secret.key"
    key.write_text("an-older-run-wrote-this-key-readable-by-all\n")
    key.chmod(0o644)
    tmp_path.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="closedloop.config"):
        config = ServiceConfig.from_env("lead", {"CLOSEDLOOP_DATA_DIR": str(tmp_path)})
    assert config.secret_key == b"an-older-run-wrote-this-key-readable-by-all"
    assert (_mode(tmp_path), _mode(key)) == (0o700, 0o600)
    assert f"{key} was readable by others" in caplog.text


def test_a_secret_key_shorter_than_32_bytes_stops_the_process_by_name(
    tmp_path: Path,
) -> None:
    short = "only-31-bytes-long-secret-value"
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path), "CLOSEDLOOP_SECRET_KEY": short}
    with pytest.raises(
        ConfigError, match=r"^CLOSEDLOOP_SECRET_KEY: .* 31 bytes"
    ) as bad:
        ServiceConfig.from_env("lead", env)
    assert short not in str(bad.value)  # a secret is never repeated
    long_enough = {**env, "CLOSEDLOOP_SECRET_KEY": short + "!"}
    key = ServiceConfig.from_env("lead", long_enough).secret_key
    assert key == f"{short}!".encode()
    assert not (tmp_path / "secret.key").exists()


def test_a_secret_key_file_shorter_than_32_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("\n")  # what a crash mid-write once left
    env = {"CLOSEDLOOP_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"secret\.key: the secret key is 0 bytes"):
        ServiceConfig.from_env("lead", env)


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
