"""The lead context's aggregates: visitors, leads and the lead lifecycle rules."""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from closedloop.errors import FailedPrecondition, InvalidArgument

NAMESPACE = uuid.UUID("0b6c2f0e-8e0f-4c8f-a7a8-6a0a3d2b9e51")

#: Identifier values that identify nobody and are refused for stitching (Segment's
#: rule): a shared kiosk must not merge a hundred people into one.
_JUNK_IDS = frozenset(
    {"null", "undefined", "anonymous", "none", "nil", "nan", "unknown"}
)
_ZEROS_OR_DASHES = re.compile(r"^[0-]*$")


class Stage(StrEnum):
    LEAD = "lead"
    MQL = "mql"
    SAL = "sal"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"
    MERGED = "merged"


class DisqualificationReason(StrEnum):
    BAD_FIT = "bad_fit"
    NO_BUDGET = "no_budget"
    COMPETITOR = "competitor"
    DUPLICATE = "duplicate"
    SPAM = "spam"
    NO_RESPONSE = "no_response"
    OTHER = "other"


def is_stitchable(anonymous_id: str) -> bool:
    value = anonymous_id.strip().lower()
    return (
        bool(value)
        and value not in _JUNK_IDS
        and value != "-1"
        and not (_ZEROS_OR_DASHES.match(value))
    )


def check_stitchable(field_name: str, anonymous_id: str) -> None:
    if not is_stitchable(anonymous_id):
        raise InvalidArgument(field_name, "identifies nobody and cannot be stitched")


@functools.lru_cache(maxsize=65_536)
def visitor_id(anonymous_id: str) -> uuid.UUID:
    """Cached: every touchpoint of a visitor asks again, and uuid5 is not cheap."""
    return uuid.uuid5(NAMESPACE, f"visitor:{anonymous_id}")


def email_claim_id(email_digest: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"email:{email_digest}")


@dataclass(frozen=True)
class Touchpoint:
    touchpoint_id: uuid.UUID
    channel: str
    source: str
    medium: str
    campaign: str
    content: str
    interaction: str
    occurred_at: datetime
    attributes: dict[str, str]
    anonymous_id: str = ""
    lead_id: uuid.UUID | None = None
    #: Recording order within its owner, to order equal business times.
    sequence: int = 0


@dataclass(frozen=True)
class TouchpointRequest:
    """What a caller asked to record; the owner turns it into a Touchpoint."""

    touchpoint_id: uuid.UUID
    channel: str
    source: str
    medium: str
    campaign: str
    content: str
    interaction: str
    occurred_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""


class TouchpointOwner(Aggregate):
    """Visitors and leads both collect touchpoints, once per idempotency key."""

    if TYPE_CHECKING:  # event classes made by eventsourcing's @event, named for mypy
        TouchpointRecorded: ClassVar[type[Any]]

    def _init_touchpoints(self) -> None:
        self.touchpoints: list[Touchpoint] = []
        self.touchpoint_keys: dict[str, uuid.UUID] = {}

    def record_touchpoint(self, request: TouchpointRequest) -> tuple[uuid.UUID, bool]:
        """Returns the touchpoint id and whether it was new."""
        if request.idempotency_key and request.idempotency_key in self.touchpoint_keys:
            return self.touchpoint_keys[request.idempotency_key], False
        self._touchpoint_recorded(
            touchpoint_id=request.touchpoint_id,
            channel=request.channel,
            source=request.source,
            medium=request.medium,
            campaign=request.campaign,
            content=request.content,
            interaction=request.interaction,
            occurred_at=request.occurred_at,
            attributes=dict(request.attributes),
            idempotency_key=request.idempotency_key,
            anonymous_id=self._anonymous_id_for_touchpoints(),
            lead_id=self._lead_id_for_touchpoints(),
        )
        return request.touchpoint_id, True

    @event("TouchpointRecorded")
    def _touchpoint_recorded(
        self,
        touchpoint_id: uuid.UUID,
        channel: str,
        source: str,
        medium: str,
        campaign: str,
        content: str,
        interaction: str,
        occurred_at: datetime,
        attributes: dict[str, str],
        idempotency_key: str,
        anonymous_id: str,
        lead_id: uuid.UUID | None,
    ) -> None:
        self.touchpoints.append(
            Touchpoint(
                touchpoint_id=touchpoint_id,
                channel=channel,
                source=source,
                medium=medium,
                campaign=campaign,
                content=content,
                interaction=interaction,
                occurred_at=occurred_at,
                attributes=attributes,
                anonymous_id=anonymous_id,
                lead_id=lead_id,
                sequence=len(self.touchpoints),
            )
        )
        if idempotency_key:
            self.touchpoint_keys[idempotency_key] = touchpoint_id

    def _anonymous_id_for_touchpoints(self) -> str:
        return ""

    def _lead_id_for_touchpoints(self) -> uuid.UUID | None:
        return None


