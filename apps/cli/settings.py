"""Where the commands find the read store, the log and the insights service."""

from __future__ import annotations

import os
from dataclasses import dataclass

from closedloop.config import DEFAULT_GRPC_PORTS, DEFAULT_NATS_URL


@dataclass
class Settings:
    store_url: str
    nats_url: str
    address: str


def _insights_address() -> str:
    host = os.environ.get("CLOSEDLOOP_GRPC_HOST", "127.0.0.1")
    port = os.environ.get(
        "CLOSEDLOOP_INSIGHTS_GRPC_PORT", str(DEFAULT_GRPC_PORTS["insights"])
    )
    return f"{host}:{port}"


def _settings() -> Settings:
    from closedloop.readmodels import store_url  # noqa: PLC0415

    return Settings(
        store_url=store_url(),
        nats_url=os.environ.get("CLOSEDLOOP_NATS_URL", DEFAULT_NATS_URL),
        address=os.environ.get("CLOSEDLOOP_INSIGHTS_ADDRESS") or _insights_address(),
    )
