"""The consent context's aggregate: each subject's changes and point-in-time answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from closedloop.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

NAMESPACE = uuid.UUID("28a935b2-cd03-441b-aded-19caa4125ee0")


class Purpose(StrEnum):
    MARKETING_EMAIL = "marketing_email"
    NEWSLETTER = "newsletter"
    SALES_CONTACT = "sales_contact"
    PRODUCT_UPDATES = "product_updates"
    EVENT_INVITATIONS = "event_invitations"
    PROFILING = "profiling"
    THIRD_PARTY_SHARING = "third_party_sharing"
    RESEARCH = "research"
    #: Withdrawals only: every purpose on the withdrawal's channel (global opt-out).
    ALL = "all"
    #: Withdrawals only: GDPR art. 21, every marketing purpose on every channel.
    DIRECT_MARKETING_OBJECTION = "direct_marketing_objection"


#: The purposes an objection to direct marketing covers: all but research.
MARKETING_PURPOSES = frozenset(
    {
        Purpose.MARKETING_EMAIL,
        Purpose.NEWSLETTER,
        Purpose.SALES_CONTACT,
        Purpose.PRODUCT_UPDATES,
        Purpose.EVENT_INVITATIONS,
        Purpose.PROFILING,
        Purpose.THIRD_PARTY_SHARING,
    }
)
#: What a withdrawal may name instead of one purpose.
SCOPES = frozenset({Purpose.ALL, Purpose.DIRECT_MARKETING_OBJECTION})
#: A Global Privacy Control signal opts out of sale and sharing, nothing else.
GPC_PURPOSES = (Purpose.THIRD_PARTY_SHARING, Purpose.PROFILING)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"
    WEB = "web"
    IN_APP = "in_app"


#: The channel of a change that covers every channel.
EVERY_CHANNEL = ""


class SourceSystem(StrEnum):
    WEB_FORM = "web_form"
    CRM = "crm"
    EMAIL_TOOL = "email_tool"
    CALL_CENTRE = "call_centre"
    PREFERENCE_CENTRE = "preference_centre"
    GPC = "gpc"
    IMPORT = "import"
    API = "api"
    SALES_REP = "sales_rep"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


class Method(StrEnum):
    FORM = "form"
    DOUBLE_OPT_IN_CONFIRMED = "double_opt_in_confirmed"
    DOUBLE_OPT_IN_REQUESTED = "double_opt_in_requested"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    PREFERENCE_CENTRE = "preference_centre"
    GPC = "gpc"
    API = "api"
    IMPORT = "import"
    SALES_REP = "sales_rep"


GRANT_METHODS = frozenset(
    {
        Method.FORM,
        Method.DOUBLE_OPT_IN_CONFIRMED,
        Method.DOUBLE_OPT_IN_REQUESTED,
        Method.PREFERENCE_CENTRE,
        Method.API,
        Method.IMPORT,
        Method.SALES_REP,
    }
)
WITHDRAWAL_METHODS = frozenset(
    {
        Method.FORM,
        Method.UNSUBSCRIBE_LINK,
        Method.PREFERENCE_CENTRE,
        Method.GPC,
        Method.API,
        Method.IMPORT,
        Method.SALES_REP,
    }
)


class State(StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    NOT_OPTED = "not_opted"
    PENDING_CONFIRMATION = "pending_confirmation"


class Frequency(StrEnum):
    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    NEVER = "never"


class ChangeKind(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    ERASED = "erased"


def lead_subject_id(lead_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"lead:{lead_id}")


def email_subject_id(email_digest: str) -> uuid.UUID:
    """Keyed by the keyed hash of the address, never by the address itself."""
    return uuid.uuid5(NAMESPACE, f"email:{email_digest}")


# -- values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What the person was shown, how and from where (the last two are personal)."""

    notice_version: str = ""
    notice_hash: str = ""
    capture_method: str = ""
    request_origin: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ChangeRequest:
    """A grant or withdrawal a caller asked to record."""

    purpose: str
    channel: str
    source_system: str
    method: str
    occurred_at: datetime
    legal_basis: str = LegalBasis.CONSENT
    evidence: Evidence = field(default_factory=Evidence)
    #: The email the change is recorded for or with, and its keyed hash.
    email: str = ""
    email_digest: str = ""
    idempotency_key: str = ""

    @property
    def imported(self) -> bool:
        return self.source_system == SourceSystem.IMPORT or self.method == Method.IMPORT


