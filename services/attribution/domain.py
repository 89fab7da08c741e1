"""The attribution context's aggregates: journeys, deals, their credits, models, spend.

Each aggregate id is derived from the ids of the facts it follows (ids.py), so an
event delivered twice finds the aggregate it made the first time and records nothing
new.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from closedloop.money import Money
from services.attribution.ids import (
    channel_model_id,
    conversion_id,
    deal_record_id,
    lead_journey_id,
    spend_id_for,
    spend_ledger_id,
    visitor_journey_id,
)
from services.attribution.models import Conversion, Credit, Touch
from services.attribution.rules import check_channel, check_period, check_spend_amount

#: The conversion id of a deal's win; recognised revenue uses the revenue id.
WON = "won"
#: Why a fallback happened: the model had no weight for any channel of the journey.
FALLBACK_LINEAR = "linear"


class ConversionKind(StrEnum):
    WON = "won"
    REVENUE_RECOGNIZED = "revenue_recognized"


class DealOutcome(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


# -- rules ----------------------------------------------------------------------------


def check_credits(amount: int, lines: tuple[Credit, ...]) -> None:
    """The invariant of every conversion: the credits sum exactly to its amount."""
    total = sum(c.amount_minor for c in lines)
    if not lines or total != amount:
        msg = f"credits sum to {total}, not to the conversion's {amount}"
        raise ValueError(msg)


# -- journeys -------------------------------------------------------------------------


class PersonJourney(Aggregate):
    """The touches of one visitor or one lead, and what became of the lead.

    Kept from the lead stream so that training sees every journey, those that never
    reached a deal included. A person is put together at training time from a lead,
    its visitors and the leads merged into it, as the lead context does for
    GetJourney. Anonymous ids are kept only as `visitor_key` hashes.
    """

    if TYPE_CHECKING:  # event classes made by eventsourcing's @event, named for mypy
        Started: ClassVar[type[Any]]
        TouchRecorded: ClassVar[type[Any]]
        Captured: ClassVar[type[Any]]
        VisitorLinked: ClassVar[type[Any]]
        LeadMerged: ClassVar[type[Any]]
        Disqualified: ClassVar[type[Any]]
        Reopened: ClassVar[type[Any]]

    LEAD: ClassVar[str] = "lead"
    VISITOR: ClassVar[str] = "visitor"

    @staticmethod
    def create_id(kind: str, ref: uuid.UUID) -> uuid.UUID:
        if kind == PersonJourney.LEAD:
            return lead_journey_id(ref)
        return visitor_journey_id(ref)

    @classmethod
    def for_lead(cls, lead_id: uuid.UUID) -> PersonJourney:
        return cls(kind=cls.LEAD, ref=lead_id)

    @classmethod
    def for_visitor(cls, key: uuid.UUID) -> PersonJourney:
        return cls(kind=cls.VISITOR, ref=key)

    @event("Started")
    def __init__(self, kind: str, ref: uuid.UUID) -> None:
        self.kind = kind
        #: The lead id, or the visitor key.
        self.ref = ref
        #: (occurred_at, recording order, touchpoint id, channel), in recording order.
        self.touches: list[tuple[datetime, int, str, str]] = []
        self.touch_ids: set[str] = set()
        self.captured_at: datetime | None = None
        self.visitor_ids: list[uuid.UUID] = []
        self.merged_lead_ids: list[uuid.UUID] = []
        self.disqualified_at: datetime | None = None
        self.handled_events: set[str] = set()

    @property
    def is_lead(self) -> bool:
        return self.kind == self.LEAD

    def record_touch(
        self, touchpoint_id: str, channel: str, occurred_at: datetime
    ) -> bool:
        """False when the touch is known already (a redelivered event)."""
        if touchpoint_id in self.touch_ids:
            return False
        self._touch_recorded(
            touchpoint_id=touchpoint_id, channel=channel, occurred_at=occurred_at
        )
        return True

    @event("TouchRecorded")
    def _touch_recorded(
        self, touchpoint_id: str, channel: str, occurred_at: datetime
    ) -> None:
        self.touches.append((occurred_at, len(self.touches), touchpoint_id, channel))
        self.touch_ids.add(touchpoint_id)

    def capture(self, occurred_at: datetime) -> bool:
        if self.captured_at is not None:
            return False
        self._captured(occurred_at=occurred_at)
        return True

    @event("Captured")
    def _captured(self, occurred_at: datetime) -> None:
        self.captured_at = occurred_at

    def link_visitor(self, visitor_id: uuid.UUID) -> bool:
        if visitor_id in self.visitor_ids:
            return False
        self._visitor_linked(visitor_id=visitor_id)
        return True

    @event("VisitorLinked")
    def _visitor_linked(self, visitor_id: uuid.UUID) -> None:
        self.visitor_ids.append(visitor_id)

    def absorb(self, merged_lead_id: uuid.UUID) -> bool:
        if merged_lead_id in self.merged_lead_ids or merged_lead_id == self.ref:
            return False
        self._lead_merged(merged_lead_id=merged_lead_id)
        return True

    @event("LeadMerged")
    def _lead_merged(self, merged_lead_id: uuid.UUID) -> None:
        self.merged_lead_ids.append(merged_lead_id)

    def disqualify(self, occurred_at: datetime, source_event_id: str) -> bool:
        """Once per lead event: a redelivered one changes nothing."""
        if source_event_id in self.handled_events:
            return False
        self._disqualified(occurred_at=occurred_at, source_event_id=source_event_id)
        return True

    @event("Disqualified")
    def _disqualified(self, occurred_at: datetime, source_event_id: str) -> None:
        self.disqualified_at = occurred_at
        self.handled_events.add(source_event_id)

    def reopen(self, occurred_at: datetime, source_event_id: str) -> bool:
        if source_event_id in self.handled_events:
            return False
        self._reopened(occurred_at=occurred_at, source_event_id=source_event_id)
        return True

    @event("Reopened")
    def _reopened(self, occurred_at: datetime, source_event_id: str) -> None:
        self.disqualified_at = None
        self.handled_events.add(source_event_id)


# -- deals and their conversions ------------------------------------------------------


@dataclass(frozen=True)
class WinSnapshot:
    """A won deal's journey as it stood at the win, with the weights it was credited by.

    Revenue recognised later is credited with exactly these (DOMAIN.md 4.1): the
    customer was acquired by this journey. `channel_weights` holds, per data-driven
    model, the trained weights used; a model missing there had not been trained,
    and its credits fell back to linear.
    """

    amount: Money
    won_at: datetime
    opened_at: datetime
    lead_created_at: datetime
    touches: tuple[Touch, ...]
    channel_weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def conversion(self) -> Conversion:
        return Conversion(
            amount_minor=self.amount.minor_units,
            currency=self.amount.currency,
            converted_at=self.won_at,
            lead_created_at=self.lead_created_at,
            opportunity_created_at=self.opened_at,
            won_at=self.won_at,
        )


class DealRecord(Aggregate):
    """What attribution knows of a deal: its lead, opening, outcome and conversions."""

    if TYPE_CHECKING:
        Started: ClassVar[type[Any]]
        Opened: ClassVar[type[Any]]
        Won: ClassVar[type[Any]]
        Lost: ClassVar[type[Any]]
        ConversionAdded: ClassVar[type[Any]]

    @staticmethod
    def create_id(deal_id: uuid.UUID, lead_id: uuid.UUID) -> uuid.UUID:  # noqa: ARG004
        return deal_record_id(deal_id)

    @event("Started")
    def __init__(self, deal_id: uuid.UUID, lead_id: uuid.UUID) -> None:
        self.deal_id = deal_id
        self.lead_id = lead_id
        self.opened_at: datetime | None = None
        self.opening_amount: Money | None = None
        self.outcome = DealOutcome.OPEN
        self.closed_at: datetime | None = None
        self.won: WinSnapshot | None = None
        self.conversions: list[str] = []

    def open(self, opened_at: datetime, amount: Money) -> bool:
        if self.opened_at is not None:
            return False
        self._opened(opened_at=opened_at, amount=amount)
        return True

    @event("Opened")
    def _opened(self, opened_at: datetime, amount: Money) -> None:
        self.opened_at = opened_at
        self.opening_amount = amount

    def win(self, snapshot: WinSnapshot) -> bool:
        if self.won is not None:
            return False
        self._won(
            amount=snapshot.amount,
            won_at=snapshot.won_at,
            opened_at=snapshot.opened_at,
            lead_created_at=snapshot.lead_created_at,
            touches=list(snapshot.touches),
            channel_weights={
                model: dict(weights)
                for model, weights in snapshot.channel_weights.items()
            },
        )
        return True

    @event("Won")
    def _won(
        self,
        amount: Money,
        won_at: datetime,
        opened_at: datetime,
        lead_created_at: datetime,
        touches: list[Touch],
        channel_weights: dict[str, dict[str, float]],
    ) -> None:
        self.won = WinSnapshot(
            amount=amount,
            won_at=won_at,
            opened_at=opened_at,
            lead_created_at=lead_created_at,
            touches=tuple(touches),
            channel_weights={m: dict(w) for m, w in channel_weights.items()},
        )
        self.outcome = DealOutcome.WON
        self.closed_at = won_at

    def lose(self, occurred_at: datetime) -> bool:
        if self.outcome is not DealOutcome.OPEN:
            return False
        self._lost(occurred_at=occurred_at)
        return True

    @event("Lost")
    def _lost(self, occurred_at: datetime) -> None:
        self.outcome = DealOutcome.LOST
        self.closed_at = occurred_at

    def add_conversion(self, conversion: str) -> bool:
        if conversion in self.conversions:
            return False
        self._conversion_added(conversion=conversion)
        return True

    @event("ConversionAdded")
    def _conversion_added(self, conversion: str) -> None:
        self.conversions.append(conversion)


@dataclass(frozen=True)
class ModelCredits:
    """One conversion credited under one model, as it was published."""

    model: str
    model_key: str
    credits: tuple[Credit, ...]
    fallback: str


class ConversionCredits(Aggregate):
    """The credits of one conversion of a deal (its win, or one recognised revenue).

    One `Attributed` event per model; each is published as RevenueAttributed, so it
    carries every field of that message.
    """

    if TYPE_CHECKING:
        Started: ClassVar[type[Any]]
        Attributed: ClassVar[type[Any]]

    @staticmethod
    def create_id(
        deal_id: uuid.UUID,
        lead_id: uuid.UUID,  # noqa: ARG004
        conversion: str,
        kind: str,  # noqa: ARG004
        revenue_kind: str,  # noqa: ARG004
        amount: Money,  # noqa: ARG004
        occurred_at: datetime,  # noqa: ARG004
    ) -> uuid.UUID:
        return conversion_id(deal_id, conversion)

    @event("Started")
    def __init__(
        self,
        deal_id: uuid.UUID,
        lead_id: uuid.UUID,
        conversion: str,
        kind: str,
        revenue_kind: str,
        amount: Money,
        occurred_at: datetime,
    ) -> None:
        self.deal_id = deal_id
        self.lead_id = lead_id
        self.conversion = conversion
        self.kind = ConversionKind(kind)
        self.revenue_kind = revenue_kind
        self.amount = amount
        self.occurred_at = occurred_at
        self.credited: dict[str, ModelCredits] = {}

    @property
    def revenue_id(self) -> str:
        return "" if self.kind is ConversionKind.WON else self.conversion

    def attribute(
        self, model: str, model_key: str, lines: tuple[Credit, ...], fallback: str
    ) -> bool:
        """False when the model was credited already: a conversion credits once."""
        if model in self.credited:
            return False
        check_credits(self.amount.minor_units, lines)
        self._attributed(
            deal_id=self.deal_id,
            lead_id=self.lead_id,
            kind=str(self.kind),
            revenue_id=self.revenue_id,
            revenue_kind=self.revenue_kind,
            amount=self.amount,
            occurred_at=self.occurred_at,
            model=model,
            model_key=model_key,
            credit_lines=list(lines),
            fallback=fallback,
        )
        return True

    @event("Attributed")
    def _attributed(
        self,
        deal_id: uuid.UUID,
        lead_id: uuid.UUID,
        kind: str,
        revenue_id: str,
        revenue_kind: str,
        amount: Money,
        occurred_at: datetime,
        model: str,
        model_key: str,
        credit_lines: list[Credit],
        fallback: str,
    ) -> None:
        self.credited[model] = ModelCredits(
            model, model_key, tuple(credit_lines), fallback
        )


# -- trained models -------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelWeight:
    """A channel in a trained model: its weight (removal effect or Shapley value)."""

    channel: str
    weight: float
    share: float
    conversions: float
    value: float
    standard_error: float = 0.0


@dataclass(frozen=True)
class TrainedModel:
    model: str
    model_key: str
    journeys: int
    converting_journeys: int
    probability: float
    channels: tuple[ChannelWeight, ...]
    trained_at: datetime
    standard_error: float = 0.0
    value_currency: str = ""

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each channel, as conversions are credited with it."""
        return {c.channel: c.weight for c in self.channels}


