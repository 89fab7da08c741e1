"""The attribution application: what it learns from other contexts, and its commands.

Every command is a function of a unit of work, run by the group-committing executor.
Anything slow happens before: the lead service is asked for a journey in the async
handler, and the credits (pure arithmetic) are computed in a worker thread, so a
command only checks what is recorded already and records the rest.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from eventsourcing.application import AggregateNotFoundError

from closedloop.errors import FailedPrecondition, NotFound, Unavailable
from closedloop.eventstore.metadata import EventMeta
from closedloop.money import Money
from services.attribution.crediting import counted_touches, credit
from services.attribution.datadriven import credit_with_weights
from services.attribution.domain import (
    WON,
    ChannelModel,
    ConversionCredits,
    ConversionKind,
    DealOutcome,
    DealRecord,
    ModelCredits,
    PersonJourney,
    Spend,
    SpendLedger,
    TrainedModel,
    WinSnapshot,
)
from services.attribution.ids import (
    channel_model_id,
    conversion_id,
    deal_record_id,
    spend_id_for,
    spend_ledger_id,
    visitor_journey_id,
    visitor_key,
)
from services.attribution.models import Conversion
from services.attribution.rules import CHANNELS, DATA_DRIVEN_MODELS, MODELS
from services.attribution.settings import AttributionSettings
from services.attribution.training import EventFold, train_model
from services.attribution.views import (
    DealAttributionView,
    conversion_view,
    summed_credits,
)

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence

    from eventsourcing.domain import Aggregate

    from closedloop.eventstore.unit_of_work import CommandExecutor, UnitOfWork
    from services.attribution.facts import (
        DealWonFact,
        RecordSpend,
        RevenueFact,
        SpendFilter,
        TouchFact,
    )
    from services.attribution.lead_journeys import LeadJourney, LeadJourneys
    from services.attribution.models import ModelSpec
    from services.attribution.store import AttributionStore

A = TypeVar("A", bound="Aggregate")


class Attributions:
    """Credits each won deal's revenue under every model; trains; records spend."""

    def __init__(
        self,
        store: AttributionStore,
        executor: CommandExecutor,
        *,
        lead_journeys: LeadJourneys,
        settings: AttributionSettings | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.lead_journeys = lead_journeys
        self.settings = settings or AttributionSettings()
        self.specs: dict[str, ModelSpec] = self.settings.specs()
        self.fold = EventFold(store)
        self._train_lock = asyncio.Lock()
        self._closing = threading.Event()

    def close(self) -> None:
        """Lets a training that is catching up on the log stop early."""
        self._closing.set()

    # -- the lead stream: journeys for training ---------------------------------------

    @staticmethod
    def _journey(uow: UnitOfWork, kind: str, ref: uuid.UUID) -> PersonJourney:
        journey_id = PersonJourney.create_id(kind, ref)
        journey = uow.get(journey_id, PersonJourney)
        if journey is None:
            journey = PersonJourney(kind=kind, ref=ref)
            uow.add(journey)
        return journey

    async def record_touch(self, fact: TouchFact, meta: EventMeta) -> bool:
        def run(uow: UnitOfWork) -> bool:
            if fact.lead_id is not None:
                journey = self._journey(uow, PersonJourney.LEAD, fact.lead_id)
            else:
                key = visitor_key(fact.anonymous_id)
                journey = self._journey(uow, PersonJourney.VISITOR, key)
            return journey.record_touch(
                fact.touchpoint_id, fact.channel, fact.occurred_at
            )

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_lead_captured(
        self,
        lead_id: uuid.UUID,
        anonymous_id: str,
        occurred_at: datetime,
        meta: EventMeta,
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            journey = self._journey(uow, PersonJourney.LEAD, lead_id)
            captured = journey.capture(occurred_at)
            if anonymous_id:
                journey.link_visitor(visitor_journey_id(visitor_key(anonymous_id)))
            return captured

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_visitor_identified(
        self, lead_id: uuid.UUID, anonymous_id: str, meta: EventMeta
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            journey = self._journey(uow, PersonJourney.LEAD, lead_id)
            return journey.link_visitor(visitor_journey_id(visitor_key(anonymous_id)))

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_leads_merged(
        self, surviving_lead_id: uuid.UUID, merged_lead_id: uuid.UUID, meta: EventMeta
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            journey = self._journey(uow, PersonJourney.LEAD, surviving_lead_id)
            return journey.absorb(merged_lead_id)

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_lead_disqualified(
        self,
        lead_id: uuid.UUID,
        occurred_at: datetime,
        source_event_id: str,
        meta: EventMeta,
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            journey = self._journey(uow, PersonJourney.LEAD, lead_id)
            return journey.disqualify(occurred_at, source_event_id)

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_lead_reopened(
        self,
        lead_id: uuid.UUID,
        occurred_at: datetime,
        source_event_id: str,
        meta: EventMeta,
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            journey = self._journey(uow, PersonJourney.LEAD, lead_id)
            return journey.reopen(occurred_at, source_event_id)

        result: bool = await self.executor.execute(run, meta)
        return result

    # -- the deal stream ---------------------------------------------------------------

    @staticmethod
    def _deal(uow: UnitOfWork, deal_id: uuid.UUID, lead_id: uuid.UUID) -> DealRecord:
        record = uow.get(deal_record_id(deal_id), DealRecord)
        if record is None:
            record = DealRecord(deal_id=deal_id, lead_id=lead_id)
            uow.add(record)
        return record

    async def record_deal_opened(
        self,
        deal_id: uuid.UUID,
        lead_id: uuid.UUID,
        amount: Money,
        opened_at: datetime,
        meta: EventMeta,
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            return self._deal(uow, deal_id, lead_id).open(opened_at, amount)

        result: bool = await self.executor.execute(run, meta)
        return result

    async def record_deal_lost(
        self,
        deal_id: uuid.UUID,
        lead_id: uuid.UUID,
        occurred_at: datetime,
        meta: EventMeta,
    ) -> bool:
        def run(uow: UnitOfWork) -> bool:
            return self._deal(uow, deal_id, lead_id).lose(occurred_at)

        result: bool = await self.executor.execute(run, meta)
        return result

    async def attribute_win(self, fact: DealWonFact, meta: EventMeta) -> bool:
        """Credits a won deal under every model; False when that was done already.

        The lead service is asked for the journey here, before any command: if it
        does not answer, `Unavailable` sends the event back for redelivery.
        """
        record = await self.executor.query(
            partial(self._find, deal_record_id(fact.deal_id), DealRecord)
        )
        if record is not None and record.won is not None:
            snapshot = record.won
            done = await self.executor.query(
                partial(self._credited_models, fact.deal_id, WON)
            )
            if done >= set(MODELS):
                return False  # a redelivered DealWon: credited once already
        else:
            if record is None or record.opened_at is None:
                raise Unavailable(
                    f"deal {fact.deal_id} was won, but its DealOpened has not been "
                    "processed yet; retry"
                )
            journey = await self.lead_journeys.journey(fact.lead_id, meta)
            weights = await self.executor.query(self._latest_weights)
            snapshot = self.snapshot(record.opened_at, fact, journey, weights)
        credited = await asyncio.to_thread(
            self.credit_all, snapshot, snapshot.amount.minor_units
        )
        result: bool = await self.executor.execute(
            partial(self._record_win, fact, snapshot, credited), meta
        )
        return result

    def snapshot(
        self,
        opened_at: datetime,
        fact: DealWonFact,
        journey: LeadJourney | None,
        weights: dict[str, dict[str, float]],
    ) -> WinSnapshot:
        """The journey at the win: touches counted by the lookback, and the weights.

        A lead the lead context does not know has no touches: its revenue is
        credited to `unattributed` under every model, never lost.
        """
        lead_created_at = journey.created_at if journey is not None else opened_at
        touches = journey.touches if journey is not None else ()
        conversion = Conversion(
            amount_minor=fact.amount.minor_units,
            currency=fact.amount.currency,
            converted_at=fact.closed_at,
            lead_created_at=lead_created_at,
            opportunity_created_at=opened_at,
            won_at=fact.closed_at,
        )
        counted = counted_touches(touches, conversion, self.settings.lookback)
        return WinSnapshot(
            amount=fact.amount,
            won_at=fact.closed_at,
            opened_at=opened_at,
            lead_created_at=lead_created_at,
            touches=tuple(counted),
            channel_weights=weights,
        )

    def credit_all(self, snapshot: WinSnapshot, amount: int) -> dict[str, ModelCredits]:
        """`amount` credited under every model over the journey at the win.

        Data-driven models use the weights in the snapshot; a model without any
        (not trained before the win) falls back to linear, and says so.
        """
        conversion = snapshot.conversion()
        credited = {}
        for model, spec in self.specs.items():
            if model in DATA_DRIVEN_MODELS:
                result = credit_with_weights(
                    spec,
                    snapshot.channel_weights.get(model, {}),
                    snapshot.touches,
                    conversion,
                    amount_minor=amount,
                )
            else:
                result = credit(spec, snapshot.touches, conversion, amount_minor=amount)
            credited[model] = ModelCredits(
                model, spec.key, result.credits, result.fallback or ""
            )
        return credited

    def _record_win(
        self,
        fact: DealWonFact,
        snapshot: WinSnapshot,
        credited: dict[str, ModelCredits],
        uow: UnitOfWork,
    ) -> bool:
        record = self._deal(uow, fact.deal_id, fact.lead_id)
        if record.won is None:
            record.win(snapshot)
        elif record.won != snapshot:
            # Another delivery of the win was recorded first: its journey stands.
            snapshot = record.won
            credited = self.credit_all(snapshot, snapshot.amount.minor_units)
        return self._record_conversion(
            uow,
            record,
            WON,
            ConversionKind.WON,
            "",
            snapshot.amount,
            snapshot.won_at,
            credited,
        )

    async def attribute_revenue(self, fact: RevenueFact, meta: EventMeta) -> bool:
        """Credits recognised revenue with the weights of the journey at the win."""
        record = await self.executor.query(
            partial(self._find, deal_record_id(fact.deal_id), DealRecord)
        )
        if record is None or record.won is None:
            raise Unavailable(
                f"revenue of deal {fact.deal_id} was recognised before its win was "
                "attributed; retry"
            )
        key = str(fact.revenue_id)
        done = await self.executor.query(
            partial(self._credited_models, fact.deal_id, key)
        )
        if done >= set(MODELS):
            return False
        snapshot = record.won
        credited = await asyncio.to_thread(
            self.credit_all, snapshot, fact.amount.minor_units
        )

        def run(uow: UnitOfWork) -> bool:
            deal = self._deal(uow, fact.deal_id, fact.lead_id)
            return self._record_conversion(
                uow,
                deal,
                key,
                ConversionKind.REVENUE_RECOGNIZED,
                fact.kind,
                fact.amount,
                fact.recognized_at,
                credited,
            )

        result: bool = await self.executor.execute(run, meta)
        return result

    @staticmethod
    def _record_conversion(
        uow: UnitOfWork,
        record: DealRecord,
        conversion: str,
        kind: ConversionKind,
        revenue_kind: str,
        amount: Money,
        occurred_at: datetime,
        credited: dict[str, ModelCredits],
    ) -> bool:
        credits_id = conversion_id(record.deal_id, conversion)
        found = uow.get(credits_id, ConversionCredits)
        if found is None:
            found = ConversionCredits(
                deal_id=record.deal_id,
                lead_id=record.lead_id,
                conversion=conversion,
                kind=str(kind),
                revenue_kind=revenue_kind,
                amount=amount,
                occurred_at=occurred_at,
            )
            uow.add(found)
        record.add_conversion(conversion)
        new = [
            found.attribute(c.model, c.model_key, c.credits, c.fallback)
            for c in credited.values()
        ]
        return any(new)

    # -- training ----------------------------------------------------------------------

    async def train(
        self, models: Sequence[str] = DATA_DRIVEN_MODELS
    ) -> list[TrainedModel]:
        """Trains the models over every finished journey, off the event loop.

        One training at a time; the results are recorded (and published as
        ChannelModelTrained), and conversions from then on are credited with them.
        """
        async with self._train_lock:
            results = await asyncio.to_thread(self._train_now, tuple(models))
            await self.executor.execute(
                partial(self._record_training, results), EventMeta.new()
            )
            return results

    def _train_now(self, models: tuple[str, ...]) -> list[TrainedModel]:
        self.fold.update(should_stop=self._closing.is_set)
        data = self.fold.training_data(self.settings.lookback)
        if data.converting == 0:
            raise FailedPrecondition(
                f"there is nothing to learn from yet: {data.journey_count} finished "
                "journeys, none converting; train after the first won deal"
            )
        trained_at = datetime.now(UTC)
        return [train_model(self.specs[m], data, trained_at) for m in models]

    @staticmethod
    def _record_training(results: list[TrainedModel], uow: UnitOfWork) -> None:
        for result in results:
            model = uow.get(channel_model_id(result.model), ChannelModel)
            if model is None:
                model = ChannelModel(result.model)
                uow.add(model)
            model.train(result)

    def _latest_weights(self) -> dict[str, dict[str, float]]:
        """The trained weights of each data-driven model with this service's spec."""
        weights = {}
        for model in DATA_DRIVEN_MODELS:
            found = self._find(channel_model_id(model), ChannelModel)
            latest = found.latest if found is not None else None
            if latest is not None and latest.model_key == self.specs[model].key:
                weights[model] = latest.weights
        return weights

    # -- spend ------------------------------------------------------------------------

    async def record_spend(
        self, cmd: RecordSpend, meta: EventMeta
    ) -> tuple[Spend, bool]:
        def run(uow: UnitOfWork) -> tuple[Spend, bool]:
            if cmd.idempotency_key:
                found = uow.get(spend_id_for(cmd.idempotency_key), Spend)
                if found is not None:
                    return found, False
            spend = Spend.record(
                channel=cmd.channel,
                campaign=cmd.campaign,
                amount=cmd.amount,
                period_start=cmd.period_start,
                period_end=cmd.period_end,
                occurred_at=cmd.occurred_at,
                idempotency_key=cmd.idempotency_key,
            )
            uow.add(spend)
            ledger = uow.get(spend_ledger_id(cmd.channel), SpendLedger)
            if ledger is None:
                ledger = SpendLedger(cmd.channel)
                uow.add(ledger)
            ledger.add(spend.id)
            return spend, True

        result: tuple[Spend, bool] = await self.executor.execute(run, meta)
        return result

    # -- queries ----------------------------------------------------------------------

    def _find(self, aggregate_id: uuid.UUID, kind: type[A]) -> A | None:
        try:
            found: object = self.store.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def _credited_models(self, deal_id: uuid.UUID, conversion: str) -> set[str]:
        found = self._find(conversion_id(deal_id, conversion), ConversionCredits)
        return set(found.credited) if found is not None else set()

    def _won_record(self, deal_id: uuid.UUID) -> DealRecord:
        record = self._find(deal_record_id(deal_id), DealRecord)
        if record is None:
            raise NotFound(
                f"deal {deal_id} has no attribution: attribution has not learned of "
                "a win of this deal"
            )
        if record.won is None:
            state = "lost" if record.outcome is DealOutcome.LOST else "not won yet"
            raise NotFound(f"deal {deal_id} has no attribution: it is {state}")
        return record

    def _view(
        self, record: DealRecord, conversions: list[ConversionCredits], model: str
    ) -> DealAttributionView:
        assert record.won is not None  # noqa: S101 - checked by _won_record
        views = tuple(conversion_view(c, model) for c in conversions)
        revenue = Money(0, record.won.amount.currency)
        for view in views:
            revenue += view.amount
        fallbacks = {v.credited.fallback for v in views} - {""}
        return DealAttributionView(
            deal_id=record.deal_id,
            lead_id=record.lead_id,
            model=model,
            model_key=views[0].credited.model_key if views else self.specs[model].key,
            revenue=revenue,
            credits=summed_credits(views),
            fallback=min(fallbacks, default=""),
            won_amount=record.won.amount,
            won_at=record.won.won_at,
            conversions=views,
        )

    def _conversions(self, record: DealRecord) -> list[ConversionCredits]:
        found = (
            self._find(conversion_id(record.deal_id, c), ConversionCredits)
            for c in record.conversions
        )
        return [c for c in found if c is not None]

    def deal_attribution(self, deal_id: uuid.UUID, model: str) -> DealAttributionView:
        record = self._won_record(deal_id)
        conversions = [c for c in self._conversions(record) if model in c.credited]
        return self._view(record, conversions, model)

    def compare_models(self, deal_id: uuid.UUID) -> list[DealAttributionView]:
        record = self._won_record(deal_id)
        conversions = self._conversions(record)
        return [
            self._view(record, [c for c in conversions if m in c.credited], m)
            for m in MODELS
        ]

    def channel_model(self, model: str) -> TrainedModel:
        found = self._find(channel_model_id(model), ChannelModel)
        if found is None or found.latest is None:
            raise NotFound(f"{model} has not been trained yet; call TrainModel")
        return found.latest

    def list_spend(self, spend_filter: SpendFilter) -> list[Spend]:
        channels = (spend_filter.channel,) if spend_filter.channel else CHANNELS
        spends: list[Spend] = []
        for channel in channels:
            ledger = self._find(spend_ledger_id(channel), SpendLedger)
            if ledger is None:
                continue
            for spend_id in ledger.spend_ids:
                spend = self._find(spend_id, Spend)
                if spend is None:
                    continue
                if spend_filter.campaign and spend.campaign != spend_filter.campaign:
                    continue
                if spend.overlaps(spend_filter.start, spend_filter.end):
                    spends.append(spend)
        return sorted(
            spends,
            key=lambda s: (s.period_start, s.channel, s.campaign, str(s.id)),
        )
