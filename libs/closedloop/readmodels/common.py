"""What every read model shares: its identity in the read store, and where that is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    import sqlalchemy as sa


@dataclass(frozen=True)
class ReadModel:
    """A read model's name, version and that version's tables (`<table>_v<version>`).

    The name and version key its generations in the read store, and the tables are
    the templates each generation copies: changing any of them for stored data is a
    new version, built from the log beside the old one (blue/green), never a change
    in place.
    """

    name: str
    version: int
    tables: tuple[sa.Table, ...]


def store_url(environ: Mapping[str, str] | None = None) -> str:
    """CLOSEDLOOP_PROJECTOR_STORE_URL, else the SQLite file under the data folder."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("CLOSEDLOOP_DATA_DIR", "var")).resolve()
    return env.get("CLOSEDLOOP_PROJECTOR_STORE_URL") or (
        f"sqlite:///{data_dir / 'projector' / 'read.db'}"
    )
