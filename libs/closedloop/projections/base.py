"""What a projection is: a name, a version, the events it handles, its tables, apply().

The projection says *what* a read model holds; the runner (`closedloop.projections.
runner`) owns the log position, batching, retries, parking and blue/green rebuilds.
"""

from __future__ import annotations

import operator
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    import sqlalchemy as sa
    from google.protobuf.message import Message

    from closedloop.bus.cloudevents import Envelope

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class ProjectionError(Exception):
    """An event this projection cannot apply; the runner retries it, then parks it."""


class ProjectionDefinitionError(TypeError):
    """A projection class breaks the rules of its kind (name, version, tables)."""


@dataclass(frozen=True)
class Event:
    """One decoded event of the log: its stream sequence, envelope and message."""

    seq: int
    envelope: Envelope
    message: Message

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type


class ApplyContext:
    """What apply() works with: the open transaction and this generation's tables.

    Tables are declared once, as templates; a rebuild fills a fresh copy of them under
    other names while the old copy still serves, so apply() always goes through
    `table(template)` to reach the copy it is filling.
    """

    def __init__(
        self, conn: sa.Connection, tables: Mapping[sa.Table, sa.Table]
    ) -> None:
        self.conn = conn
        self._tables = tables

    def table(self, template: sa.Table) -> sa.Table:
        return self._tables[template]

    @property
    def dialect(self) -> str:
        return str(self.conn.dialect.name)

    def insert(self, template: sa.Table) -> Any:
        """An INSERT that understands ON CONFLICT on both SQLite and PostgreSQL."""
        table = self.table(template)
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def insert_missing(
        self, template: sa.Table, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Inserts rows whose key is new; rows already there are left as they are."""
        if rows:
            execute_many(
                self.conn,
                (self.table(template), "insert_missing"),
                lambda: self.insert(template).on_conflict_do_nothing(),
                rows,
            )

    def upsert(
        self,
        template: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        update: Iterable[str] | None = None,
    ) -> None:
        """Inserts rows, or overwrites the `update` columns (default: all non-key)."""
        if not rows:
            return
        table = self.table(template)
        keys = [c.name for c in table.primary_key.columns]
        columns = (
            list(update)
            if update is not None
            else [name for name in rows[0] if name not in keys]
        )

        def build() -> Any:
            statement = self.insert(template)
            if not columns:
                return statement.on_conflict_do_nothing()
            return statement.on_conflict_do_update(
                index_elements=keys,
                set_={name: statement.excluded[name] for name in columns},
            )

        execute_many(self.conn, (table, "upsert", *columns), build, rows)

    def add(
        self,
        template: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        sums: Iterable[str],
    ) -> None:
        """Inserts rows, or adds their `sums` columns to the row already there."""
        if not rows:
            return
        table = self.table(template)
        keys = [c.name for c in table.primary_key.columns]
        sums = tuple(sums)

        def build() -> Any:
            statement = self.insert(template)
            return statement.on_conflict_do_update(
                index_elements=keys,
                set_={name: table.c[name] + statement.excluded[name] for name in sums},
            )

        execute_many(self.conn, (table, "add", *sums), build, rows)


#: Per statement and row keys: the SQL and a function making a row's parameters, or
#: None where the statement must go through SQLAlchemy. Keyed by table objects, of
#: which every generation has its own: emptied when it grows past `_MAX_PLANS`.
_PLANS: dict[tuple[Any, ...], tuple[str, Callable[[Any], Any]] | None] = {}
_MAX_PLANS = 1024


def execute_many(
    conn: sa.Connection,
    key: tuple[Any, ...],
    build: Callable[[], Any],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Runs one statement for many rows; `key` names the statement `build` makes.

    On SQLite the statement is compiled once and the rows go straight to the
    driver's executemany as tuples: SQLAlchemy's own handling of each row's
    parameters costs about as much as SQLite's insert of it, which a rebuild of
    millions of rows feels. That is done only where every row has the same keys,
    every parameter is one of them and no column type converts its values;
    anything else, and PostgreSQL (where SQLAlchemy sends rows as multi-row
    VALUES), goes through `conn.execute`, which also refuses rows with other keys
    than the first row's.
    """
    names = tuple(rows[0])
    if conn.dialect.name != "sqlite" or len(rows) == 1:
        conn.execute(build(), rows)
        return
    plan_key = (*key, names)
    if plan_key not in _PLANS:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[plan_key] = _plan(conn.dialect, build(), names)
    plan = _PLANS[plan_key]
    if plan is None or any(len(row) != len(names) for row in rows):
        conn.execute(build(), rows)
        return
    sql, parameters = plan
    try:
        values = [parameters(row) for row in rows]
    except KeyError:  # a row with other keys
        conn.execute(build(), rows)
        return
    conn.exec_driver_sql(sql, values)


def _plan(
    dialect: sa.Dialect, statement: Any, names: tuple[str, ...]
) -> tuple[str, Callable[[Any], Any]] | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    order = compiled.positiontup
    if not order or any(name not in names for name in order):
        return None
    for name in order:
        column_type = dialect.type_descriptor(compiled.binds[name].type)
        if column_type.bind_processor(dialect) is not None:
            return None
    getter = operator.itemgetter(*order)
    if len(order) == 1:
        return compiled.string, lambda row: (getter(row),)
    return compiled.string, getter


class Projection(ABC):
    """A read model: subclasses set the class attributes and implement apply().

    * `name`: snake_case, unique; the entry-point name registers it.
    * `version`: bump it when the tables or the meaning of a row change; a new
      version is built from position 0 into new tables (blue/green), never migrated.
    * `handles`: the protobuf message classes it reads; every other event of the log
      only moves its position.
    * `tables`: SQLAlchemy Core tables, named `<something>_v<version>`.

    apply() receives a batch of events in log order and must be deterministic and
    keyed: applying any interleaving of the contexts' events, or an event twice, gives
    the same rows. It raises ProjectionError (or anything else) for an event it
    cannot apply; the runner then retries that event alone and parks it if it keeps
    failing, and the batch goes on without it.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    handles: ClassVar[tuple[type[Message], ...]]
    tables: ClassVar[tuple[sa.Table, ...]]
    description: ClassVar[str] = ""

    @abstractmethod
    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        """Applies the batch inside the runner's transaction."""

    @classmethod
    def handled_types(cls) -> frozenset[str]:
        return frozenset(m.DESCRIPTOR.full_name for m in cls.handles)

    @classmethod
    def check_definition(cls) -> None:
        """Raises ProjectionDefinitionError when the class breaks the rules above."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            msg = f"{cls.__qualname__}: name must be snake_case, got {name!r}"
            raise ProjectionDefinitionError(msg)
        version = getattr(cls, "version", None)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            msg = f"{name}: version must be a positive integer, got {version!r}"
            raise ProjectionDefinitionError(msg)
        if not getattr(cls, "handles", ()):
            msg = f"{name}: handles names no event type"
            raise ProjectionDefinitionError(msg)
        tables = getattr(cls, "tables", ())
        if not tables:
            msg = f"{name}: declares no tables"
            raise ProjectionDefinitionError(msg)
        for table in tables:
            if not table.name.endswith(f"_v{version}"):
                msg = f"{name}: table {table.name} must end with _v{version}"
                raise ProjectionDefinitionError(msg)
            if not table.primary_key.columns:
                msg = f"{name}: table {table.name} needs a primary key (rows are keyed)"
                raise ProjectionDefinitionError(msg)