class ChannelModel(Aggregate):
    """The training history of one data-driven model; the latest one is used."""

    if TYPE_CHECKING:
        Started: ClassVar[type[Any]]
        Trained: ClassVar[type[Any]]

    @staticmethod
    def create_id(model: str) -> uuid.UUID:
        return channel_model_id(model)

    @event("Started")
    def __init__(self, model: str) -> None:
        self.model = model
        self.latest: TrainedModel | None = None
        self.trainings = 0

    def train(self, result: TrainedModel) -> None:
        if result.model != self.model:
            msg = f"a {result.model} result does not train {self.model}"
            raise ValueError(msg)
        self._trained(
            model=result.model,
            model_key=result.model_key,
            journeys=result.journeys,
            converting_journeys=result.converting_journeys,
            probability=result.probability,
            channels=list(result.channels),
            trained_at=result.trained_at,
            standard_error=result.standard_error,
            value_currency=result.value_currency,
        )

    @event("Trained")
    def _trained(
        self,
        model: str,
        model_key: str,
        journeys: int,
        converting_journeys: int,
        probability: float,
        channels: list[ChannelWeight],
        trained_at: datetime,
        standard_error: float,
        value_currency: str,
    ) -> None:
        self.latest = TrainedModel(
            model=model,
            model_key=model_key,
            journeys=journeys,
            converting_journeys=converting_journeys,
            probability=probability,
            channels=tuple(channels),
            trained_at=trained_at,
            standard_error=standard_error,
            value_currency=value_currency,
        )
        self.trainings += 1


