"""The read store: one SQL database holding every read model and its bookkeeping.

SQLite by default (WAL, so queries never wait for the projector), PostgreSQL by URL.
Besides the read models' own tables it keeps two tables of its own:

* `closedloop_projection_generations`: one row per build of a projection version
  (its *generation*): state (building, active, retired), log position, counters,
  and the lease of the process that runs it;
* `closedloop_projection_parked`: events that could not be applied, with the error.

Schema changes go through projection versions, not migrations: a new version is
built from the log into new tables and switched to atomically. The two bookkeeping
tables are the only ones that live across versions; they are created if missing.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from closedloop import retry
from closedloop.eventstore.store import StoreLocation

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from closedloop.projections.base import Projection

BUILDING = "building"
ACTIVE = "active"
RETIRED = "retired"

#: How long a runner's lease on a generation lasts without a heartbeat.
LEASE_SECONDS = 15.0

metadata = sa.MetaData()

generations = sa.Table(
    "closedloop_projection_generations",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    # The last log (stream) sequence applied, in the same transaction as the rows.
    sa.Column("position", sa.BigInteger, nullable=False, default=0),
    sa.Column("events_applied", sa.BigInteger, nullable=False, default=0),
    sa.Column("parked", sa.BigInteger, nullable=False, default=0),
    # Who created it ("projector" or "cli"): the projector builds only its own.
    sa.Column("created_by", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False, default=""),
    sa.Column("heartbeat_at", sa.Float, nullable=False, default=0.0),
    # The log's last sequence when the build started: progress and ETA.
    sa.Column("build_target", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("activated_at", sa.Float, nullable=True),
    sa.Column("retired_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
)

parked_events = sa.Table(
    "closedloop_projection_parked",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(200), nullable=False, default=""),
    sa.Column("event_type", sa.String(200), nullable=False, default=""),
    sa.Column("subject", sa.String(300), nullable=False, default=""),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("parked_at", sa.Float, nullable=False),
    sa.Column("retried_at", sa.Float, nullable=True),
    sa.Column("resolved_at", sa.Float, nullable=True),
    # The message as it was on the log, so it can be applied again after a fix.
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


class Tabled(Protocol):
    """What declares a read model's tables: a projection, or its ReadModel."""

    @property
    def tables(self) -> tuple[sa.Table, ...]: ...


@dataclass(frozen=True)
class GenerationKey:
    name: str
    version: int
    generation: int

    def __str__(self) -> str:
        return f"{self.name} v{self.version} g{self.generation}"


@dataclass(frozen=True)
class Generation:
    key: GenerationKey
    state: str
    position: int
    events_applied: int
    parked: int
    created_by: str
    owner: str
    heartbeat_at: float
    build_target: int
    created_at: float
    activated_at: float | None
    updated_at: float
    last_error: str

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def version(self) -> int:
        return self.key.version

    def leased_by_other(self, owner: str, now: float | None = None) -> bool:
        """True while another holder's heartbeat is fresh.

        A holder that was a process of this machine and is gone (killed) frees its
        lease at once: a projector restarted after a crash does not wait.
        """
        now = time.time() if now is None else now
        return (
            bool(self.owner)
            and self.owner != owner
            and now - self.heartbeat_at < LEASE_SECONDS
            and not _gone(self.owner)
        )

    @classmethod
    def from_row(cls, row: Any) -> Generation:
        return cls(
            key=GenerationKey(row.name, int(row.version), int(row.generation)),
            state=row.state,
            position=int(row.position),
            events_applied=int(row.events_applied),
            parked=int(row.parked),
            created_by=row.created_by,
            owner=row.owner,
            heartbeat_at=float(row.heartbeat_at),
            build_target=int(row.build_target),
            created_at=float(row.created_at),
            activated_at=row.activated_at,
            updated_at=float(row.updated_at),
            last_error=row.last_error,
        )


