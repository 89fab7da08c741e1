"""Where the commands find the read store, the log and the insights service."""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.config import DEFAULT_GRPC_PORTS, EndpointEnv, PeersEnv, ProcessEnv
from closedloop.readmodels.common import ReadStoreEnv


@dataclass
class Settings:
    store_url: str
    nats_url: str
    address: str


def _insights_address() -> str:
    host = ProcessEnv.from_env().grpc_host
    port = EndpointEnv.of("insights").grpc_port
    return f"{host}:{DEFAULT_GRPC_PORTS['insights'] if port is None else port}"


def _settings() -> Settings:
    env = ReadStoreEnv.from_env()
    return Settings(
        store_url=env.read_store_url(),
        nats_url=env.nats_url,
        address=PeersEnv.from_env().insights_address or _insights_address(),
    )
