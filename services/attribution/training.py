"""What the data-driven models train on: every journey, folded from this store's events.

The lead and deal events this service follows are kept as PersonJourney and
DealRecord aggregates. Training reads them back through the store's notification
log, from where it stopped the time before, so each training decodes only what is
new; then it puts each person together (a lead, its visitors and the leads merged
into it) and turns every finished journey into a path of channels with its outcome.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from services import legacy_topic
from services.attribution import datadriven
from services.attribution.datadriven import Journey
from services.attribution.domain import (
    ChannelWeight,
    DealOutcome,
    DealRecord,
    PersonJourney,
    TrainedModel,
)

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime, timedelta

    from eventsourcing.application import Application

    from services.attribution.models import ModelSpec

#: Notifications read per query while catching up.
PAGE_SIZE = 2000

Touches = list[tuple["datetime", int, str, str]]


def _event_topics(*aggregates: type[Aggregate]) -> tuple[str, ...]:
    """Each event class's topic, and the one events stored before the move carry."""
    return tuple(
        stored
        for aggregate in aggregates
        for value in vars(aggregate).values()
        if isinstance(value, type) and issubclass(value, Aggregate.Event)
        for stored in (get_topic(value), legacy_topic(get_topic(value)))
    )


@dataclass(frozen=True)
class TrainingData:
    """Paths of channels with their outcomes (identical paths merged), and counts.

    `value` of a path is its won amounts in minor units of `value_currency`; when
    won deals came in several currencies, values are 0 and the currency empty.
    """

    journeys: tuple[Journey, ...]
    journey_count: int
    converting: int
    value_currency: str


class _Rows:
    def __init__(self) -> None:
        self.paths: dict[tuple[str, ...], list[float]] = {}
        self.currencies: set[str] = set()
        self.count = 0
        self.converting = 0

    def _row(self, path: tuple[str, ...]) -> list[float]:
        self.count += 1
        return self.paths.setdefault(path, [0.0, 0.0, 0.0])

    def convert(self, path: tuple[str, ...], amount: int, currency: str) -> None:
        row = self._row(path)
        row[0] += 1
        row[1] += amount
        self.converting += 1
        self.currencies.add(currency)

    def lose(self, path: tuple[str, ...]) -> None:
        self._row(path)[2] += 1

    def data(self) -> TrainingData:
        single = len(self.currencies) == 1
        journeys = tuple(
            Journey(path, conversions, value if single else 0.0, nulls)
            for path, (conversions, value, nulls) in sorted(self.paths.items())
        )
        return TrainingData(
            journeys=journeys,
            journey_count=self.count,
            converting=self.converting,
            value_currency=next(iter(self.currencies)) if single else "",
        )


def _path(touches: Touches, since: datetime | None, until: datetime) -> tuple[str, ...]:
    return tuple(
        channel
        for occurred_at, _, _, channel in touches
        if occurred_at <= until and (since is None or occurred_at >= since)
    )


def _group(
    lead: PersonJourney, leads: Mapping[uuid.UUID, PersonJourney]
) -> list[PersonJourney]:
    """The lead and every lead merged into it, however deep."""
    group, pending, seen = [], [lead], {lead.ref}
    while pending:
        current = pending.pop()
        group.append(current)
        for merged_id in current.merged_lead_ids:
            if merged_id not in seen and merged_id in leads:
                seen.add(merged_id)
                pending.append(leads[merged_id])
    return group


def _person_touches(
    group: Iterable[PersonJourney], visitors: Mapping[uuid.UUID, PersonJourney]
) -> Touches:
    touches: dict[str, tuple[datetime, int, str, str]] = {}
    for lead in group:
        owners = [lead, *(visitors[v] for v in lead.visitor_ids if v in visitors)]
        for owner in owners:
            for touch in owner.touches:
                touches.setdefault(touch[2], touch)
    return sorted(touches.values())


def _add_lead(
    rows: _Rows,
    group: list[PersonJourney],
    visitors: Mapping[uuid.UUID, PersonJourney],
    deals: Iterable[DealRecord],
    lookback: timedelta,
) -> None:
    """One person's finished journeys: its closed deals, else a disqualification."""
    touches = _person_touches(group, visitors)
    created = [m.captured_at for m in group if m.captured_at is not None]
    since = min(created) - lookback if created else None
    closed = False
    for deal in deals:
        if deal.outcome is DealOutcome.OPEN or deal.closed_at is None:
            continue
        closed = True
        path = _path(touches, since, deal.closed_at)
        if not path:
            continue
        if deal.won is not None:
            rows.convert(path, deal.won.amount.minor_units, deal.won.amount.currency)
        else:
            rows.lose(path)
    disqualified_at = group[0].disqualified_at
    if not closed and disqualified_at is not None:
        path = _path(touches, since, disqualified_at)
        if path:
            rows.lose(path)