@dataclass(frozen=True)
class ConsentChange:
    """One entry of a subject's history: a grant, a withdrawal or an erasure."""

    change_id: uuid.UUID
    kind: ChangeKind
    subject_aggregate_id: uuid.UUID
    lead_id: uuid.UUID | None
    email: str
    email_digest: str
    purpose: str
    channel: str
    legal_basis: str
    source_system: str
    method: str
    evidence: Evidence
    occurred_at: datetime
    recorded_at: datetime
    #: Recording order within its subject (the aggregate version).
    sequence: int

    def covers(self, purpose: str, channel: str) -> bool:
        if self.kind is ChangeKind.ERASED:
            return True
        if self.channel not in {EVERY_CHANNEL, channel}:
            return False
        return self.purpose in {purpose, Purpose.ALL} or (
            self.purpose == Purpose.DIRECT_MARKETING_OBJECTION
            and purpose in MARKETING_PURPOSES
        )


@dataclass(frozen=True)
class ChannelPreferences:
    channel: str
    topics: tuple[str, ...]
    frequency: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "topics": list(self.topics),
            "frequency": self.frequency,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChannelPreferences:
        return cls(
            channel=str(raw["channel"]),
            topics=tuple(str(t) for t in raw["topics"]),
            frequency=str(raw["frequency"]),
        )


@dataclass(frozen=True)
class PreferenceChange:
    change_id: uuid.UUID
    subject_aggregate_id: uuid.UUID
    lead_id: uuid.UUID | None
    email: str
    email_digest: str
    preferences: tuple[ChannelPreferences, ...]
    source_system: str
    occurred_at: datetime
    recorded_at: datetime
    sequence: int


def history_order(
    change: ConsentChange | PreferenceChange,
) -> tuple[datetime, datetime, int]:
    """Business time, then recording order (recorded time, then the sequence)."""
    return (change.occurred_at, change.recorded_at, change.sequence)


# -- rules of a request ------------------------------------------------------------


def check_grant(request: ChangeRequest) -> None:
    if request.purpose in SCOPES:
        raise InvalidArgument(
            "purpose", "a grant names one specific purpose, not a scope"
        )
    if not request.channel:
        raise InvalidArgument("channel", "is required")
    if not request.method:
        raise InvalidArgument("method", "is required")
    if request.method not in GRANT_METHODS:
        raise InvalidArgument("method", f"'{request.method}' cannot grant consent")
    if request.source_system == SourceSystem.GPC:
        raise InvalidArgument(
            "source_system", "a Global Privacy Control signal can only opt out"
        )


def check_withdrawal(request: ChangeRequest) -> None:
    if request.purpose == Purpose.DIRECT_MARKETING_OBJECTION and request.channel:
        raise InvalidArgument(
            "channel",
            "an objection to direct marketing covers every channel; leave it "
            "unspecified",
        )
    if not request.method:
        raise InvalidArgument("method", "is required")
    if request.method not in WITHDRAWAL_METHODS:
        raise InvalidArgument("method", f"'{request.method}' cannot withdraw consent")


# -- the aggregate -----------------------------------------------------------------


