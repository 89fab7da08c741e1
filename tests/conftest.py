"""Session fixtures: a real nats-server, throwaway SQLite and PostgreSQL stores."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from closedloop.natsserver import NatsServer
from closedloop.testing.postgres import postgres_available, temporary_database

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the session; tests use their own streams' subjects."""
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server this test may stop and restart."""
    server = NatsServer(store_dir=tmp_path / "nats").start()
    yield server
    server.stop()


def _require_postgres() -> None:
    if os.environ.get("CLOSEDLOOP_SKIP_POSTGRES") == "1":
        pytest.skip("CLOSEDLOOP_SKIP_POSTGRES=1")
    if not postgres_available():
        pytest.fail(
            "PostgreSQL is not reachable on 127.0.0.1:5432; start it (see .ci/run) "
            "or set CLOSEDLOOP_SKIP_POSTGRES=1"
        )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    _require_postgres()
    with temporary_database() as url:
        yield url


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def module_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like `store_url`, but once per module: a service started once serves a table."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'events.db'}"
        return
    _require_postgres()
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on both event stores."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    _require_postgres()
    with temporary_database() as url:
        yield url