@dataclass(frozen=True)
class ParkedEvent:
    key: GenerationKey
    seq: int
    event_id: str
    event_type: str
    subject: str
    error: str
    attempts: int
    parked_at: float
    headers: dict[str, str]
    data: bytes


def physical_name(template_name: str, generation: int) -> str:
    """Generation 1 keeps the template's name; later builds get `_g<N>`."""
    return template_name if generation == 1 else f"{template_name}_g{generation}"


def _gone(owner: str) -> bool:
    """True for `role@<this host>:<pid>` when that process no longer exists."""
    _, _, where = owner.partition("@")
    host, _, pid = where.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def owner_id(role: str) -> str:
    """`projector@host:pid`: who holds a lease, readable in `projections status`."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


class ReadStore:
    """Engines, bookkeeping and the physical tables of each generation."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        location = StoreLocation.parse(url)
        if location.kind == "memory":
            location = StoreLocation.parse("sqlite:///:memory:")
        self.url = url
        self.kind = location.kind
        self.engine = _engine(location)
        self._tables: dict[GenerationKey, dict[sa.Table, sa.Table]] = {}
        self._write_lock = threading.Lock()
        if create:
            if location.kind == "postgres":
                location.ensure_schema()
            with self.write() as conn:
                metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction: SQLite takes its write lock at BEGIN (IMMEDIATE).

        SQLite has one writer at a time; the runners of one process queue on a lock
        of their own instead of polling SQLite's, which would let one of them starve.
        """
        if self.kind != "sqlite":
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_lock, self.engine.connect() as conn:
            conn.info["begin"] = "BEGIN IMMEDIATE"
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- physical tables ------------------------------------------------------------

    def tables_for(
        self, projection: Tabled, key: GenerationKey
    ) -> dict[sa.Table, sa.Table]:
        """Template -> the table this generation fills, under its own name."""
        found = self._tables.get(key)
        if found is not None:
            return found
        target = sa.MetaData()
        mapping: dict[sa.Table, sa.Table] = {}
        for template in projection.tables:
            copy = template.to_metadata(
                target, name=physical_name(template.name, key.generation)
            )
            if key.generation > 1:
                for index in copy.indexes:
                    index.name = sa.sql.quoted_name(
                        f"{index.name}_g{key.generation}", quote=None
                    )
            mapping[template] = copy
        self._tables[key] = mapping
        return mapping

    def create_tables(
        self, projection: type[Projection] | Projection, key: GenerationKey
    ) -> None:
        tables = list(self.tables_for(projection, key).values())
        with self.write() as conn:
            for table in tables:
                table.create(conn, checkfirst=True)

    def drop_tables(
        self, projection: type[Projection] | Projection, key: GenerationKey
    ) -> None:
        tables = list(self.tables_for(projection, key).values())
        with self.write() as conn:
            for table in reversed(tables):
                table.drop(conn, checkfirst=True)
        self._tables.pop(key, None)

    # -- generations ----------------------------------------------------------------

    def generations(self, name: str | None = None) -> list[Generation]:
        query = sa.select(generations).order_by(
            generations.c.name, generations.c.version, generations.c.generation
        )
        if name is not None:
            query = query.where(generations.c.name == name)
        with self.read() as conn:
            return [Generation.from_row(row) for row in conn.execute(query)]

    def generation(self, key: GenerationKey) -> Generation | None:
        with self.read() as conn:
            row = conn.execute(_select_key(key)).first()
        return Generation.from_row(row) if row is not None else None

    def active(self, name: str) -> Generation | None:
        found = [g for g in self.generations(name) if g.state == ACTIVE]
        return found[0] if found else None

    def create_generation(
        self,
        projection: type[Projection] | Projection,
        *,
        created_by: str,
        build_target: int = 0,
    ) -> Generation:
        """A new, empty generation of the projection's version, in state building.

        Tables of retired generations of the projection are dropped first: nothing
        has read them since the switch that retired them.
        """
        self.drop_retired(projection)
        now = time.time()
        with self.write() as conn:
            top = conn.execute(
                sa.select(sa.func.max(generations.c.generation)).where(
                    generations.c.name == projection.name,
                    generations.c.version == projection.version,
                )
            ).scalar()
            key = GenerationKey(projection.name, projection.version, int(top or 0) + 1)
            conn.execute(
                generations.insert().values(
                    name=key.name,
                    version=key.version,
                    generation=key.generation,
                    state=BUILDING,
                    position=0,
                    events_applied=0,
                    parked=0,
                    created_by=created_by,
                    owner="",
                    heartbeat_at=0.0,
                    build_target=build_target,
                    created_at=now,
                    updated_at=now,
                    last_error="",
                )
            )
        self.create_tables(projection, key)
        found = self.generation(key)
        assert found is not None  # noqa: S101 - inserted above
        return found

    def drop_retired(self, projection: type[Projection] | Projection) -> None:
        retired = [
            g
            for g in self.generations(projection.name)
            if g.state == RETIRED and g.version == projection.version
        ]
        for gen in retired:
            self.drop_tables(projection, gen.key)
        others = [
            g
            for g in self.generations(projection.name)
            if g.state == RETIRED and g.version != projection.version
        ]
        with self.write() as conn:
            for gen in retired + others:
                # Other versions' tables are unknown to this code; their rows go, and
                # their tables are left for the operator (see README).
                conn.execute(generations.delete().where(_where_key(gen.key)))
                conn.execute(parked_events.delete().where(_where_parked_key(gen.key)))

    def activate(self, key: GenerationKey) -> None:
        """The switch: in one transaction, the old active one retires, this one rises.

        Readers see either the old or the new one, never neither.
        """
        now = time.time()
        with self.write() as conn:
            conn.execute(
                generations.update()
                .where(
                    generations.c.name == key.name,
                    generations.c.state == ACTIVE,
                    sa.not_(_where_key(key)),
                )
                .values(state=RETIRED, retired_at=now, owner="", updated_at=now)
            )
            conn.execute(
                generations.update()
                .where(_where_key(key))
                .values(state=ACTIVE, activated_at=now, updated_at=now)
            )

    def claim(self, key: GenerationKey, owner: str) -> Generation | None:
        """Takes the lease if it is free, stale or ours; None if another holds it."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute(_select_key(key).with_for_update()).first()
            if row is None:
                return None
            current = Generation.from_row(row)
            if current.leased_by_other(owner, now):
                return None
            conn.execute(
                generations.update()
                .where(_where_key(key))
                .values(owner=owner, heartbeat_at=now)
            )
        return self.generation(key)

    def heartbeat(self, key: GenerationKey, owner: str) -> Generation | None:
        """Renews the lease; None when the generation is gone or another took it."""
        now = time.time()
        with self.write() as conn:
            updated = conn.execute(
                generations.update()
                .where(_where_key(key), generations.c.owner == owner)
                .values(heartbeat_at=now)
            ).rowcount
        if not updated:
            return None
        return self.generation(key)

    def release(self, key: GenerationKey, owner: str) -> None:
        with self.write() as conn:
            conn.execute(
                generations.update()
                .where(_where_key(key), generations.c.owner == owner)
                .values(owner="", heartbeat_at=0.0)
            )

    def record_error(self, key: GenerationKey, error: str) -> None:
        with self.write() as conn:
            conn.execute(
                generations.update()
                .where(_where_key(key))
                .values(last_error=error[:2000], updated_at=time.time())
            )

    def set_build_target(self, key: GenerationKey, target: int) -> None:
        with self.write() as conn:
            conn.execute(
                generations.update().where(_where_key(key)).values(build_target=target)
            )

    # -- parked events --------------------------------------------------------------

    def parked(
        self, key: GenerationKey | None = None, *, include_resolved: bool = False
    ) -> list[ParkedEvent]:
        query = sa.select(parked_events).order_by(
            parked_events.c.name, parked_events.c.generation, parked_events.c.seq
        )
        if key is not None:
            query = query.where(_where_parked_key(key))
        if not include_resolved:
            query = query.where(parked_events.c.resolved_at.is_(None))
        with self.read() as conn:
            return [
                ParkedEvent(
                    key=GenerationKey(row.name, row.version, row.generation),
                    seq=int(row.seq),
                    event_id=row.event_id,
                    event_type=row.event_type,
                    subject=row.subject,
                    error=row.error,
                    attempts=int(row.attempts),
                    parked_at=float(row.parked_at),
                    headers=json.loads(row.headers),
                    data=bytes(row.data),
                )
                for row in conn.execute(query)
            ]