class Visitor(TouchpointOwner):
    """An anonymous browser or device, known by the id a tracker gave it."""

    if TYPE_CHECKING:
        FirstSeen: ClassVar[type[Any]]

    @staticmethod
    def create_id(anonymous_id: str, occurred_at: datetime) -> uuid.UUID:  # noqa: ARG004
        return visitor_id(anonymous_id)

    @event("FirstSeen")
    def __init__(self, anonymous_id: str, occurred_at: datetime) -> None:
        self.anonymous_id = anonymous_id
        self.first_seen_at = occurred_at
        self._init_touchpoints()

    def _anonymous_id_for_touchpoints(self) -> str:
        return self.anonymous_id


class Lead(TouchpointOwner):
    """A person who left contact details, and where they stand in the funnel."""

    if TYPE_CHECKING:
        Captured: ClassVar[type[Any]]
        VisitorIdentified: ClassVar[type[Any]]
        Qualified: ClassVar[type[Any]]
        Accepted: ClassVar[type[Any]]
        Disqualified: ClassVar[type[Any]]
        Reopened: ClassVar[type[Any]]
        DuplicateMerged: ClassVar[type[Any]]
        MergedInto: ClassVar[type[Any]]
        Converted: ClassVar[type[Any]]
        PersonalDataErased: ClassVar[type[Any]]

    @event("Captured")
    def __init__(
        self,
        email: str,
        name: str,
        company: str,
        source_system: str,
        anonymous_id: str,
        occurred_at: datetime,
        idempotency_key: str = "",
        email_digest: str = "",
    ) -> None:
        self.email = email
        self.email_digest = email_digest
        self.name = name
        self.company = company
        self.source_system = source_system
        self.created_at = occurred_at
        self.capture_key = idempotency_key
        self.stage = Stage.LEAD
        self.stage_changed_at = occurred_at
        self.score = 0
        self.qualification_reason = ""
        self.owner = ""
        self.disqualification_reason = ""
        self.disqualification_detail = ""
        self.anonymous_ids: list[str] = []
        self.merged_lead_ids: list[uuid.UUID] = []
        self.merged_into: uuid.UUID | None = None
        self.deal_ids: list[uuid.UUID] = []
        self.erased = False
        self._init_touchpoints()

    def _lead_id_for_touchpoints(self) -> uuid.UUID | None:
        return self.id

    def record_touchpoint(self, request: TouchpointRequest) -> tuple[uuid.UUID, bool]:
        # A merged lead takes no more touchpoints: its survivor does.
        self.check_active()
        return super().record_touchpoint(request)

    # -- identification ---------------------------------------------------------------

    def identify_visitor(self, anonymous_id: str, occurred_at: datetime) -> bool:
        """Links a visitor's touchpoints to this lead; False if linked already."""
        self.check_active()
        check_stitchable("anonymous_id", anonymous_id)
        if anonymous_id in self.anonymous_ids:
            return False
        self._visitor_identified(anonymous_id=anonymous_id, occurred_at=occurred_at)
        return True

    @event("VisitorIdentified")
    def _visitor_identified(self, anonymous_id: str, occurred_at: datetime) -> None:
        self.anonymous_ids.append(anonymous_id)

    # -- lifecycle --------------------------------------------------------------------

    def check_active(self) -> None:
        if self.merged_into is not None:
            raise FailedPrecondition(
                f"lead {self.id} was merged into lead {self.merged_into}; use that one"
            )

    def qualify(
        self, score: int, reason: str, actor: str, occurred_at: datetime
    ) -> None:
        self.check_active()
        if self.stage is not Stage.LEAD:
            raise FailedPrecondition(
                f"only a lead in stage 'lead' can become an MQL, not '{self.stage}'"
            )
        self._qualified(
            score=score, reason=reason, actor=actor, occurred_at=occurred_at
        )

    @event("Qualified")
    def _qualified(
        self, score: int, reason: str, actor: str, occurred_at: datetime
    ) -> None:
        self.stage = Stage.MQL
        self.stage_changed_at = occurred_at
        self.score = score
        self.qualification_reason = reason

    def accept(
        self, owner: str, skip_qualification: bool, actor: str, occurred_at: datetime
    ) -> None:
        self.check_active()
        if self.stage is Stage.LEAD and not skip_qualification:
            raise FailedPrecondition(
                "the lead is not an MQL; set skip_qualification to accept it anyway"
            )
        if self.stage not in {Stage.LEAD, Stage.MQL}:
            raise FailedPrecondition(
                f"a lead in stage '{self.stage}' cannot be accepted"
            )
        self._accepted(
            owner=owner,
            skipped_qualification=self.stage is Stage.LEAD,
            actor=actor,
            occurred_at=occurred_at,
        )

    @event("Accepted")
    def _accepted(
        self, owner: str, skipped_qualification: bool, actor: str, occurred_at: datetime
    ) -> None:
        self.stage = Stage.SAL
        self.stage_changed_at = occurred_at
        self.owner = owner

    def disqualify(
        self, reason: str, detail: str, actor: str, occurred_at: datetime
    ) -> None:
        self.check_active()
        if self.stage not in {Stage.LEAD, Stage.MQL, Stage.SAL}:
            raise FailedPrecondition(
                f"a lead in stage '{self.stage}' cannot be disqualified"
            )
        self._disqualified(
            reason=reason, detail=detail, actor=actor, occurred_at=occurred_at
        )

    @event("Disqualified")
    def _disqualified(
        self, reason: str, detail: str, actor: str, occurred_at: datetime
    ) -> None:
        self.stage = Stage.DISQUALIFIED
        self.stage_changed_at = occurred_at
        self.disqualification_reason = reason
        self.disqualification_detail = detail

    def reopen(self, reason: str, actor: str, occurred_at: datetime) -> None:
        self.check_active()
        if self.stage is not Stage.DISQUALIFIED:
            raise FailedPrecondition("only a disqualified lead can be reopened")
        self._reopened(reason=reason, actor=actor, occurred_at=occurred_at)

    @event("Reopened")
    def _reopened(self, reason: str, actor: str, occurred_at: datetime) -> None:
        self.stage = Stage.LEAD
        self.stage_changed_at = occurred_at
        self.disqualification_reason = ""
        self.disqualification_detail = ""

    # -- merging ----------------------------------------------------------------------

    def merge(self, duplicate: Lead, actor: str, occurred_at: datetime) -> None:
        """Takes a duplicate's whole history; the duplicate points here afterwards."""
        if duplicate.id == self.id:
            raise InvalidArgument(
                "merged_lead_id", "a lead cannot be merged into itself"
            )
        self.check_active()
        duplicate.check_active()
        self._duplicate_merged(
            merged_lead_id=duplicate.id, actor=actor, occurred_at=occurred_at
        )
        duplicate._merged_into(surviving_lead_id=self.id, occurred_at=occurred_at)

    @event("DuplicateMerged")
    def _duplicate_merged(
        self, merged_lead_id: uuid.UUID, actor: str, occurred_at: datetime
    ) -> None:
        self.merged_lead_ids.append(merged_lead_id)

    @event("MergedInto")
    def _merged_into(self, surviving_lead_id: uuid.UUID, occurred_at: datetime) -> None:
        self.merged_into = surviving_lead_id
        self.stage = Stage.MERGED
        self.stage_changed_at = occurred_at

    # -- conversion and erasure (learned from the deal and consent contexts) ----------

    def convert(self, deal_id: uuid.UUID, occurred_at: datetime) -> bool:
        """A deal was opened for this lead; False if this deal was known already."""
        if deal_id in self.deal_ids:
            return False
        self._converted(deal_id=deal_id, occurred_at=occurred_at)
        return True

    @event("Converted")
    def _converted(self, deal_id: uuid.UUID, occurred_at: datetime) -> None:
        self.deal_ids.append(deal_id)
        if self.stage in {Stage.LEAD, Stage.MQL, Stage.SAL, Stage.DISQUALIFIED}:
            self.stage = Stage.OPPORTUNITY
            self.stage_changed_at = occurred_at

    def erase_personal_data(self, occurred_at: datetime) -> bool:
        """Records that the person's data was shredded; False if it was already."""
        if self.erased:
            return False
        self._personal_data_erased(occurred_at=occurred_at)
        return True

    @event("PersonalDataErased")
    def _personal_data_erased(self, occurred_at: datetime) -> None:
        self.erased = True
        self.email = ""
        self.name = ""
        self.qualification_reason = ""
        self.disqualification_detail = ""