def assemble(
    persons: Iterable[PersonJourney],
    deals: Iterable[DealRecord],
    lookback: timedelta,
) -> TrainingData:
    """Every finished journey as a path of channels with its outcome.

    - A won deal is a converting journey (value: its won amount): the person's
      touches from `lookback` before the lead was created up to the win.
    - A lost deal is a non-converting one, up to the loss.
    - A lead with no closed deal that is disqualified is non-converting, up to the
      disqualification.
    - A visitor never identified as a lead is non-converting: its touches within
      `lookback` before its last one.
    - Leads and deals still open are left out until they end: their outcome is not
      known yet. Journeys with no counted touch are left out: they are unattributed
      and say nothing about any channel.
    """
    leads: dict[uuid.UUID, PersonJourney] = {}
    visitors: dict[uuid.UUID, PersonJourney] = {}
    for person in persons:
        if person.is_lead:
            leads[person.ref] = person
        else:
            visitors[person.id] = person
    merged = {m for lead in leads.values() for m in lead.merged_lead_ids}
    linked = {v for lead in leads.values() for v in lead.visitor_ids}
    deals_of: defaultdict[uuid.UUID, list[DealRecord]] = defaultdict(list)
    for deal in deals:
        deals_of[deal.lead_id].append(deal)
    rows = _Rows()
    for lead_id, lead in leads.items():
        if lead_id not in merged:  # a merged lead is part of its survivor's journey
            group = _group(lead, leads)
            person_deals = [d for member in group for d in deals_of[member.ref]]
            _add_lead(rows, group, visitors, person_deals, lookback)
    for visitor_id, visitor in visitors.items():
        if visitor_id in linked or not visitor.touches:
            continue
        touches = sorted(visitor.touches)
        last = touches[-1][0]
        rows.lose(_path(touches, last - lookback, last))
    return rows.data()


class EventFold:
    """The latest PersonJourney and DealRecord of every id, kept up to date.

    Events are applied to the fold's own aggregate objects, the way the repository
    rebuilds them. An event that does not follow its aggregate's version (one missed,
    which the store's ordered notification ids should never allow) reloads that
    aggregate from the repository instead.
    """

    def __init__(self, store: Application[Any]) -> None:
        self._store = store
        self._topics = _event_topics(PersonJourney, DealRecord)
        self._lock = threading.Lock()
        self.position = 0
        self.persons: dict[uuid.UUID, PersonJourney] = {}
        self.deals: dict[uuid.UUID, DealRecord] = {}

    def update(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Applies what was stored since the last update; returns how many events."""
        with self._lock:
            applied = 0
            while not should_stop():
                page = self._store.recorder.select_notifications(
                    start=self.position + 1, limit=PAGE_SIZE, topics=self._topics
                )
                for notification in page:
                    self._apply(self._store.mapper.to_domain_event(notification))
                    self.position = notification.id
                applied += len(page)
                if len(page) < PAGE_SIZE:
                    break
            return applied

    def _apply(self, domain_event: Any) -> None:
        target: dict[uuid.UUID, Any] = (
            self.persons
            if isinstance(domain_event, PersonJourney.Event)
            else self.deals
        )
        aggregate_id = domain_event.originator_id
        current = target.get(aggregate_id)
        version = domain_event.originator_version
        if current is not None and version <= current.version:
            return  # reloaded already with this event in it
        expected = 1 if current is None else current.version + 1
        if version != expected:
            target[aggregate_id] = self._store.repository.get(aggregate_id)
            return
        target[aggregate_id] = domain_event.mutate(current)

    def training_data(self, lookback: timedelta) -> TrainingData:
        with self._lock:
            return assemble(self.persons.values(), self.deals.values(), lookback)


def train_model(
    spec: ModelSpec, data: TrainingData, trained_at: datetime
) -> TrainedModel:
    """Trains markov or shapley on the data: the weights later conversions use.

    markov: each channel's weight is its removal effect RE_c = 1 - P_-c / P.
    shapley: each channel's weight is its Shapley value in conversions (phi scaled
    so that the values sum to all conversions).
    """
    if spec.name == "markov":
        chain = datadriven.markov(data.journeys, spec)
        total = sum(chain.removal_effect.values())
        channels = tuple(
            ChannelWeight(
                channel=c,
                weight=chain.removal_effect[c],
                share=chain.removal_effect[c] / total if total > 0 else 0.0,
                conversions=chain.conversions[c],
                value=chain.value[c],
            )
            for c in chain.channels
        )
        probability, error = chain.probability, 0.0
    elif spec.name == "shapley":
        game = datadriven.shapley(data.journeys, spec)
        total = sum(game.conversions.values())
        errors = game.standard_error or {}
        channels = tuple(
            ChannelWeight(
                channel=c,
                weight=game.conversions[c],
                share=game.conversions[c] / total if total > 0 else 0.0,
                conversions=game.conversions[c],
                value=game.value[c],
                standard_error=errors.get(c, 0.0),
            )
            for c in game.channels
        )
        # The Shapley values sum to v(all) - v(none) = P.
        probability = sum(game.phi.values())
        error = max(errors.values(), default=0.0)
    else:
        msg = f"{spec.name} is not a trained model"
        raise ValueError(msg)
    return TrainedModel(
        model=spec.name,
        model_key=spec.key,
        journeys=data.journey_count,
        converting_journeys=data.converting,
        probability=probability,
        channels=channels,
        trained_at=trained_at,
        standard_error=error,
        value_currency=data.value_currency,
    )
