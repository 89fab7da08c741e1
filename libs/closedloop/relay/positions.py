"""Where a relay keeps its position: a small table in the service's own database."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

metadata = sa.MetaData()

relay_positions = sa.Table(
    "closedloop_relay_positions",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    # Notification ids seen missing and not yet filled: {id: first seen, unix time}.
    sa.Column("open_gaps", sa.Text, nullable=False, default="{}"),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass
class RelayState:
    position: int = 0
    open_gaps: dict[int, float] = field(default_factory=dict)


class RelayPositions:
    """Reads and writes relay positions with SQLAlchemy, beside the event tables."""

    def __init__(self, url: str, *, schema: str = "") -> None:
        connect_args: dict[str, object] = {}
        if url.startswith("sqlite"):
            connect_args = {"timeout": 30}
        elif schema:
            connect_args = {"options": f"-csearch_path={schema}"}
        self._engine = sa.create_engine(url, connect_args=connect_args)
        metadata.create_all(self._engine, checkfirst=True)

    def load(self, name: str) -> RelayState:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    relay_positions.c.position, relay_positions.c.open_gaps
                ).where(relay_positions.c.name == name)
            ).first()
        if row is None:
            return RelayState()
        gaps = {int(k): float(v) for k, v in json.loads(row.open_gaps).items()}
        return RelayState(position=int(row.position), open_gaps=gaps)

    def save(self, name: str, state: RelayState) -> None:
        values = {
            "position": state.position,
            "open_gaps": json.dumps({str(k): v for k, v in state.open_gaps.items()}),
            "updated_at": time.time(),
        }
        with self._engine.begin() as conn:
            updated = conn.execute(
                relay_positions.update()
                .where(relay_positions.c.name == name)
                .values(**values)
            ).rowcount
            if not updated:
                conn.execute(relay_positions.insert().values(name=name, **values))

    def close(self) -> None:
        self._engine.dispose()