class Consent(Aggregate):
    """One subject's consent record: every change as it was recorded, never rewritten.

    A subject is a lead or, before there is a lead, an email address. The record keeps
    the whole history; what a person allows at a time is folded from it (`decide`),
    so the same record answers "was it allowed on date T" and "what did we believe
    on date T" alike.
    """

    if TYPE_CHECKING:  # event classes made by eventsourcing's @event, named for mypy
        Opened: ClassVar[type[Any]]
        Granted: ClassVar[type[Any]]
        Withdrawn: ClassVar[type[Any]]
        PreferencesChanged: ClassVar[type[Any]]
        SubjectErased: ClassVar[type[Any]]

    @staticmethod
    def create_id(lead_id: uuid.UUID | None, email_digest: str) -> uuid.UUID:
        if lead_id is not None:
            return lead_subject_id(lead_id)
        return email_subject_id(email_digest)

    @event("Opened")
    def __init__(self, lead_id: uuid.UUID | None, email_digest: str) -> None:
        self.lead_id = lead_id
        #: An email subject's own digest; "" for a lead subject.
        self.email_digest = "" if lead_id is not None else email_digest
        self.changes: list[ConsentChange] = []
        self.preference_changes: list[PreferenceChange] = []
        self.erasures: list[ConsentChange] = []
        #: Every email digest the subject was recorded with, first seen first.
        self.email_digests: list[str] = [self.email_digest] if self.email_digest else []
        self.change_keys: dict[str, list[uuid.UUID]] = {}
        self.changed_since_erasure = False

    @classmethod
    def for_lead(cls, lead_id: uuid.UUID) -> Consent:
        return cls(lead_id=lead_id, email_digest="")

    @classmethod
    def for_email(cls, email_digest: str) -> Consent:
        return cls(lead_id=None, email_digest=email_digest)

    @property
    def erased(self) -> bool:
        return bool(self.erasures)

    @property
    def suppressed(self) -> bool:
        """An erased email subject: its digest is kept so imports cannot re-add it."""
        return self.lead_id is None and self.erased

    def changes_for_key(self, idempotency_key: str) -> tuple[uuid.UUID, ...] | None:
        if not idempotency_key or idempotency_key not in self.change_keys:
            return None
        return tuple(self.change_keys[idempotency_key])

    # -- rules -------------------------------------------------------------------

    def check_takes_changes(self) -> None:
        if self.lead_id is not None and self.erased:
            raise FailedPrecondition(
                f"lead {self.lead_id} was erased; nothing more is recorded for it"
            )

    def check_import_allowed(self, request: ChangeRequest) -> None:
        if self.suppressed and request.imported:
            raise FailedPrecondition(
                "suppressed: this person asked to be erased; an imported grant "
                "cannot subscribe them again"
            )

    # -- commands ----------------------------------------------------------------

    def grant(
        self,
        request: ChangeRequest,
        *,
        linked: Sequence[Consent] = (),
        recorded_at: datetime | None = None,
    ) -> tuple[uuid.UUID, bool]:
        """Records an opt-in; `linked` are the email records whose suppression counts.

        Returns the change id and whether it was new.
        """
        check_grant(request)
        known = self.changes_for_key(request.idempotency_key)
        if known is not None:
            return known[0], False
        self.check_takes_changes()
        for record in (self, *linked):
            record.check_import_allowed(request)
        change_id = self._new_change_id(request.idempotency_key)
        self._granted(**self._change_fields(change_id, request), timestamp=recorded_at)
        return change_id, True

    def withdraw(
        self, request: ChangeRequest, *, recorded_at: datetime | None = None
    ) -> tuple[uuid.UUID, bool]:
        check_withdrawal(request)
        known = self.changes_for_key(request.idempotency_key)
        if known is not None:
            return known[0], False
        self.check_takes_changes()
        change_id = self._new_change_id(request.idempotency_key)
        self._withdrawn(
            **self._change_fields(change_id, request), timestamp=recorded_at
        )
        return change_id, True

    def record_global_privacy_control(
        self,
        occurred_at: datetime,
        *,
        evidence: Evidence = Evidence(),
        email: str = "",
        email_digest: str = "",
        idempotency_key: str = "",
        recorded_at: datetime | None = None,
    ) -> tuple[tuple[uuid.UUID, ...], bool]:
        """Opts out of sale and sharing on every channel; other purposes stay."""
        known = self.changes_for_key(idempotency_key)
        if known is not None:
            return known, False
        self.check_takes_changes()
        change_ids = []
        for purpose in GPC_PURPOSES:
            request = ChangeRequest(
                purpose=purpose,
                channel=EVERY_CHANNEL,
                source_system=SourceSystem.GPC,
                method=Method.GPC,
                occurred_at=occurred_at,
                evidence=evidence,
                email=email,
                email_digest=email_digest,
                idempotency_key=idempotency_key,
            )
            change_id = self._new_change_id(idempotency_key, f"#{purpose}")
            self._withdrawn(
                **self._change_fields(change_id, request), timestamp=recorded_at
            )
            change_ids.append(change_id)
        return tuple(change_ids), True

    def set_preferences(
        self,
        preferences: Sequence[ChannelPreferences],
        source_system: str,
        occurred_at: datetime,
        *,
        email: str = "",
        email_digest: str = "",
        idempotency_key: str = "",
        recorded_at: datetime | None = None,
    ) -> tuple[uuid.UUID, bool]:
        if not preferences:
            raise InvalidArgument("preferences", "name at least one channel")
        channels = [p.channel for p in preferences]
        if len(set(channels)) != len(channels):
            raise InvalidArgument("preferences", "name each channel at most once")
        known = self.changes_for_key(idempotency_key)
        if known is not None:
            return known[0], False
        self.check_takes_changes()
        change_id = self._new_change_id(idempotency_key)
        self._preferences_changed(
            change_id=change_id,
            preferences=[p.as_dict() for p in preferences],
            source_system=source_system,
            lead_id=self.lead_id,
            email=email,
            email_digest=email_digest,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            timestamp=recorded_at,
        )
        return change_id, True

    def erase(
        self,
        occurred_at: datetime,
        *,
        email_digest: str = "",
        recorded_at: datetime | None = None,
    ) -> bool:
        """Leaves the tombstone; False if erased already and nothing changed since.

        Shredding the personal fields is the store's part (the subject's key).
        """
        if self.erased and not self.changed_since_erasure:
            return False
        digest = (
            self.email_digest
            or email_digest
            or (self.email_digests[-1] if self.email_digests else "")
        )
        self._subject_erased(
            lead_id=self.lead_id,
            email_digest=digest,
            occurred_at=occurred_at,
            timestamp=recorded_at,
        )
        return True

    # -- events ------------------------------------------------------------------

    @event("Granted")
    def _granted(
        self,
        change_id: uuid.UUID,
        purpose: str,
        channel: str,
        legal_basis: str,
        source_system: str,
        method: str,
        notice_version: str,
        notice_hash: str,
        capture_method: str,
        request_origin: str,
        evidence_detail: str,
        lead_id: uuid.UUID | None,
        email: str,
        email_digest: str,
        occurred_at: datetime,
        idempotency_key: str,
        timestamp: datetime | None = None,
    ) -> None:
        self._append_change(ChangeKind.GRANTED, locals())

    @event("Withdrawn")
    def _withdrawn(
        self,
        change_id: uuid.UUID,
        purpose: str,
        channel: str,
        legal_basis: str,
        source_system: str,
        method: str,
        notice_version: str,
        notice_hash: str,
        capture_method: str,
        request_origin: str,
        evidence_detail: str,
        lead_id: uuid.UUID | None,
        email: str,
        email_digest: str,
        occurred_at: datetime,
        idempotency_key: str,
        timestamp: datetime | None = None,
    ) -> None:
        self._append_change(ChangeKind.WITHDRAWN, locals())

    @event("PreferencesChanged")
    def _preferences_changed(
        self,
        change_id: uuid.UUID,
        preferences: list[dict[str, Any]],
        source_system: str,
        lead_id: uuid.UUID | None,
        email: str,
        email_digest: str,
        occurred_at: datetime,
        idempotency_key: str,
        timestamp: datetime | None = None,
    ) -> None:
        assert timestamp is not None  # noqa: S101 - eventsourcing passes the event's
        self.preference_changes.append(
            PreferenceChange(
                change_id=change_id,
                subject_aggregate_id=self.id,
                lead_id=lead_id,
                email=email,
                email_digest=email_digest,
                preferences=tuple(ChannelPreferences.from_dict(p) for p in preferences),
                source_system=source_system,
                occurred_at=occurred_at,
                recorded_at=timestamp,
                sequence=self.version + 1,  # apply() runs before the version moves
            )
        )
        self._remember(change_id, idempotency_key, email_digest)

    @event("SubjectErased")
    def _subject_erased(
        self,
        lead_id: uuid.UUID | None,
        email_digest: str,
        occurred_at: datetime,
        timestamp: datetime | None = None,
    ) -> None:
        assert timestamp is not None  # noqa: S101
        self.erasures.append(
            ConsentChange(
                change_id=uuid.uuid5(self.id, f"erasure:{len(self.erasures)}"),
                kind=ChangeKind.ERASED,
                subject_aggregate_id=self.id,
                lead_id=lead_id,
                email="",
                email_digest=email_digest,
                purpose=Purpose.ALL,
                channel=EVERY_CHANNEL,
                legal_basis="",
                source_system="",
                method="",
                evidence=Evidence(),
                occurred_at=occurred_at,
                recorded_at=timestamp,
                sequence=self.version + 1,
            )
        )
        self.changed_since_erasure = False

    # -- helpers -----------------------------------------------------------------

    def _new_change_id(self, idempotency_key: str, part: str = "") -> uuid.UUID:
        if not idempotency_key:
            return uuid.uuid4()
        return uuid.uuid5(self.id, f"change:{idempotency_key}{part}")

    def _change_fields(
        self, change_id: uuid.UUID, request: ChangeRequest
    ) -> dict[str, Any]:
        return {
            "change_id": change_id,
            "purpose": str(request.purpose),
            "channel": str(request.channel),
            "legal_basis": str(request.legal_basis),
            "source_system": str(request.source_system),
            "method": str(request.method),
            "notice_version": request.evidence.notice_version,
            "notice_hash": request.evidence.notice_hash,
            "capture_method": request.evidence.capture_method,
            "request_origin": request.evidence.request_origin,
            "evidence_detail": request.evidence.detail,
            "lead_id": self.lead_id,
            "email": request.email,
            "email_digest": request.email_digest,
            "occurred_at": request.occurred_at,
            "idempotency_key": request.idempotency_key,
        }

    def _append_change(self, kind: ChangeKind, fields: dict[str, Any]) -> None:
        timestamp = fields["timestamp"]
        assert timestamp is not None  # noqa: S101 - eventsourcing passes the event's
        self.changes.append(
            ConsentChange(
                change_id=fields["change_id"],
                kind=kind,
                subject_aggregate_id=self.id,
                lead_id=fields["lead_id"],
                email=fields["email"],
                email_digest=fields["email_digest"],
                purpose=fields["purpose"],
                channel=fields["channel"],
                legal_basis=fields["legal_basis"],
                source_system=fields["source_system"],
                method=fields["method"],
                evidence=Evidence(
                    notice_version=fields["notice_version"],
                    notice_hash=fields["notice_hash"],
                    capture_method=fields["capture_method"],
                    request_origin=fields["request_origin"],
                    detail=fields["evidence_detail"],
                ),
                occurred_at=fields["occurred_at"],
                recorded_at=timestamp,
                sequence=self.version + 1,
            )
        )
        self._remember(
            fields["change_id"], fields["idempotency_key"], fields["email_digest"]
        )

    def _remember(
        self, change_id: uuid.UUID, idempotency_key: str, email_digest: str
    ) -> None:
        if idempotency_key:
            self.change_keys.setdefault(idempotency_key, []).append(change_id)
        if email_digest and email_digest not in self.email_digests:
            self.email_digests.append(email_digest)
        self.changed_since_erasure = True


