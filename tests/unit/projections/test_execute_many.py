"""execute_many: the driver's executemany where that is safe, SQLAlchemy elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from closedloop.projections.base import execute_many

if TYPE_CHECKING:
    from collections.abc import Iterator

metadata = sa.MetaData()
counts = sa.Table(
    "execute_many_counts_v1",
    metadata,
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("note", sa.String(16), nullable=False, default="-"),
)
stamped = sa.Table(
    "execute_many_stamped_v1",
    metadata,
    sa.Column("key", sa.String(16), primary_key=True),
    # SQLite stores DateTime as text: a column type that converts its values.
    sa.Column("at", sa.DateTime, nullable=False),
)


@pytest.fixture
def conn() -> Iterator[sa.Connection]:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


class Statements:
    """Records which way each execute_many call went."""

    def __init__(self, conn: sa.Connection) -> None:
        self.driver: list[str] = []
        sa.event.listen(conn, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        context = args[4]
        self.driver.append("compiled" if context.compiled is not None else "driver")


def add_counts(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    def build() -> Any:
        statement = sqlite.insert(counts)
        return statement.on_conflict_do_update(
            index_elements=["key"], set_={"n": counts.c.n + statement.excluded.n}
        )

    execute_many(conn, (counts, "add"), build, rows)


def all_rows(conn: sa.Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.key))]


def test_rows_go_to_the_driver_and_give_what_sqlalchemy_gives(
    conn: sa.Connection,
) -> None:
    seen = Statements(conn)
    rows = [{"key": k, "n": n, "note": "x"} for k, n in (("a", 1), ("b", 2), ("a", 3))]
    add_counts(conn, rows)
    add_counts(conn, rows)
    assert seen.driver == ["driver", "driver"]
    assert all_rows(conn, counts) == [("a", 8, "x"), ("b", 4, "x")]


@pytest.mark.parametrize(
    "second",
    [{"key": "b", "n": 2}, {"key": "b", "n": 2, "other": "z"}],
    ids=["fewer keys", "other keys"],
)
def test_rows_with_other_keys_are_refused_as_sqlalchemy_refuses_them(
    conn: sa.Connection, second: dict[str, Any]
) -> None:
    with pytest.raises(sa.exc.StatementError, match="note"):
        add_counts(conn, [{"key": "a", "n": 1, "note": "x"}, second])


def test_a_column_type_that_converts_goes_through_sqlalchemy(
    conn: sa.Connection,
) -> None:
    seen = Statements(conn)
    at = datetime(2026, 7, 1, 12, 30, tzinfo=UTC).replace(tzinfo=None)
    execute_many(
        conn,
        (stamped, "insert"),
        lambda: sqlite.insert(stamped),
        [{"key": "a", "at": at}, {"key": "b", "at": at}],
    )
    assert seen.driver == ["compiled"]
    assert all_rows(conn, stamped) == [("a", at), ("b", at)]


def test_a_constant_in_the_statement_goes_through_sqlalchemy(
    conn: sa.Connection,
) -> None:
    seen = Statements(conn)

    def build() -> Any:
        statement = sqlite.insert(counts)
        return statement.on_conflict_do_update(
            index_elements=["key"], set_={"note": "again"}
        )

    rows = [{"key": "a", "n": 1, "note": "x"}, {"key": "b", "n": 1, "note": "x"}]
    execute_many(conn, (counts, "note"), build, rows)
    execute_many(conn, (counts, "note"), build, rows)
    assert seen.driver == ["compiled", "compiled"]
    assert all_rows(conn, counts) == [("a", 1, "again"), ("b", 1, "again")]
