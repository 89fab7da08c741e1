"""One store URL picks the event store: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL

from closedloop.config import ConfigError, redacted_url


@dataclass(frozen=True)
class StoreLocation:
    """Where a service's events live, readable by eventsourcing and SQLAlchemy alike.

    `sqlite:///path/events.db`, `postgresql://user:pw@host:5432/db?schema=lead` and,
    for unit tests, `memory://` (eventsourcing's in-process POPO store).
    """

    url: str
    kind: str
    sqlite_path: Path | None = None
    pg_host: str = ""
    pg_port: int = 5432
    pg_user: str = ""
    pg_password: str = ""
    pg_dbname: str = ""
    pg_schema: str = ""

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme == "memory":
            return cls(url=url, kind="memory")
        if scheme == "sqlite":
            raw = unquote(parts.path)
            if not raw or raw == "/":
                raise ConfigError(
                    f"store URL {redacted_url(url)!r} names no SQLite file"
                )
            return cls(url=url, kind="sqlite", sqlite_path=Path(raw))
        if scheme in {"postgresql", "postgres"}:
            query = parse_qs(parts.query)
            return cls(
                url=url,
                kind="postgres",
                pg_host=parts.hostname or "127.0.0.1",
                pg_port=parts.port or 5432,
                pg_user=unquote(parts.username or "postgres"),
                pg_password=unquote(parts.password or ""),
                pg_dbname=parts.path.lstrip("/") or "postgres",
                pg_schema=_schema_name(url, query.get("schema", [""])[0]),
            )
        raise ConfigError(
            f"store URL {redacted_url(url)!r}: use sqlite:///PATH, postgresql://... or memory://"
        )

    def eventsourcing_env(self) -> dict[str, str]:
        """The settings eventsourcing's own sqlite and postgres modules read."""
        if self.kind == "memory":
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        if self.kind == "sqlite":
            assert self.sqlite_path is not None  # noqa: S101 - parse() guarantees it
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "30",
                "SUBJECT_KEYS_URL": self.sqlalchemy_url(),
            }
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.pg_dbname,
            "POSTGRES_HOST": self.pg_host,
            "POSTGRES_PORT": str(self.pg_port),
            "POSTGRES_USER": self.pg_user,
            "POSTGRES_PASSWORD": self.pg_password,
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": "5",
        }
        if self.pg_schema:
            env["POSTGRES_SCHEMA"] = self.pg_schema
            env["SUBJECT_KEYS_SCHEMA"] = self.pg_schema
        env["SUBJECT_KEYS_URL"] = self.sqlalchemy_url()
        return env

    def sqlalchemy_url(self) -> str:
        """The same database for SQLAlchemy (relay position and other non-event SQL)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.sqlite_path}"
        if self.kind == "postgres":
            return URL.create(
                "postgresql+psycopg",
                username=self.pg_user,
                password=self.pg_password or None,
                host=self.pg_host,
                port=self.pg_port,
                database=self.pg_dbname,
            ).render_as_string(hide_password=False)
        return "sqlite://"

    def ensure_schema(self) -> None:
        """Creates the PostgreSQL schema named in the URL, if there is one."""
        if self.kind != "postgres" or not self.pg_schema:
            return
        engine = sa.create_engine(self.sqlalchemy_url())
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.pg_schema}"'))
        finally:
            engine.dispose()


def _schema_name(url: str, schema: str) -> str:
    if schema and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise ConfigError(
            f"store URL {redacted_url(url)!r}: schema must be a plain SQL identifier"
        )
    return schema