# -- point-in-time answers ---------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The answer for one (purpose, channel) pair at a time, and what decided it."""

    purpose: str
    channel: str
    at: datetime
    believed_at: datetime | None
    state: State
    reason: str
    decided_by: ConsentChange | None

    @property
    def allowed(self) -> bool:
        return self.state is State.OPTED_IN


def all_changes(records: Iterable[Consent]) -> list[ConsentChange]:
    """Grants, withdrawals and erasures of the records, in history order."""
    changes = [c for r in records for c in (*r.changes, *r.erasures)]
    return sorted(changes, key=history_order)


def decide(
    changes: Iterable[ConsentChange],
    purpose: str,
    channel: str,
    at: datetime,
    believed_at: datetime | None = None,
) -> Decision:
    """Folds the changes that cover the pair and occurred at or before `at`.

    With `believed_at`, only the changes recorded by then count: the answer closedloop
    would have given at that time. In business-time order, ties in recording order: a
    grant opts in, a double opt-in request makes the pair pending unless it is opted
    in already, a withdrawal or an erasure opts out. Nothing at all is "never asked".
    """
    state, deciding = State.NOT_OPTED, None
    relevant = sorted(
        (
            c
            for c in changes
            if c.covers(purpose, channel)
            and c.occurred_at <= at
            and (believed_at is None or c.recorded_at <= believed_at)
        ),
        key=history_order,
    )
    for change in relevant:
        if change.kind is not ChangeKind.GRANTED:
            state, deciding = State.OPTED_OUT, change
        elif change.method != Method.DOUBLE_OPT_IN_REQUESTED:
            state, deciding = State.OPTED_IN, change
        elif state is not State.OPTED_IN:
            state, deciding = State.PENDING_CONFIRMATION, change
    return Decision(
        purpose=purpose,
        channel=channel,
        at=at,
        believed_at=believed_at,
        state=state,
        reason=_reason(state, deciding, purpose, channel, at, believed_at),
        decided_by=deciding,
    )