def _where_key(key: GenerationKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        generations.c.name == key.name,
        generations.c.version == key.version,
        generations.c.generation == key.generation,
    )


def _where_parked_key(key: GenerationKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        parked_events.c.name == key.name,
        parked_events.c.version == key.version,
        parked_events.c.generation == key.generation,
    )


def _select_key(key: GenerationKey) -> sa.Select[Any]:
    return sa.select(generations).where(_where_key(key))


def park_row(
    key: GenerationKey,
    *,
    seq: int,
    headers: Mapping[str, str],
    data: bytes,
    error: str,
    attempts: int,
) -> dict[str, Any]:
    return {
        "name": key.name,
        "version": key.version,
        "generation": key.generation,
        "seq": seq,
        "event_id": headers.get("ce-id", "")[:200],
        "event_type": headers.get("ce-type", "")[:200],
        "subject": headers.get("ce-subject", "")[:300],
        "error": error[:4000],
        "attempts": attempts,
        "parked_at": time.time(),
        "headers": json.dumps(dict(headers), sort_keys=True),
        "data": data,
    }


#: Page cache per SQLite connection. SQLite's default (2 MiB) is far smaller than
#: the indexes of a read model with a million rows, so inserts under random keys
#: (event ids) would go to the file for nearly every row; this keeps them in memory
#: while still bounding what a connection may hold.
SQLITE_CACHE_KIB = 128 * 1024


