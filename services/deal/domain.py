"""The deal context's aggregates: deals, their stages, amounts, outcome and revenue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from closedloop.errors import FailedPrecondition, InvalidArgument, NotFound
from closedloop.money import Money, check_currency

NAMESPACE = uuid.UUID("6d2f4a7c-1b3e-4f58-9a0c-5e7d8b2c4f61")


class DealStage(StrEnum):
    DISCOVERY = "discovery"
    QUALIFICATION = "qualification"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"


#: The stages ChangeDealStage may set; won and lost only WinDeal and LoseDeal reach.
OPEN_STAGES = frozenset(
    {
        DealStage.DISCOVERY,
        DealStage.QUALIFICATION,
        DealStage.PROPOSAL,
        DealStage.NEGOTIATION,
    }
)


class LossReason(StrEnum):
    PRICE = "price"
    COMPETITOR = "competitor"
    NO_DECISION = "no_decision"
    TIMING = "timing"
    FIT = "fit"
    OTHER = "other"


class RevenueKind(StrEnum):
    NEW = "new"
    RENEWAL = "renewal"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"


#: Kinds whose amount is negative: the revenue a customer took away.
NEGATIVE_KINDS = frozenset({RevenueKind.CONTRACTION, RevenueKind.CHURN})

#: Lead stages (closedloop.lead.v1.LeadStage, lower case) that refuse a new deal.
LEAD_DISQUALIFIED = "disqualified"
LEAD_MERGED = "merged"


def deal_id_for(lead_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """The deal a key opens: the same key for the same lead gives the same deal."""
    return uuid.uuid5(lead_id, f"deal:{idempotency_key}")


def revenue_id_for(deal_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(deal_id, f"revenue:{idempotency_key}")


def lead_deals_id(lead_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"lead-deals:{lead_id}")


# -- the lead a deal is opened for ------------------------------------------------


@dataclass(frozen=True)
class LeadStanding:
    """What the lead context says about a lead, as far as opening a deal goes."""

    lead_id: uuid.UUID
    #: The lead's lifecycle stage, e.g. "lead", "mql", "sal", "disqualified", "merged".
    stage: str
    merged_into: uuid.UUID | None = None


def check_convertible(lead_id: uuid.UUID, standing: LeadStanding | None) -> None:
    """A deal may be opened for a lead that exists, is not disqualified nor merged."""
    if standing is None:
        raise NotFound(f"lead_id: lead {lead_id} does not exist")
    if standing.merged_into is not None or standing.stage == LEAD_MERGED:
        raise FailedPrecondition(
            f"lead {lead_id} was merged into lead {standing.merged_into}; "
            "open the deal for that lead"
        )
    if standing.stage == LEAD_DISQUALIFIED:
        raise FailedPrecondition(
            f"lead {lead_id} is disqualified; reopen it before opening a deal"
        )


def check_open_stage(stage: str) -> DealStage:
    """ChangeDealStage moves between the open stages; closing has its own commands."""
    if stage not in OPEN_STAGES:
        raise InvalidArgument(
            "stage",
            "must be discovery, qualification, proposal or negotiation; "
            "use WinDeal and LoseDeal to close a deal",
        )
    return DealStage(stage)


# -- money rules ------------------------------------------------------------------


def check_amount(field: str, amount: Money) -> Money:
    """A deal amount: a known currency, and never negative (zero is allowed)."""
    currency = check_currency(f"{field}.currency", amount.currency)
    if amount.minor_units < 0:
        raise InvalidArgument(f"{field}.minor_units", "must not be negative")
    return Money(amount.minor_units, currency)


def check_revenue_amount(field: str, amount: Money, kind: str) -> Money:
    """New, renewal and expansion are positive; contraction and churn negative."""
    currency = check_currency(f"{field}.currency", amount.currency)
    if kind in NEGATIVE_KINDS:
        if amount.minor_units >= 0:
            raise InvalidArgument(
                f"{field}.minor_units", f"must be negative for {kind} revenue"
            )
    elif amount.minor_units <= 0:
        raise InvalidArgument(
            f"{field}.minor_units", f"must be positive for {kind} revenue"
        )
    return Money(amount.minor_units, currency)


@dataclass(frozen=True)
class Revenue:
    revenue_id: uuid.UUID
    amount: Money
    kind: str
    recognized_at: datetime


class Deal(Aggregate):
    """An opportunity opened from a lead: its stage, amount, outcome and revenue."""

    if TYPE_CHECKING:  # event classes made by eventsourcing's @event, named for mypy
        Opened: ClassVar[type[Any]]
        StageChanged: ClassVar[type[Any]]
        AmountUpdated: ClassVar[type[Any]]
        Won: ClassVar[type[Any]]
        Lost: ClassVar[type[Any]]
        RevenueRecognized: ClassVar[type[Any]]
        PersonalDataErased: ClassVar[type[Any]]

    @staticmethod
    def create_id(lead_id: uuid.UUID, idempotency_key: str = "") -> uuid.UUID:
        if idempotency_key:
            return deal_id_for(lead_id, idempotency_key)
        return uuid.uuid4()

    @classmethod
    def open(
        cls,
        lead_id: uuid.UUID,
        name: str,
        amount: Money,
        expected_close_at: datetime | None,
        occurred_at: datetime,
        idempotency_key: str = "",
    ) -> Deal:
        return cls(
            lead_id=lead_id,
            name=name,
            amount=check_amount("amount", amount),
            expected_close_at=expected_close_at,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
        )

    @event("Opened")
    def __init__(
        self,
        lead_id: uuid.UUID,
        name: str,
        amount: Money,
        expected_close_at: datetime | None,
        occurred_at: datetime,
        idempotency_key: str = "",
    ) -> None:
        self.lead_id = lead_id
        self.name = name
        self.amount = amount
        self.expected_close_at = expected_close_at
        self.created_at = occurred_at
        self.open_key = idempotency_key
        self.stage = DealStage.DISCOVERY
        self.stage_changed_at = occurred_at
        self.closed_at: datetime | None = None
        self.loss_reason = ""
        self.loss_detail = ""
        self.revenues: list[Revenue] = []
        self.revenue_keys: dict[str, uuid.UUID] = {}
        self.personal_data_erased = False

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def is_closed(self) -> bool:
        return self.stage in {DealStage.WON, DealStage.LOST}

    @property
    def recognized_revenue(self) -> Money:
        total = Money(0, self.currency)
        for revenue in self.revenues:
            total += revenue.amount
        return total

    # -- rules ------------------------------------------------------------------------

    def check_open(self) -> None:
        if self.is_closed:
            raise FailedPrecondition(
                f"deal {self.id} is {self.stage} and takes no more changes"
            )

    def check_same_currency(self, field: str, amount: Money) -> None:
        if amount.currency != self.currency:
            raise FailedPrecondition(
                f"{field}.currency: deal {self.id} is in {self.currency}, not "
                f"{amount.currency}; a deal's currency never changes"
            )

    def check_not_before(
        self, field: str, when: datetime, earliest: datetime, what: str
    ) -> None:
        if when < earliest:
            raise FailedPrecondition(
                f"{field}: {when.isoformat()} lies before {what} "
                f"({earliest.isoformat()})"
            )

    # -- commands ---------------------------------------------------------------------

    def change_stage(self, stage: str, occurred_at: datetime) -> bool:
        """Moves an open deal; False (and nothing recorded) if it is there already."""
        new_stage = check_open_stage(stage)
        self.check_open()
        self.check_not_before(
            "occurred_at", occurred_at, self.created_at, "the deal was opened"
        )
        if new_stage == self.stage:
            return False
        self._stage_changed(
            lead_id=self.lead_id,
            previous_stage=str(self.stage),
            stage=str(new_stage),
            occurred_at=occurred_at,
        )
        return True

    @event("StageChanged")
    def _stage_changed(
        self,
        lead_id: uuid.UUID,
        previous_stage: str,
        stage: str,
        occurred_at: datetime,
    ) -> None:
        self.stage = DealStage(stage)
        self.stage_changed_at = occurred_at

    def update_amount(self, amount: Money, occurred_at: datetime) -> bool:
        """Changes an open deal's amount; False (nothing recorded) if it is the same."""
        amount = check_amount("amount", amount)
        self.check_open()
        self.check_same_currency("amount", amount)
        self.check_not_before(
            "occurred_at", occurred_at, self.created_at, "the deal was opened"
        )
        if amount == self.amount:
            return False
        self._amount_updated(
            lead_id=self.lead_id,
            amount=amount,
            previous_amount=self.amount,
            occurred_at=occurred_at,
        )
        return True

    @event("AmountUpdated")
    def _amount_updated(
        self,
        lead_id: uuid.UUID,
        amount: Money,
        previous_amount: Money,
        occurred_at: datetime,
    ) -> None:
        self.amount = amount

    def win(self, amount: Money | None, closed_at: datetime) -> None:
        """Closes the deal as won, at `amount` or, when None, at its current amount."""
        won = self.amount if amount is None else check_amount("amount", amount)
        self.check_open()
        self.check_same_currency("amount", won)
        self.check_not_before(
            "closed_at", closed_at, self.created_at, "the deal was opened"
        )
        self._won(lead_id=self.lead_id, amount=won, closed_at=closed_at)

    @event("Won")
    def _won(self, lead_id: uuid.UUID, amount: Money, closed_at: datetime) -> None:
        self.amount = amount
        self.stage = DealStage.WON
        self.stage_changed_at = closed_at
        self.closed_at = closed_at

    def lose(self, reason: str, loss_reason: str, occurred_at: datetime) -> None:
        if loss_reason and loss_reason not in set(LossReason):
            raise InvalidArgument("loss_reason", f"has unknown value {loss_reason!r}")
        self.check_open()
        self.check_not_before(
            "occurred_at", occurred_at, self.created_at, "the deal was opened"
        )
        self._lost(
            lead_id=self.lead_id,
            reason=reason,
            loss_reason=loss_reason,
            occurred_at=occurred_at,
        )

    @event("Lost")
    def _lost(
        self,
        lead_id: uuid.UUID,
        reason: str,
        loss_reason: str,
        occurred_at: datetime,
    ) -> None:
        self.stage = DealStage.LOST
        self.stage_changed_at = occurred_at
        self.closed_at = occurred_at
        self.loss_reason = loss_reason
        # After erasure the store keeps no personal text; neither does the aggregate.
        self.loss_detail = "" if self.personal_data_erased else reason

    def recognize_revenue(
        self,
        revenue_id: uuid.UUID,
        amount: Money,
        kind: str,
        recognized_at: datetime,
        idempotency_key: str = "",
    ) -> tuple[uuid.UUID, bool]:
        """Returns the revenue id and whether it was new (once per idempotency key)."""
        if idempotency_key and idempotency_key in self.revenue_keys:
            return self.revenue_keys[idempotency_key], False
        if kind not in set(RevenueKind):
            raise InvalidArgument("kind", f"has unknown value {kind!r}")
        amount = check_revenue_amount("amount", amount, kind)
        if self.stage is not DealStage.WON:
            raise FailedPrecondition(
                f"revenue is recognised only for won deals; deal {self.id} is "
                f"{self.stage}"
            )
        self.check_same_currency("amount", amount)
        assert self.closed_at is not None  # noqa: S101 - a won deal has closed
        self.check_not_before("recognized_at", recognized_at, self.closed_at, "the win")
        self._revenue_recognized(
            lead_id=self.lead_id,
            revenue_id=revenue_id,
            amount=amount,
            kind=str(RevenueKind(kind)),
            recognized_at=recognized_at,
            idempotency_key=idempotency_key,
        )
        return revenue_id, True

    @event("RevenueRecognized")
    def _revenue_recognized(
        self,
        lead_id: uuid.UUID,
        revenue_id: uuid.UUID,
        amount: Money,
        kind: str,
        recognized_at: datetime,
        idempotency_key: str,
    ) -> None:
        self.revenues.append(Revenue(revenue_id, amount, kind, recognized_at))
        if idempotency_key:
            self.revenue_keys[idempotency_key] = revenue_id

    def erase_personal_data(self, occurred_at: datetime) -> bool:
        """Records the erasure once; the keys are shredded by the store beforehand."""
        if self.personal_data_erased:
            return False
        self._personal_data_erased(lead_id=self.lead_id, occurred_at=occurred_at)
        return True

    @event("PersonalDataErased")
    def _personal_data_erased(self, lead_id: uuid.UUID, occurred_at: datetime) -> None:
        # The stored fields can no longer be decrypted; forget them in memory too.
        self.name = ""
        self.loss_detail = ""
        self.personal_data_erased = True


class LeadDeals(Aggregate):
    """Which deals a lead has, so listing and erasure need no query over the store."""

    if TYPE_CHECKING:
        Started: ClassVar[type[Any]]
        DealAdded: ClassVar[type[Any]]

    @staticmethod
    def create_id(lead_id: uuid.UUID) -> uuid.UUID:
        return lead_deals_id(lead_id)

    @event("Started")
    def __init__(self, lead_id: uuid.UUID) -> None:
        self.lead_id = lead_id
        self.deal_ids: list[uuid.UUID] = []

    def add(self, deal_id: uuid.UUID) -> None:
        if deal_id not in self.deal_ids:
            self._deal_added(deal_id=deal_id)

    @event("DealAdded")
    def _deal_added(self, deal_id: uuid.UUID) -> None:
        self.deal_ids.append(deal_id)
