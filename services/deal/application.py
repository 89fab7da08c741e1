"""The deal application: one function per command, run in group-committed batches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import JSONTranscoder, Transcoding

from closedloop.errors import NotFound
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.personal import PersonalDataApplication
from closedloop.eventstore.unit_of_work import CommandExecutor, UnitOfWork
from closedloop.money import Money
from services.deal.domain import (
    Deal,
    LeadDeals,
    check_amount,
    deal_id_for,
    lead_deals_id,
    revenue_id_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.deal.lead_directory import LeadDirectory


class MoneyAsDict(Transcoding):
    """How a Money value is stored inside an event."""

    type = Money
    name = "money"

    def encode(self, obj: Money) -> dict[str, Any]:
        return {"minor_units": obj.minor_units, "currency": obj.currency}

    def decode(self, data: dict[str, Any]) -> Money:
        return Money(int(data["minor_units"]), str(data["currency"]))


class DealStore(PersonalDataApplication):
    """The deal context's event store and repository (eventsourcing)."""

    name = "Deals"
    #: Personal data, encrypted with the deal's own key (crypto-shredding).
    personal_data = {  # noqa: RUF012
        Deal.Opened: ("name",),
        Deal.Lost: ("reason",),
    }

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(MoneyAsDict())


# -- commands (imperative; each is run by a function of the unit of work) --------


@dataclass(frozen=True)
class OpenDeal:
    lead_id: uuid.UUID
    name: str
    amount: Money
    expected_close_at: datetime | None
    occurred_at: datetime
    idempotency_key: str = ""


@dataclass(frozen=True)
class ChangeDealStage:
    deal_id: uuid.UUID
    stage: str
    occurred_at: datetime


@dataclass(frozen=True)
class UpdateDealAmount:
    deal_id: uuid.UUID
    amount: Money
    occurred_at: datetime


@dataclass(frozen=True)
class WinDeal:
    deal_id: uuid.UUID
    #: None wins the deal at its current amount.
    amount: Money | None
    closed_at: datetime


@dataclass(frozen=True)
class LoseDeal:
    deal_id: uuid.UUID
    reason: str
    loss_reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class RecordRevenue:
    deal_id: uuid.UUID
    amount: Money
    kind: str
    recognized_at: datetime
    idempotency_key: str = ""


@dataclass(frozen=True)
class RevenueResult:
    revenue_id: uuid.UUID
    created: bool
    deal: Deal