class EmailClaim(Aggregate):
    """Which lead owns an email address: keyed by a keyed hash, never by the address."""

    if TYPE_CHECKING:
        Claimed: ClassVar[type[Any]]
        Reassigned: ClassVar[type[Any]]
        Released: ClassVar[type[Any]]

    @staticmethod
    def create_id(email_digest: str, lead_id: uuid.UUID) -> uuid.UUID:  # noqa: ARG004
        return email_claim_id(email_digest)

    @event("Claimed")
    def __init__(self, email_digest: str, lead_id: uuid.UUID) -> None:
        self.lead_id: uuid.UUID | None = lead_id

    def release(self) -> None:
        """The lead was erased: a later capture of this address starts a new lead."""
        if self.lead_id is not None:
            self._released()

    @event("Released")
    def _released(self) -> None:
        self.lead_id = None

    def reassign(self, lead_id: uuid.UUID) -> None:
        if lead_id != self.lead_id:
            self._reassigned(lead_id=lead_id)

    @event("Reassigned")
    def _reassigned(self, lead_id: uuid.UUID) -> None:
        self.lead_id = lead_id


def journey_order(touchpoint: Touchpoint) -> tuple[datetime, int, str]:
    return (touchpoint.occurred_at, touchpoint.sequence, str(touchpoint.touchpoint_id))
