"""Settings from environment variables with documented defaults, read at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Default gRPC ports, one per service, on 127.0.0.1.
DEFAULT_GRPC_PORTS = {
    "lead": 50051,
    "deal": 50052,
    "consent": 50053,
    "attribution": 50054,
    "insights": 50055,
}

#: `make run` starts its own nats-server here unless CLOSEDLOOP_NATS_URL is set.
DEFAULT_NATS_URL = "nats://127.0.0.1:14222"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class ServiceConfig:
    """Everything one service process needs, from `CLOSEDLOOP_*` variables.

    | variable | default |
    |---|---|
    | CLOSEDLOOP_DATA_DIR | ./var |
    | CLOSEDLOOP_NATS_URL | nats://127.0.0.1:14222 |
    | CLOSEDLOOP_<SERVICE>_STORE_URL | sqlite:///<data dir>/<service>/events.db |
    | CLOSEDLOOP_GRPC_HOST | 127.0.0.1 |
    | CLOSEDLOOP_<SERVICE>_GRPC_PORT | 50051 lead, 50052 deal, 50053 consent, ... |
    | CLOSEDLOOP_STREAM_REPLICAS | 1 |
    | CLOSEDLOOP_DUPLICATE_WINDOW_SECONDS | 600 |
    | CLOSEDLOOP_SECRET_KEY | generated once into <data dir>/secret.key |
    | CLOSEDLOOP_<SERVICE>_ADDRESS | where a peer answers; default 127.0.0.1:port |
    | CLOSEDLOOP_RELAY_OUTBOX | process (events mapped in a worker process) or thread |
    """

    service: str
    data_dir: Path
    nats_url: str
    store_url: str
    grpc_host: str
    grpc_port: int
    stream_replicas: int
    duplicate_window_seconds: float
    secret_key: bytes
    peers: Mapping[str, str] = field(default_factory=dict)
    #: Where the relay decodes and maps stored events: "process" or "thread".
    relay_outbox: str = "process"

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"

    def peer_address(self, service: str) -> str:
        """Where a peer answers: CLOSEDLOOP_<SERVICE>_ADDRESS, else its default port."""
        return self.peers.get(service) or (
            f"{self.grpc_host}:{DEFAULT_GRPC_PORTS[service]}"
        )

    @classmethod
    def from_env(
        cls, service: str, environ: Mapping[str, str] | None = None
    ) -> ServiceConfig:
        env = os.environ if environ is None else environ
        prefix = f"CLOSEDLOOP_{service.upper()}_"
        data_dir = Path(env.get("CLOSEDLOOP_DATA_DIR", "var")).resolve()
        store_url = env.get(
            prefix + "STORE_URL", f"sqlite:///{data_dir / service / 'events.db'}"
        )
        return cls(
            service=service,
            data_dir=data_dir,
            nats_url=env.get("CLOSEDLOOP_NATS_URL", DEFAULT_NATS_URL),
            store_url=store_url,
            grpc_host=env.get("CLOSEDLOOP_GRPC_HOST", "127.0.0.1"),
            grpc_port=_int(
                env, prefix + "GRPC_PORT", DEFAULT_GRPC_PORTS.get(service, 0)
            ),
            stream_replicas=_int(env, "CLOSEDLOOP_STREAM_REPLICAS", 1),
            duplicate_window_seconds=float(
                _int(env, "CLOSEDLOOP_DUPLICATE_WINDOW_SECONDS", 600)
            ),
            secret_key=_secret_key(env, data_dir),
            peers={
                name: env[f"CLOSEDLOOP_{name.upper()}_ADDRESS"]
                for name in DEFAULT_GRPC_PORTS
                if env.get(f"CLOSEDLOOP_{name.upper()}_ADDRESS")
            },
            relay_outbox=_choice(
                env, "CLOSEDLOOP_RELAY_OUTBOX", RELAY_OUTBOXES, default="process"
            ),
        )


#: Where a relay may read and map its store's events (see closedloop.relay.outbox).
RELAY_OUTBOXES = ("process", "thread")


def _choice(
    env: Mapping[str, str], name: str, choices: tuple[str, ...], *, default: str
) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _secret_key(env: Mapping[str, str], data_dir: Path) -> bytes:
    """The server-held secret for keyed hashes; generated once for local runs."""
    raw = env.get("CLOSEDLOOP_SECRET_KEY")
    if raw:
        return raw.encode()
    path = data_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:
            pass  # another process wrote it first: read theirs
    return path.read_text().strip().encode()