# -- spend ----------------------------------------------------------------------------


class Spend(Aggregate):
    """Money spent on a channel (and campaign) over a period: ROI and CAC use it."""

    if TYPE_CHECKING:
        Recorded: ClassVar[type[Any]]

    @staticmethod
    def create_id(
        channel: str,  # noqa: ARG004
        campaign: str,  # noqa: ARG004
        amount: Money,  # noqa: ARG004
        period_start: datetime,  # noqa: ARG004
        period_end: datetime,  # noqa: ARG004
        occurred_at: datetime,  # noqa: ARG004
        idempotency_key: str = "",
    ) -> uuid.UUID:
        if idempotency_key:
            return spend_id_for(idempotency_key)
        return uuid.uuid4()

    @classmethod
    def record(
        cls,
        channel: str,
        campaign: str,
        amount: Money,
        period_start: datetime,
        period_end: datetime,
        occurred_at: datetime,
        idempotency_key: str = "",
    ) -> Spend:
        check_channel("channel", channel)
        check_spend_amount("amount", amount)
        check_period(period_start, period_end)
        return cls(
            channel=channel,
            campaign=campaign,
            amount=amount,
            period_start=period_start,
            period_end=period_end,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
        )

    @event("Recorded")
    def __init__(
        self,
        channel: str,
        campaign: str,
        amount: Money,
        period_start: datetime,
        period_end: datetime,
        occurred_at: datetime,
        idempotency_key: str = "",
    ) -> None:
        self.channel = channel
        self.campaign = campaign
        self.amount = amount
        self.period_start = period_start
        self.period_end = period_end
        self.occurred_at = occurred_at
        self.idempotency_key = idempotency_key

    def overlaps(self, start: datetime | None, end: datetime | None) -> bool:
        """Whether [period_start, period_end) meets [start, end); None is open-ended."""
        return (end is None or self.period_start < end) and (
            start is None or self.period_end > start
        )


class SpendLedger(Aggregate):
    """The spend ids of one channel, so listing needs no query over the store."""

    if TYPE_CHECKING:
        Started: ClassVar[type[Any]]
        SpendAdded: ClassVar[type[Any]]

    @staticmethod
    def create_id(channel: str) -> uuid.UUID:
        return spend_ledger_id(channel)

    @event("Started")
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.spend_ids: list[uuid.UUID] = []

    def add(self, spend_id: uuid.UUID) -> None:
        if spend_id not in self.spend_ids:
            self._spend_added(spend_id=spend_id)

    @event("SpendAdded")
    def _spend_added(self, spend_id: uuid.UUID) -> None:
        self.spend_ids.append(spend_id)
