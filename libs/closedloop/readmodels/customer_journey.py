"""customer_journey: every fact of a person's life with us, in business-time order."""

from __future__ import annotations

import sqlalchemy as sa

from closedloop.readmodels.common import ReadModel
from closedloop.readmodels.identity import identity_tables

VERSION = 2
#: The owner kind of a fact recorded for an email address (besides LEAD, VISITOR).
EMAIL = "email"

metadata = sa.MetaData()
identity = identity_tables("customer_journey", VERSION, metadata)

#: One row per fact; the owner is the lead, visitor or email address it was
#: recorded for, and the person is resolved through the identity tables on reading.
#: Keyed by owner first: a journey is read by owner, and in SQLite the rows are then
#: stored in that order (WITHOUT ROWID), one B-tree instead of a table and two
#: indexes. An event always has the same owner, so the event id stays unique.
entries = sa.Table(
    f"customer_journey_entries_v{VERSION}",
    metadata,
    sa.Column("owner_kind", sa.String(8), primary_key=True),
    sa.Column("owner_key", sa.String(256), primary_key=True),
    sa.Column("entry_id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("event_type", sa.String(120), nullable=False),
    sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("channel", sa.String(64), nullable=False, default=""),
    sa.Column("campaign", sa.String(256), nullable=False, default=""),
    sa.Column("stage", sa.String(32), nullable=False, default=""),
    sa.Column("deal_id", sa.String(64), nullable=False, default=""),
    sa.Column("amount_minor", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=False, default=""),
    # Further non-personal fields as sorted JSON.
    sa.Column("details", sa.Text, nullable=False, default="{}"),
    sqlite_with_rowid=False,
)

#: Entry kinds; the names match closedloop.insights.v1.EntryKind without the prefix.
TOUCHPOINT = "touchpoint"
LEAD_CAPTURED = "lead_captured"
VISITOR_IDENTIFIED = "visitor_identified"
STAGE_CHANGED = "stage_changed"
LEADS_MERGED = "leads_merged"
DEAL_OPENED = "deal_opened"
DEAL_STAGE_CHANGED = "deal_stage_changed"
DEAL_AMOUNT_UPDATED = "deal_amount_updated"
DEAL_WON = "deal_won"
DEAL_LOST = "deal_lost"
REVENUE_RECOGNIZED = "revenue_recognized"
CONSENT_GRANTED = "consent_granted"
CONSENT_WITHDRAWN = "consent_withdrawn"
PREFERENCES_CHANGED = "preferences_changed"
ERASED = "erased"

READ_MODEL = ReadModel("customer_journey", VERSION, (*identity.all(), entries))
