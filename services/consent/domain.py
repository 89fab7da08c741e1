"""The consent context's aggregate: each subject's changes, as they were recorded."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from closedloop.errors import FailedPrecondition, InvalidArgument
from services.consent.vocabulary import (
    EVERY_CHANNEL,
    GPC_PURPOSES,
    GRANT_METHODS,
    MARKETING_PURPOSES,
    SCOPES,
    WITHDRAWAL_METHODS,
    ChangeKind,
    LegalBasis,
    Method,
    Purpose,
    SourceSystem,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

NAMESPACE = uuid.UUID("28a935b2-cd03-441b-aded-19caa4125ee0")


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


@dataclass(frozen=True)
class RecordedChange:
    """A grant or a withdrawal as its event stores it: the request, evidence flattened.

    `Consent.Granted` and `Consent.Withdrawn` are this value plus the event's own
    attributes (id, version, timestamp). Stored events carry these names in this
    order, so neither changes.
    """

    change_id: uuid.UUID
    purpose: str
    channel: str
    legal_basis: str
    source_system: str
    method: str
    notice_version: str
    notice_hash: str
    capture_method: str
    request_origin: str
    evidence_detail: str
    lead_id: uuid.UUID | None
    email: str
    email_digest: str
    occurred_at: datetime
    idempotency_key: str

    @classmethod
    def of(
        cls, change_id: uuid.UUID, lead_id: uuid.UUID | None, request: ChangeRequest
    ) -> RecordedChange:
        return cls(
            change_id=change_id,
            purpose=str(request.purpose),
            channel=str(request.channel),
            legal_basis=str(request.legal_basis),
            source_system=str(request.source_system),
            method=str(request.method),
            notice_version=request.evidence.notice_version,
            notice_hash=request.evidence.notice_hash,
            capture_method=request.evidence.capture_method,
            request_origin=request.evidence.request_origin,
            evidence_detail=request.evidence.detail,
            lead_id=lead_id,
            email=request.email,
            email_digest=request.email_digest,
            occurred_at=request.occurred_at,
            idempotency_key=request.idempotency_key,
        )

    def attributes(self) -> dict[str, Any]:
        """The change's attributes by name, as an event of it is triggered with."""
        return {f.name: getattr(self, f.name) for f in fields(RecordedChange)}

    @property
    def evidence(self) -> Evidence:
        return Evidence(
            notice_version=self.notice_version,
            notice_hash=self.notice_hash,
            capture_method=self.capture_method,
            request_origin=self.request_origin,
            detail=self.evidence_detail,
        )


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
        self._record(
            self.Granted,
            RecordedChange.of(change_id, self.lead_id, request),
            recorded_at,
        )
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
        self._record(
            self.Withdrawn,
            RecordedChange.of(change_id, self.lead_id, request),
            recorded_at,
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
            self._record(
                self.Withdrawn,
                RecordedChange.of(change_id, self.lead_id, request),
                recorded_at,
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

    class Granted(RecordedChange, Aggregate.Event):
        """An opt-in was recorded, or a double opt-in requested."""

        def apply(self, aggregate: Consent) -> None:
            aggregate._append_change(ChangeKind.GRANTED, self, self.timestamp)

    class Withdrawn(RecordedChange, Aggregate.Event):
        """An opt-out was recorded: of one purpose, a scope, or by a GPC signal."""

        def apply(self, aggregate: Consent) -> None:
            aggregate._append_change(ChangeKind.WITHDRAWN, self, self.timestamp)

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

    def _record(
        self,
        event_class: type[Consent.Granted | Consent.Withdrawn],
        change: RecordedChange,
        recorded_at: datetime | None,
    ) -> None:
        self.trigger_event(event_class, timestamp=recorded_at, **change.attributes())

    def _append_change(
        self, kind: ChangeKind, change: RecordedChange, recorded_at: datetime
    ) -> None:
        self.changes.append(
            ConsentChange(
                change_id=change.change_id,
                kind=kind,
                subject_aggregate_id=self.id,
                lead_id=change.lead_id,
                email=change.email,
                email_digest=change.email_digest,
                purpose=change.purpose,
                channel=change.channel,
                legal_basis=change.legal_basis,
                source_system=change.source_system,
                method=change.method,
                evidence=change.evidence,
                occurred_at=change.occurred_at,
                recorded_at=recorded_at,
                sequence=self.version + 1,  # apply() runs before the version moves
            )
        )
        self._remember(change.change_id, change.idempotency_key, change.email_digest)

    def _remember(
        self, change_id: uuid.UUID, idempotency_key: str, email_digest: str
    ) -> None:
        if idempotency_key:
            self.change_keys.setdefault(idempotency_key, []).append(change_id)
        if email_digest and email_digest not in self.email_digests:
            self.email_digests.append(email_digest)
        self.changed_since_erasure = True