class Deals:
    """Deals opened from leads, their stages, outcome and revenue."""

    def __init__(
        self,
        store: DealStore,
        executor: CommandExecutor,
        *,
        lead_directory: LeadDirectory,
    ) -> None:
        self.store = store
        self.executor = executor
        self.lead_directory = lead_directory

    async def _run(self, fn: Callable[[UnitOfWork], Any], meta: EventMeta) -> Any:
        return await self.executor.execute(fn, meta)

    # -- commands ---------------------------------------------------------------------

    async def open_deal(self, cmd: OpenDeal, meta: EventMeta) -> tuple[Deal, bool]:
        """Asks the lead context first, off the writer thread; then opens the deal."""
        check_amount("amount", cmd.amount)
        if cmd.idempotency_key:
            # A retry of an open that succeeded gets its deal, even while the lead
            # service is away or the lead has moved on since.
            deal_id = deal_id_for(cmd.lead_id, cmd.idempotency_key)
            existing = await self.executor.query(partial(self.find_deal, deal_id))
            if existing is not None:
                return existing, False
        await self.lead_directory.check_convertible(cmd.lead_id, meta)
        result: tuple[Deal, bool] = await self._run(partial(self._open_deal, cmd), meta)
        return result

    def _open_deal(self, cmd: OpenDeal, uow: UnitOfWork) -> tuple[Deal, bool]:
        if cmd.idempotency_key:
            found = uow.get(deal_id_for(cmd.lead_id, cmd.idempotency_key), Deal)
            if found is not None:
                return found, False
        deal = Deal.open(
            lead_id=cmd.lead_id,
            name=cmd.name,
            amount=cmd.amount,
            expected_close_at=cmd.expected_close_at,
            occurred_at=cmd.occurred_at,
            idempotency_key=cmd.idempotency_key,
        )
        uow.add(deal)
        index = uow.get(lead_deals_id(cmd.lead_id), LeadDeals)
        if index is None:
            index = LeadDeals(cmd.lead_id)
            uow.add(index)
        index.add(deal.id)
        return deal, True

    async def change_deal_stage(self, cmd: ChangeDealStage, meta: EventMeta) -> Deal:
        def run(uow: UnitOfWork) -> Deal:
            deal = self._deal(uow, cmd.deal_id)
            deal.change_stage(cmd.stage, cmd.occurred_at)
            return deal

        result: Deal = await self._run(run, meta)
        return result

    async def update_deal_amount(self, cmd: UpdateDealAmount, meta: EventMeta) -> Deal:
        def run(uow: UnitOfWork) -> Deal:
            deal = self._deal(uow, cmd.deal_id)
            deal.update_amount(cmd.amount, cmd.occurred_at)
            return deal

        result: Deal = await self._run(run, meta)
        return result

    async def win_deal(self, cmd: WinDeal, meta: EventMeta) -> Deal:
        def run(uow: UnitOfWork) -> Deal:
            deal = self._deal(uow, cmd.deal_id)
            deal.win(cmd.amount, cmd.closed_at)
            return deal

        result: Deal = await self._run(run, meta)
        return result

    async def lose_deal(self, cmd: LoseDeal, meta: EventMeta) -> Deal:
        def run(uow: UnitOfWork) -> Deal:
            deal = self._deal(uow, cmd.deal_id)
            deal.lose(cmd.reason, cmd.loss_reason, cmd.occurred_at)
            return deal

        result: Deal = await self._run(run, meta)
        return result

    async def record_revenue(
        self, cmd: RecordRevenue, meta: EventMeta
    ) -> RevenueResult:
        def run(uow: UnitOfWork) -> RevenueResult:
            deal = self._deal(uow, cmd.deal_id)
            revenue_id = (
                revenue_id_for(deal.id, cmd.idempotency_key)
                if cmd.idempotency_key
                else uuid.uuid4()
            )
            recorded_id, created = deal.recognize_revenue(
                revenue_id,
                cmd.amount,
                cmd.kind,
                cmd.recognized_at,
                cmd.idempotency_key,
            )
            return RevenueResult(recorded_id, created, deal)

        result: RevenueResult = await self._run(run, meta)
        return result

    async def erase_lead(
        self,
        lead_id: uuid.UUID,
        meta: EventMeta | None = None,
        *,
        occurred_at: datetime | None = None,
    ) -> list[uuid.UUID]:
        """Crypto-shreds the personal data of every deal of the lead; returns their ids.

        The keys are deleted first, then each deal records a non-personal
        `Deal.PersonalDataErased`, so no tombstone ever claims an erasure that did not
        happen. Repeating it is harmless: erased deals record nothing new.
        """
        when = occurred_at or datetime.now(UTC)

        def run(uow: UnitOfWork) -> list[uuid.UUID]:
            index = uow.get(lead_deals_id(lead_id), LeadDeals)
            if index is None:
                return []
            deal_ids = list(index.deal_ids)
            self.store.erase_subjects(deal_ids)
            for deal_id in deal_ids:
                deal = uow.get(deal_id, Deal)
                if deal is not None:
                    deal.erase_personal_data(when)
            return deal_ids

        result: list[uuid.UUID] = await self._run(run, meta or EventMeta.new())
        return result

    # -- queries ----------------------------------------------------------------------

    def find_deal(self, deal_id: uuid.UUID) -> Deal | None:
        try:
            deal: object = self.store.repository.get(deal_id)
        except AggregateNotFoundError:
            return None
        return deal if isinstance(deal, Deal) else None

    def get_deal(self, deal_id: uuid.UUID) -> Deal:
        deal = self.find_deal(deal_id)
        if deal is None:
            raise NotFound(f"deal_id: deal {deal_id} does not exist")
        return deal

    def list_deals_for_lead(self, lead_id: uuid.UUID) -> list[Deal]:
        """The lead's deals by opening (business) time, then in recording order."""
        try:
            index: object = self.store.repository.get(lead_deals_id(lead_id))
        except AggregateNotFoundError:
            return []
        if not isinstance(index, LeadDeals):
            return []
        deals = [self.get_deal(deal_id) for deal_id in index.deal_ids]
        order = {deal_id: n for n, deal_id in enumerate(index.deal_ids)}
        return sorted(deals, key=lambda d: (d.created_at, order[d.id]))

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _deal(uow: UnitOfWork, deal_id: uuid.UUID) -> Deal:
        deal = uow.get(deal_id, Deal)
        if deal is None:
            raise NotFound(f"deal_id: deal {deal_id} does not exist")
        return deal
