"""Settings from environment variables with documented defaults, read at start-up.

Every process reads its environment through pydantic-settings models derived from
`EnvSettings`: one way to name a variable, parse it, give its default, and fail at
start-up with a `ConfigError` naming the variable. A model's `from_env(environ)` reads
the given mapping instead of `os.environ` (tests, and processes that start others).
An empty variable counts as unset. The eventsourcing library's own keys
(PERSISTENCE_MODULE, SQLITE_DBNAME, POSTGRES_*...) stay the library's.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from closedloop.privatefiles import FILE_MODE, private_folder, read_or_create, tighten

if TYPE_CHECKING:
    from typing import Self

    from pydantic_core import ErrorDetails

log = logging.getLogger(__name__)

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

#: The shortest secret key accepted, in bytes: as long as the SHA-256 it keys.
MIN_SECRET_KEY_BYTES = 32

#: Where a relay may read and map its store's events (see closedloop.relay.outbox).
RELAY_OUTBOXES = ("process", "thread")
RelayOutbox = Literal["process", "thread"]


_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&][^=&#]*(?:password|token|secret)[^=&#]*=)[^&#]*", re.IGNORECASE
)


def redacted_url(url: str) -> str:
    """`url` fit for a banner, a log line or an error: credentials replaced by ***.

    `nats://lead:pw@host:4222` -> `nats://***@host:4222`; a token alone in the user
    part, and a `password=` (or token, secret) query parameter, go the same way. Each
    of several comma-separated servers is redacted.
    """
    return ",".join(
        _SECRET_PARAMETER.sub(r"\g<name>***", _CREDENTIALS.sub(r"\g<scheme>***@", part))
        for part in url.split(",")
    )


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: `a, b,c` -> ("a", "b", "c"): a list in one variable, blanks dropped.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]

#: The mapping `from_env` reads instead of os.environ, while it reads.
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("environ", default=None)


class EnvSettings(BaseSettings):
    """The base of every process's settings: `CLOSEDLOOP_<FIELD>` unless aliased."""

    model_config = SettingsConfigDict(
        env_prefix="CLOSEDLOOP_", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - not used
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords, then the environment (or the mapping `from_env` was given)."""
        environ = _environ.get()
        if environ is not None and isinstance(env_settings, EnvSettingsSource):
            env_settings.env_vars = parse_env_vars(
                environ,
                env_settings.case_sensitive or False,
                env_settings.env_ignore_empty,
                env_settings.env_parse_none_str,
            )
        return init_settings, env_settings

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str | None = None
    ) -> Self:
        """Reads `environ` (default os.environ); `prefix` replaces the model's own."""
        token = _environ.set(environ)
        try:
            # BaseSettings takes the prefix as a keyword its fields do not declare.
            options: dict[str, Any] = {"_env_prefix": prefix}
            return cls(**options)
        except ValidationError as error:
            reasons = "; ".join(
                cls._reason(detail, prefix) for detail in error.errors()
            )
            raise ConfigError(reasons) from None
        finally:
            _environ.reset(token)

    @classmethod
    def variable(cls, name: str, prefix: str | None = None) -> str:
        """The environment variable a field is read from."""
        info = cls.model_fields.get(name)
        if info is not None and isinstance(info.validation_alias, str):
            return info.validation_alias
        return (prefix or cls.model_config.get("env_prefix") or "") + name.upper()

    @classmethod
    def _reason(cls, detail: ErrorDetails, prefix: str | None) -> str:
        name = str(detail["loc"][0]) if detail["loc"] else ""
        variable = cls.variable(name, prefix) if name else ""
        if detail["type"] == "missing":
            return f"{variable} is not set"
        cause = detail.get("ctx", {}).get("error")
        reason = str(cause) if detail["type"] == "value_error" else detail["msg"]
        reason = f"{reason[:1].lower()}{reason[1:]}"
        if cls._is_secret(name):
            return f"{variable}: {reason}"  # never repeat a secret, even a bad one
        return f"{variable}={detail['input']!r}: {reason}"

    @classmethod
    def _is_secret(cls, name: str) -> bool:
        info = cls.model_fields.get(name)
        annotation = info.annotation if info is not None else None
        return annotation is SecretStr or SecretStr in get_args(annotation)


class ProcessEnv(EnvSettings):
    """What every closedloop process reads: its data folder, NATS, its host."""

    data_dir: Path = Field(
        default=Path("var"),
        validation_alias="CLOSEDLOOP_DATA_DIR",
        validate_default=True,
    )
    nats_url: str = Field(
        default=DEFAULT_NATS_URL, validation_alias="CLOSEDLOOP_NATS_URL"
    )
    grpc_host: str = Field(default="127.0.0.1", validation_alias="CLOSEDLOOP_GRPC_HOST")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, data_dir: Path) -> Path:
        return data_dir.resolve()


