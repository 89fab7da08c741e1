"""What every read model shares: its identity in the read store, and where that is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from closedloop.config import ProcessEnv

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


class ReadStoreEnv(ProcessEnv):
    """Where the read models are: what the projector writes and insights reads."""

    store_url: str | None = Field(
        default=None, validation_alias="CLOSEDLOOP_PROJECTOR_STORE_URL"
    )

    def read_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'projector' / 'read.db'}"


def store_url(environ: Mapping[str, str] | None = None) -> str:
    """CLOSEDLOOP_PROJECTOR_STORE_URL, else the SQLite file under the data folder."""
    return ReadStoreEnv.from_env(environ).read_store_url()