def _engine(location: StoreLocation) -> sa.Engine:
    if location.kind == "postgres":
        connect_args: dict[str, Any] = {}
        if location.pg_schema:
            connect_args["options"] = f"-csearch_path={location.pg_schema}"
        return sa.create_engine(
            location.sqlalchemy_url(),
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=8,
        )
    assert location.sqlite_path is not None  # noqa: S101 - parse() guarantees it
    memory = str(location.sqlite_path) in {":memory:", "/:memory:"}
    if memory:
        engine = sa.create_engine(
            "sqlite://",
            poolclass=sa.pool.StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            f"sqlite:///{location.sqlite_path}",
            connect_args={"timeout": 60, "check_same_thread": False},
        )
    _sqlite_transactions(engine, wal=not memory)
    return engine


def _sqlite_transactions(engine: sa.Engine, *, wal: bool) -> None:
    """BEGIN is emitted by SQLAlchemy, not by the driver (the documented recipe).

    Savepoints then work, and writers take the lock at BEGIN (IMMEDIATE) instead of
    failing on a lock upgrade.
    """

    @sa_event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        if wal:
            _wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(conn.info.pop("begin", "BEGIN"))


def _wal(cursor: Any) -> None:
    """Switches the file to WAL, waiting for the lock that needs.

    A process opening the file at the same moment may hold it, and SQLite does not
    wait for it there (the busy timeout does not apply), so this does.
    """
    retry.call(
        lambda: cursor.execute("PRAGMA journal_mode=WAL"),
        on=sqlite3.OperationalError,
        backoff=retry.Backoff.constant(0.05),
        give_up_after=60,
    )