class EndpointEnv(EnvSettings):
    """One service's own variables, `CLOSEDLOOP_<SERVICE>_STORE_URL` and so on."""

    store_url: str | None = None
    grpc_port: int | None = None

    @classmethod
    def of(cls, service: str, environ: Mapping[str, str] | None = None) -> Self:
        return cls.from_env(environ, prefix=f"CLOSEDLOOP_{service.upper()}_")


class PeersEnv(EnvSettings):
    """Where each service answers its clients: CLOSEDLOOP_<SERVICE>_ADDRESS."""

    lead_address: str | None = None
    deal_address: str | None = None
    consent_address: str | None = None
    attribution_address: str | None = None
    insights_address: str | None = None

    def peers(self) -> dict[str, str]:
        return {
            name: address
            for name in DEFAULT_GRPC_PORTS
            if (address := getattr(self, f"{name}_address"))
        }


class ServiceEnv(ProcessEnv, PeersEnv):
    """What every write-side service (and insights) reads besides its endpoint."""

    stream_replicas: int = 1
    duplicate_window_seconds: int = 600
    secret_key: SecretStr | None = None
    relay_outbox: RelayOutbox = "process"

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, secret_key: SecretStr | None) -> SecretStr | None:
        if secret_key is not None:
            _check_key_length(secret_key.get_secret_value().encode())
        return secret_key


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
    | CLOSEDLOOP_SECRET_KEY | 32 bytes or more; else made once: <data dir>/secret.key |
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
        env = ServiceEnv.from_env(environ)
        own = EndpointEnv.of(service, environ)
        return cls(
            service=service,
            data_dir=env.data_dir,
            nats_url=env.nats_url,
            store_url=own.store_url
            or f"sqlite:///{env.data_dir / service / 'events.db'}",
            grpc_host=env.grpc_host,
            grpc_port=(
                DEFAULT_GRPC_PORTS.get(service, 0)
                if own.grpc_port is None
                else own.grpc_port
            ),
            stream_replicas=env.stream_replicas,
            duplicate_window_seconds=float(env.duplicate_window_seconds),
            secret_key=_secret_key(
                env.secret_key.get_secret_value() if env.secret_key else None,
                env.data_dir,
            ),
            peers=env.peers(),
            relay_outbox=env.relay_outbox,
        )


def _secret_key(configured: str | None, data_dir: Path) -> bytes:
    """The server-held secret for keyed hashes; generated once for local runs.

    The file is 0600 in a 0700 data folder from the start, and two processes starting
    at once read the same key. One readable by others (made before this rule) is
    tightened rather than refused: the key cannot change without re-keying every email
    digest, so chmod is all a refusal could ask for; the warning says it was exposed.
    """
    if configured:
        return configured.encode()
    path = private_folder(data_dir) / "secret.key"
    if path.exists() and tighten(path, FILE_MODE):
        log.warning("%s was readable by others; it is 0600 now", path)
    key = read_or_create(path, lambda: secrets.token_hex(32).encode()).strip()
    try:
        _check_key_length(key)
    except ValueError as error:
        message = f"{path}: {error}; replace it or set CLOSEDLOOP_SECRET_KEY"
        raise ConfigError(message) from None
    return key


def _check_key_length(key: bytes) -> None:
    if len(key) < MIN_SECRET_KEY_BYTES:
        message = (
            f"the secret key is {len(key)} bytes; it must be {MIN_SECRET_KEY_BYTES} "
            "or more (openssl rand -hex 32 makes one)"
        )
        raise ValueError(message)
