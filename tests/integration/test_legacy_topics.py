"""Events stored while the services were `closedloop.services.*` still load."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.unit_of_work import CommandExecutor
from services.lead.application import CaptureLead, Leads, LeadStore
from services.lead.domain import Lead

if TYPE_CHECKING:
    from pathlib import Path

CAPTURE = CaptureLead(
    email="ana@example.com",
    name="Ana",
    company="Example",
    source_system="web",
    anonymous_id="anon-1",
    occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
)


def _store(path: Path) -> LeadStore:
    return LeadStore(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SUBJECT_KEYS_URL": f"sqlite:///{path.with_name('keys.db')}",
        }
    )


async def test_a_lead_stored_under_the_old_package_name_loads_as_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = _store(path)
    executor = CommandExecutor(store)
    leads = Leads(store, executor, secret_key=b"test")
    lead, created = await leads.capture_lead(CAPTURE, EventMeta.new())
    assert created is True
    await executor.close()
    store.close()

    with sqlite3.connect(path) as db:
        renamed = db.execute(
            "UPDATE stored_events SET topic = 'closedloop.' || topic"
            " WHERE topic LIKE 'services.%'"
        ).rowcount
    assert renamed > 0

    reopened = _store(path)
    try:
        again = Leads(reopened, CommandExecutor(reopened), secret_key=b"test")
        loaded = again.store.repository.get(lead.id)
        assert isinstance(loaded, Lead)
        assert loaded.email == "ana@example.com"
        assert loaded.anonymous_ids == ["anon-1"]
    finally:
        reopened.close()
