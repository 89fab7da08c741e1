"""consent_status: what each subject allows now, per purpose and channel, and why.

Besides the tables, the fold of a subject's changes into the state of each pair
(`decisions`): the projector stores its result, and insights folds a person's
subjects together with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.readmodels.common import ReadModel

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

VERSION = 1

GRANTED = "granted"
WITHDRAWN = "withdrawn"
ERASED = "erased"
PREFERENCES = "preferences"

OPTED_IN = "opted_in"
OPTED_OUT = "opted_out"
NOT_OPTED = "not_opted"
PENDING = "pending_confirmation"

#: Scopes a withdrawal may name instead of one purpose (consent/v1/types.proto).
ALL = "all"
DIRECT_MARKETING_OBJECTION = "direct_marketing_objection"
#: The purposes an objection to direct marketing covers: all but research.
MARKETING_PURPOSES = frozenset(
    {
        "marketing_email",
        "newsletter",
        "sales_contact",
        "product_updates",
        "event_invitations",
        "profiling",
        "third_party_sharing",
    }
)
DOUBLE_OPT_IN_REQUESTED = "double_opt_in_requested"
#: The channel of a change that names none: every channel.
EVERY_CHANNEL = ""

metadata = sa.MetaData()

#: The audit trail: every change of every subject, without its personal fields.
changes = sa.Table(
    f"consent_status_changes_v{VERSION}",
    metadata,
    sa.Column("entry_id", sa.String(80), primary_key=True),
    sa.Column("subject_aggregate_id", sa.String(64), nullable=False),
    sa.Column("change_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("email_digest", sa.String(128), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("legal_basis", sa.String(32), nullable=False),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("notice_version", sa.String(200), nullable=False),
    sa.Column("notice_hash", sa.String(200), nullable=False),
    sa.Column("capture_method", sa.String(200), nullable=False),
    sa.Column("preferences", sa.Text, nullable=False),
    sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Index(f"ix_consent_status_changes_subject_v{VERSION}", "subject_aggregate_id"),
)

subjects = sa.Table(
    f"consent_status_subjects_v{VERSION}",
    metadata,
    sa.Column("subject_aggregate_id", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False),
    # An email subject's own digest ("" for a lead subject).
    sa.Column("email_digest", sa.String(128), nullable=False),
    sa.Column("erased_at_us", sa.BigInteger, nullable=True),
    sa.Index(f"ix_consent_status_subjects_lead_v{VERSION}", "lead_id"),
    sa.Index(f"ix_consent_status_subjects_digest_v{VERSION}", "email_digest"),
)

#: The read model proper: the current state per subject, purpose and channel.
states = sa.Table(
    f"consent_status_v{VERSION}",
    metadata,
    sa.Column("subject_aggregate_id", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(40), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=False),
    sa.Column("decided_at_us", sa.BigInteger, nullable=True),
    sa.Index(f"ix_consent_status_purpose_v{VERSION}", "purpose", "channel", "state"),
)

#: Which email digest a lead was captured with, to join a lead to its address's
#: consent record (the consent service keeps one record per lead and per address).
lead_digests = sa.Table(
    f"consent_status_leads_v{VERSION}",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("email_digest", sa.String(128), primary_key=True),
    sa.Index(f"ix_consent_status_leads_digest_v{VERSION}", "email_digest"),
)


@dataclass(frozen=True)
class Change:
    change_id: str
    kind: str
    purpose: str
    channel: str
    method: str
    occurred_at_us: int
    recorded_at_us: int
    sequence: int

    @property
    def order(self) -> tuple[int, int, int, str]:
        """Business time, then recording order, as the consent service folds."""
        return (self.occurred_at_us, self.recorded_at_us, self.sequence, self.change_id)

    def covers(self, purpose: str, channel: str) -> bool:
        if self.kind == ERASED:
            return True
        if self.kind not in {GRANTED, WITHDRAWN}:
            return False
        if self.channel not in {EVERY_CHANNEL, channel}:
            return False
        return self.purpose in {purpose, ALL} or (
            self.purpose == DIRECT_MARKETING_OBJECTION and purpose in MARKETING_PURPOSES
        )


@dataclass(frozen=True)
class Decision:
    purpose: str
    channel: str
    state: str
    decided_by: Change | None


def decide(history: Iterable[Change], purpose: str, channel: str) -> Decision:
    """The latest change covering the pair decides (DOMAIN.md section 5).

    In business-time order, ties in recording order: a grant opts in, a double
    opt-in request makes the pair pending unless it is opted in already, a
    withdrawal or an erasure opts out; nothing at all is "never asked".
    """
    state, deciding = NOT_OPTED, None
    for change in sorted(
        (c for c in history if c.covers(purpose, channel)), key=lambda c: c.order
    ):
        if change.kind != GRANTED:
            state, deciding = OPTED_OUT, change
        elif change.method != DOUBLE_OPT_IN_REQUESTED:
            state, deciding = OPTED_IN, change
        elif state != OPTED_IN:
            state, deciding = PENDING, change
    return Decision(purpose, channel, state, deciding)


def pairs_of(history: Iterable[Change]) -> list[tuple[str, str]]:
    """The (purpose, channel) pairs a subject's history names.

    Each grant's and each withdrawal's pair (scopes included, as their own rows),
    and "all on every channel" once the subject was erased.
    """
    found: set[tuple[str, str]] = set()
    for change in history:
        if change.kind in {GRANTED, WITHDRAWN}:
            found.add((change.purpose, change.channel))
        elif change.kind == ERASED:
            found.add((ALL, EVERY_CHANNEL))
    return sorted(found)


def decisions(history: Sequence[Change]) -> list[Decision]:
    return [decide(history, purpose, channel) for purpose, channel in pairs_of(history)]


def change_of(row: Any) -> Change:
    return Change(
        change_id=row.change_id,
        kind=row.kind,
        purpose=row.purpose,
        channel=row.channel,
        method=row.method,
        occurred_at_us=int(row.occurred_at_us),
        recorded_at_us=int(row.recorded_at_us),
        sequence=int(row.sequence),
    )


READ_MODEL = ReadModel(
    "consent_status", VERSION, (changes, subjects, states, lead_digests)
)
