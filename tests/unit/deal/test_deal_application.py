"""The deal application over eventsourcing's in-process store, with a fake lead port."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from closedloop.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.personal import TOKEN_PREFIX
from closedloop.eventstore.unit_of_work import CommandExecutor
from closedloop.money import Money
from services.deal.application import (
    ChangeDealStage,
    Deals,
    DealStore,
    LoseDeal,
    OpenDeal,
    RecordRevenue,
    UpdateDealAmount,
    WinDeal,
)
from services.deal.domain import (
    Deal,
    DealStage,
    LeadStanding,
    deal_id_for,
    lead_deals_id,
)
from services.deal.lead_directory import LeadDirectory

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
DEAL_NAME = "Acme platform deal for Ana Lima"
LOSS_TEXT = "Ana Lima chose a competitor after her manager left"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def usd(minor_units: int) -> Money:
    return Money(minor_units, "USD")


class FakeLeadDirectory(LeadDirectory):
    """Leads as the lead context would report them; `down` plays an outage."""

    def __init__(self) -> None:
        self.leads: dict[uuid.UUID, LeadStanding] = {}
        self.down = False
        self.asked: list[uuid.UUID] = []

    def add(
        self, stage: str = "sal", merged_into: uuid.UUID | None = None
    ) -> uuid.UUID:
        lead_id = uuid.uuid4()
        self.leads[lead_id] = LeadStanding(lead_id, stage, merged_into)
        return lead_id

    async def find_lead(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadStanding | None:
        self.asked.append(lead_id)
        if self.down:
            raise Unavailable("the lead service did not answer; retry")
        return self.leads.get(lead_id)


@pytest.fixture
def directory() -> FakeLeadDirectory:
    return FakeLeadDirectory()


@pytest.fixture
async def deals(directory: FakeLeadDirectory) -> AsyncIterator[Deals]:
    store = DealStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    yield Deals(store, executor, lead_directory=directory)
    await executor.close()
    store.close()


def opening(
    lead_id: uuid.UUID,
    *,
    key: str = "",
    amount: Money | None = None,
    occurred_at: datetime = T0,
    name: str = DEAL_NAME,
) -> OpenDeal:
    return OpenDeal(
        lead_id=lead_id,
        name=name,
        amount=amount or usd(12_000_00),
        expected_close_at=day(60),
        occurred_at=occurred_at,
        idempotency_key=key,
    )


async def open_deal(deals: Deals, cmd: OpenDeal) -> Deal:
    deal, created = await deals.open_deal(cmd, EventMeta.new())
    assert created is True
    return deal


def stored_events(deals: Deals, aggregate_id: uuid.UUID) -> list[Any]:
    return list(deals.store.events.get(aggregate_id))


def notification_count(deals: Deals) -> int:
    return deals.store.recorder.max_notification_id() or 0


def raw_notifications(deals: Deals) -> list[Any]:
    return list(deals.store.recorder.select_notifications(start=1, limit=1000))


# -- opening ---------------------------------------------------------------------------


async def test_open_deal_records_the_deal_and_indexes_it_under_the_lead(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add("mql")
    deal = await open_deal(deals, opening(lead_id, occurred_at=day(-30)))

    stored = deals.get_deal(deal.id)
    assert stored.lead_id == lead_id
    assert stored.name == DEAL_NAME
    assert stored.amount == usd(12_000_00)
    assert stored.stage is DealStage.DISCOVERY
    assert stored.created_at == day(-30)
    assert directory.asked == [lead_id]
    assert [type(e).__qualname__ for e in stored_events(deals, deal.id)] == [
        "Deal.Opened"
    ]
    assert [
        type(e).__qualname__ for e in stored_events(deals, lead_deals_id(lead_id))
    ] == [
        "LeadDeals.Started",
        "LeadDeals.DealAdded",
    ]


async def test_open_deal_is_idempotent_per_key(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    first, created = await deals.open_deal(
        opening(lead_id, key="crm-1"), EventMeta.new()
    )
    count = notification_count(deals)
    again, created_again = await deals.open_deal(
        opening(lead_id, key="crm-1", amount=usd(1)), EventMeta.new()
    )

    assert (created, created_again) == (True, False)
    assert again.id == first.id == deal_id_for(lead_id, "crm-1")
    assert again.amount == usd(12_000_00)  # the deal as first opened
    assert notification_count(deals) == count
    # the repeat is answered from the store; the lead context is asked once
    assert directory.asked == [lead_id]
    other = await open_deal(deals, opening(lead_id, key="crm-2"))
    assert other.id != first.id
    assert [d.id for d in deals.list_deals_for_lead(lead_id)] == [first.id, other.id]


async def test_a_repeated_key_in_one_batch_opens_one_deal(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    results = await asyncio.gather(
        *(
            deals.open_deal(opening(lead_id, key="form-7"), EventMeta.new())
            for _ in range(4)
        )
    )
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({deal.id for deal, _ in results}) == 1
    assert len(deals.list_deals_for_lead(lead_id)) == 1


async def test_a_repeat_succeeds_while_the_lead_service_is_away(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    first = await open_deal(deals, opening(lead_id, key="retry-me"))
    directory.down = True
    again, created = await deals.open_deal(
        opening(lead_id, key="retry-me"), EventMeta.new()
    )
    assert (again.id, created) == (first.id, False)


async def test_unknown_lead_is_not_found_and_nothing_is_written(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(NotFound, match=str(unknown)):
        await deals.open_deal(opening(unknown, key="k"), EventMeta.new())
    assert notification_count(deals) == 0
    assert deals.list_deals_for_lead(unknown) == []


async def test_disqualified_lead_is_refused_and_nothing_is_written(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add("disqualified")
    with pytest.raises(FailedPrecondition, match="disqualified"):
        await deals.open_deal(opening(lead_id), EventMeta.new())
    assert notification_count(deals) == 0


async def test_merged_lead_is_refused_naming_the_survivor(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    survivor = directory.add()
    merged = directory.add("merged", merged_into=survivor)
    with pytest.raises(FailedPrecondition, match=str(survivor)):
        await deals.open_deal(opening(merged), EventMeta.new())
    assert notification_count(deals) == 0


async def test_unreachable_lead_service_is_unavailable_and_nothing_is_written(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    await open_deal(deals, opening(lead_id))
    count = notification_count(deals)
    batches = deals.executor.batches
    directory.down = True

    with pytest.raises(Unavailable):
        await deals.open_deal(opening(lead_id, key="new"), EventMeta.new())

    assert notification_count(deals) == count
    assert deals.executor.batches == batches  # never reached the writer
    assert len(deals.list_deals_for_lead(lead_id)) == 1


async def test_a_bad_amount_is_refused_before_the_lead_is_asked(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    with pytest.raises(InvalidArgument) as raised:
        await deals.open_deal(opening(lead_id, amount=usd(-1)), EventMeta.new())
    assert raised.value.field == "amount.minor_units"
    with pytest.raises(InvalidArgument) as raised:
        await deals.open_deal(opening(lead_id, amount=Money(1, "ABC")), EventMeta.new())
    assert raised.value.field == "amount.currency"
    assert directory.asked == []
    assert notification_count(deals) == 0


# -- the life of a deal ----------------------------------------------------------------


async def test_a_deal_from_discovery_to_churn(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    lead_id = directory.add()
    deal = await open_deal(deals, opening(lead_id))
    meta = EventMeta.new()

    deal = await deals.change_deal_stage(
        ChangeDealStage(deal.id, "proposal", day(5)), meta
    )
    assert deal.stage is DealStage.PROPOSAL
    deal = await deals.update_deal_amount(
        UpdateDealAmount(deal.id, usd(10_000_00), day(6)), meta
    )
    assert deal.amount == usd(10_000_00)
    deal = await deals.win_deal(WinDeal(deal.id, None, day(9)), meta)
    assert (deal.stage, deal.closed_at, deal.amount) == (
        DealStage.WON,
        day(9),
        usd(10_000_00),
    )
    first = await deals.record_revenue(
        RecordRevenue(deal.id, usd(10_000_00), "new", day(10), "inv-1"), meta
    )
    again = await deals.record_revenue(
        RecordRevenue(deal.id, usd(10_000_00), "new", day(10), "inv-1"), meta
    )
    churn = await deals.record_revenue(
        RecordRevenue(deal.id, usd(-10_000_00), "churn", day(400)), meta
    )
    assert (first.created, again.created, churn.created) == (True, False, True)
    assert again.revenue_id == first.revenue_id
    assert churn.revenue_id != first.revenue_id

    stored = deals.get_deal(deal.id)
    assert [r.kind for r in stored.revenues] == ["new", "churn"]
    assert stored.recognized_revenue == usd(0)
    assert [type(e).__qualname__ for e in stored_events(deals, deal.id)] == [
        "Deal.Opened",
        "Deal.StageChanged",
        "Deal.AmountUpdated",
        "Deal.Won",
        "Deal.RevenueRecognized",
        "Deal.RevenueRecognized",
    ]
    with pytest.raises(FailedPrecondition, match="won"):
        await deals.lose_deal(LoseDeal(deal.id, "", "price", day(11)), meta)
    with pytest.raises(FailedPrecondition, match="currency"):
        await deals.record_revenue(
            RecordRevenue(deal.id, Money(5, "EUR"), "expansion", day(12)), meta
        )
    assert deals.get_deal(deal.id).version == 6


async def test_unknown_deal_is_not_found(deals: Deals) -> None:
    unknown = uuid.uuid4()
    meta = EventMeta.new()
    commands = [
        deals.change_deal_stage(ChangeDealStage(unknown, "proposal", T0), meta),
        deals.update_deal_amount(UpdateDealAmount(unknown, usd(1), T0), meta),
        deals.win_deal(WinDeal(unknown, None, T0), meta),
        deals.lose_deal(LoseDeal(unknown, "", "", T0), meta),
        deals.record_revenue(RecordRevenue(unknown, usd(1), "new", T0), meta),
    ]
    for command in commands:
        with pytest.raises(NotFound, match="deal_id"):
            await command
    with pytest.raises(NotFound):
        deals.get_deal(unknown)
    with pytest.raises(NotFound):
        deals.get_deal(lead_deals_id(unknown))  # an index is not a deal
    assert notification_count(deals) == 0


async def test_list_deals_for_lead_in_opening_order(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    ana, bob = directory.add(), directory.add()
    # recorded out of business-time order on purpose
    late = await open_deal(deals, opening(ana, occurred_at=day(3)))
    early = await open_deal(deals, opening(ana, occurred_at=day(1)))
    same_time = await open_deal(deals, opening(ana, occurred_at=day(3)))
    bobs = await open_deal(deals, opening(bob))

    assert [d.id for d in deals.list_deals_for_lead(ana)] == [
        early.id,
        late.id,
        same_time.id,
    ]
    assert [d.id for d in deals.list_deals_for_lead(bob)] == [bobs.id]
    assert deals.list_deals_for_lead(uuid.uuid4()) == []


# -- erasure ---------------------------------------------------------------------------


def _opened_state(deals: Deals, deal_id: uuid.UUID) -> dict[str, Any]:
    for notification in raw_notifications(deals):
        if notification.originator_id == deal_id and notification.topic.endswith(
            "Deal.Opened"
        ):
            state: dict[str, Any] = json.loads(notification.state)
            return state
    raise AssertionError(f"no Deal.Opened stored for {deal_id}")


async def test_erase_lead_shreds_its_deals_and_keeps_the_numbers(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    ana, bob = directory.add(), directory.add()
    open_one = await open_deal(deals, opening(ana))
    lost = await open_deal(deals, opening(ana, name="Second deal for Ana Lima"))
    await deals.lose_deal(
        LoseDeal(lost.id, LOSS_TEXT, "competitor", day(2)), EventMeta.new()
    )
    bobs = await open_deal(deals, opening(bob, name="Bob's deal"))

    # stored encrypted from the start: the raw record holds a token, not the name
    raw = _opened_state(deals, open_one.id)
    assert raw["name"].startswith(TOKEN_PREFIX)
    stored_bytes = b"".join(n.state for n in raw_notifications(deals))
    assert DEAL_NAME.encode() not in stored_bytes
    assert LOSS_TEXT.encode() not in stored_bytes
    assert deals.get_deal(open_one.id).name == DEAL_NAME  # readable before erasure
    assert deals.get_deal(lost.id).loss_detail == LOSS_TEXT

    erased = await deals.erase_lead(ana, occurred_at=day(30))

    assert sorted(erased) == sorted([open_one.id, lost.id])
    for deal_id in erased:
        deal = deals.get_deal(deal_id)
        assert deal.name == ""
        assert deal.loss_detail == ""
        assert deal.personal_data_erased is True
        assert deal.amount == usd(12_000_00)
        assert deal.lead_id == ana
        last = stored_events(deals, deal_id)[-1]
        assert type(last).__qualname__ == "Deal.PersonalDataErased"
        assert last.occurred_at == day(30)
        assert last.lead_id == ana
    assert deals.get_deal(lost.id).stage is DealStage.LOST
    assert deals.get_deal(lost.id).loss_reason == "competitor"
    # the token is still where it was, but nothing can decrypt it any more
    assert _opened_state(deals, open_one.id)["name"] == raw["name"]
    assert stored_events(deals, open_one.id)[0].name == ""
    # another lead's deals are untouched
    assert deals.get_deal(bobs.id).name == "Bob's deal"
    assert deals.get_deal(bobs.id).personal_data_erased is False


async def test_erase_lead_twice_records_the_tombstone_once(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    ana = directory.add()
    deal = await open_deal(deals, opening(ana))
    assert await deals.erase_lead(ana) == [deal.id]
    version = deals.get_deal(deal.id).version
    assert await deals.erase_lead(ana) == [deal.id]
    assert deals.get_deal(deal.id).version == version
    assert await deals.erase_lead(uuid.uuid4()) == []


async def test_after_erasure_new_personal_text_is_not_stored(
    deals: Deals, directory: FakeLeadDirectory
) -> None:
    ana = directory.add()
    deal = await open_deal(deals, opening(ana))
    await deals.erase_lead(ana)
    await deals.lose_deal(
        LoseDeal(deal.id, LOSS_TEXT, "price", day(3)), EventMeta.new()
    )
    stored_bytes = b"".join(n.state for n in raw_notifications(deals))
    assert LOSS_TEXT.encode() not in stored_bytes
    assert deals.get_deal(deal.id).loss_detail == ""
    assert deals.get_deal(deal.id).stage is DealStage.LOST