def preferences_at(
    changes: Iterable[PreferenceChange],
    channel: str,
    at: datetime,
    believed_at: datetime | None = None,
) -> ChannelPreferences | None:
    """The latest preferences set for the channel at or before `at`."""
    found = None
    for change in sorted(changes, key=history_order):
        if change.occurred_at > at or (
            believed_at is not None and change.recorded_at > believed_at
        ):
            continue
        for preferences in change.preferences:
            if preferences.channel == channel:
                found = preferences
    return found


def _reason(  # noqa: PLR0911 - one sentence per way a pair can be decided
    state: State,
    change: ConsentChange | None,
    purpose: str,
    channel: str,
    at: datetime,
    believed_at: datetime | None,
) -> str:
    if change is None:
        known = f", as recorded by {believed_at.isoformat()}" if believed_at else ""
        return (
            f"never asked: no consent to {purpose} by {channel} occurred at or "
            f"before {at.isoformat()}{known}; contact needs an opt-in"
        )
    when = change.occurred_at.isoformat()
    how = f"{change.method} via {change.source_system}"
    if change.kind is ChangeKind.ERASED:
        return f"the subject was erased on {when}; nothing may be sent"
    if state is State.OPTED_IN:
        return (
            f"opted in to {change.purpose} by {change.channel} on {when} ({how}, "
            f"legal basis {change.legal_basis})"
        )
    if state is State.PENDING_CONFIRMATION:
        return (
            f"double opt-in to {change.purpose} by {change.channel} requested on "
            f"{when} and not confirmed"
        )
    where = f"by {change.channel}" if change.channel else "on every channel"
    if change.purpose == Purpose.DIRECT_MARKETING_OBJECTION:
        return (
            f"objected to direct marketing (GDPR art. 21) on {when} ({how}): every "
            "marketing purpose on every channel"
        )
    if change.method == Method.GPC:
        return (
            f"Global Privacy Control signal on {when}: opted out of {change.purpose} "
            f"{where}"
        )
    if change.purpose == Purpose.ALL:
        return f"opted out of every purpose {where} on {when} ({how})"
    return f"withdrew {change.purpose} {where} on {when} ({how})"
