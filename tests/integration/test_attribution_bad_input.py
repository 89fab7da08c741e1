"""Bad requests against the real AttributionService: refused, named, unrecorded.

Every case is one valid request with a single thing wrong. Each must fail with the
documented status code, name the offending field (INVALID_ARGUMENT: in the details and
in the first google.rpc.BadRequest violation), never leak a Python traceback, and write
no event.
The deals the cases refer to reach the service as deal events over real NATS.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from closedloop.attribution.v1 import attribution_service_pb2 as pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.bus.cloudevents import Envelope
from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.natsserver import NatsServer
from closedloop.protobuf import timestamp
from closedloop.testing.pages import pages_of
from closedloop.testing.refusals import assert_refused
from closedloop.testing.streams import eventually
from services.attribution.__main__ import bootstrap
from services.attribution.lead_journeys import LeadJourney, LeadJourneys
from services.attribution.models import Touch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from google.protobuf.message import Message

    from closedloop.eventstore.metadata import EventMeta
    from closedloop.service import Service

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

UNKNOWN_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000001"
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Ids:
    won_deal: str
    open_deal: str
    lost_deal: str


@dataclass
class Running:
    service: Service
    stub: attribution_service_pb2_grpc.AttributionServiceStub
    ids: Ids


class OneLead(LeadJourneys):
    """The lead context knows one lead, with two touches."""

    def __init__(self, lead_id: uuid.UUID) -> None:
        self.lead_id = lead_id

    async def journey(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadJourney | None:
        if lead_id != self.lead_id:
            return None
        return LeadJourney(
            lead_id,
            T0,
            (
                Touch("tp-1", "paid_search", "brand", T0 - timedelta(days=3), 0),
                Touch("tp-2", "direct", None, T0 + timedelta(days=2), 1),
            ),
        )


# -- the service ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """Its own server: the service's durable consumers read the whole deal stream."""
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


async def _publish(js: Any, message: Message, subject_id: str, sequence: int) -> None:
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=message.DESCRIPTOR.full_name,
        source="/closedloop/deal",
        subject=subject_id,
        time=datetime.now(UTC),
        sequence=sequence,
    )
    await js.publish(
        envelope.nats_subject, message.SerializeToString(), headers=envelope.headers()
    )


async def _deal(js: Any, lead_id: uuid.UUID, outcome: str) -> str:
    deal_id = str(uuid.uuid4())
    usd = Money(minor_units=100_000, currency="USD")
    await _publish(
        js,
        deal_events.DealOpened(
            deal_id=deal_id,
            lead_id=str(lead_id),
            amount=usd,
            occurred_at=timestamp(T0 + timedelta(days=1)),
        ),
        deal_id,
        1,
    )
    closed_at = timestamp(T0 + timedelta(days=4))
    if outcome == "won":
        await _publish(
            js,
            deal_events.DealWon(
                deal_id=deal_id, lead_id=str(lead_id), amount=usd, closed_at=closed_at
            ),
            deal_id,
            2,
        )
    elif outcome == "lost":
        await _publish(
            js,
            deal_events.DealLost(
                deal_id=deal_id, lead_id=str(lead_id), occurred_at=closed_at
            ),
            deal_id,
            2,
        )
    return deal_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def attribution(
    module_store_url: str,
    module_nats: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    nc = await nats.connect(module_nats.url)
    js = nc.jetstream()
    await provision_streams(js, StreamSettings())
    lead_id = uuid.uuid4()
    config = ServiceConfig.from_env(
        "attribution",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path_factory.mktemp("attribution-data")),
            "CLOSEDLOOP_NATS_URL": module_nats.url,
            "CLOSEDLOOP_ATTRIBUTION_GRPC_PORT": "0",
            "CLOSEDLOOP_ATTRIBUTION_STORE_URL": module_store_url,
        },
    )
    service = await bootstrap(config, lead_journeys=OneLead(lead_id), train_interval=0)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = attribution_service_pb2_grpc.AttributionServiceStub(channel)
            ids = Ids(
                won_deal=await _deal(js, lead_id, "won"),
                open_deal=await _deal(js, lead_id, "open"),
                lost_deal=await _deal(js, lead_id, "lost"),
            )
            running = Running(service=service, stub=stub, ids=ids)
            await _wait_for_the_deals(running)
            await _check_the_bases_are_valid(running)
            yield running
    finally:
        await service.stop(grace=1.0)
        await nc.close()


async def _wait_for_the_deals(running: Running) -> None:
    async def lost_is_known() -> bool:
        try:
            await running.stub.GetDealAttribution(
                pb.GetDealAttributionRequest(
                    deal_id=running.ids.lost_deal, model="linear"
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as error:
            return "lost" in (error.details() or "")
        return False

    await eventually(lost_is_known, timeout=30)  # the last deal event processed


async def _check_the_bases_are_valid(running: Running) -> None:
    """Each base request that the cases vary succeeds."""
    stub, ids = running.stub, running.ids
    reply = await stub.GetDealAttribution(_attribution(ids.won_deal), timeout=10)
    assert [c.amount.minor_units for c in reply.attribution.credits] == [50_000] * 2
    await stub.CompareModels(pb.CompareModelsRequest(deal_id=ids.won_deal), timeout=10)
    await stub.ListSpend(_list(), timeout=10)
    before = await _max_notification_id(running.service)
    await stub.RecordSpend(_spend(), timeout=10)
    assert await _max_notification_id(running.service) > before


# -- the requests the cases vary -----------------------------------------------------


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _usd(minor_units: int, currency: str = "USD") -> Money:
    return Money(minor_units=minor_units, currency=currency)


def _attribution(deal_id: str, **fields: Any) -> pb.GetDealAttributionRequest:
    request: dict[str, Any] = {"deal_id": deal_id, "model": "linear"}
    request.update(fields)
    return pb.GetDealAttributionRequest(**request)


def _spend(**fields: Any) -> pb.RecordSpendRequest:
    request: dict[str, Any] = {
        "channel": "paid_search",
        "campaign": "brand",
        "amount": _usd(250_000),
        "period_start": _ts(T0),
        "period_end": _ts(T0 + timedelta(days=31)),
    }
    request.update(fields)
    return pb.RecordSpendRequest(**request)


def _list(**fields: Any) -> pb.ListSpendRequest:
    request: dict[str, Any] = {
        "channel": "paid_search",
        "period_start": _ts(T0),
        "period_end": _ts(T0 + timedelta(days=31)),
    }
    request.update(fields)
    return pb.ListSpendRequest(**request)


def _future() -> Timestamp:
    return _ts(datetime.now(UTC) + timedelta(days=2))


def _year(year: int) -> Timestamp:
    return _ts(datetime(year, 6, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Case:
    method: str
    request: Callable[[Ids], Any]
    code: grpc.StatusCode
    #: INVALID_ARGUMENT: the offending field; otherwise a phrase the message must hold.
    field: str = ""
    says: str = ""


def case(
    case_id: str,
    method: str,
    request: Callable[[Ids], Any],
    code: grpc.StatusCode,
    field: str = "",
    says: str = "",
) -> Any:
    return pytest.param(Case(method, request, code, field, says), id=case_id)


CASES = [
    # GetDealAttribution
    case(
        "get-empty-deal-id",
        "GetDealAttribution",
        lambda _: _attribution(""),
        INVALID,
        "deal_id",
    ),
    case(
        "get-deal-id-not-uuid",
        "GetDealAttribution",
        lambda _: _attribution("deal-42"),
        INVALID,
        "deal_id",
    ),
    case(
        "get-missing-model",
        "GetDealAttribution",
        lambda i: _attribution(i.won_deal, model=""),
        INVALID,
        "model",
    ),
    *(
        case(
            f"get-unknown-model-{name}",
            "GetDealAttribution",
            lambda i, name=name: _attribution(i.won_deal, model=name),  # type: ignore[misc]
            INVALID,
            "model",
        )
        for name in ("u_shaped", "LINEAR", "shapley_subset", "linear\x00", "m" * 300)
    ),
    case(
        "get-unknown-model-beats-unknown-deal",
        "GetDealAttribution",
        lambda _: _attribution(UNKNOWN_ID, model="data_driven"),
        INVALID,
        "model",
    ),
    case(
        "get-unknown-deal",
        "GetDealAttribution",
        lambda _: _attribution(UNKNOWN_ID),
        NOT_FOUND,
        says="has no attribution",
    ),
    case(
        "get-open-deal",
        "GetDealAttribution",
        lambda i: _attribution(i.open_deal, model="markov"),
        NOT_FOUND,
        says="not won yet",
    ),
    case(
        "get-lost-deal",
        "GetDealAttribution",
        lambda i: _attribution(i.lost_deal, model="shapley"),
        NOT_FOUND,
        says="lost",
    ),
    # CompareModels
    case(
        "compare-empty-deal-id",
        "CompareModels",
        lambda _: pb.CompareModelsRequest(),
        INVALID,
        "deal_id",
    ),
    case(
        "compare-deal-id-not-uuid",
        "CompareModels",
        lambda _: pb.CompareModelsRequest(deal_id="not a deal"),
        INVALID,
        "deal_id",
    ),
    case(
        "compare-unknown-deal",
        "CompareModels",
        lambda _: pb.CompareModelsRequest(deal_id=UNKNOWN_ID),
        NOT_FOUND,
        says="has no attribution",
    ),
    case(
        "compare-open-deal",
        "CompareModels",
        lambda i: pb.CompareModelsRequest(deal_id=i.open_deal),
        NOT_FOUND,
        says="not won yet",
    ),
    # GetChannelModel
    case(
        "channel-model-missing",
        "GetChannelModel",
        lambda _: pb.GetChannelModelRequest(),
        INVALID,
        "model",
    ),
    case(
        "channel-model-heuristic",
        "GetChannelModel",
        lambda _: pb.GetChannelModelRequest(model="linear"),
        INVALID,
        "model",
    ),
    case(
        "channel-model-unknown",
        "GetChannelModel",
        lambda _: pb.GetChannelModelRequest(model="neural"),
        INVALID,
        "model",
    ),
    case(
        "channel-model-not-trained",
        "GetChannelModel",
        lambda _: pb.GetChannelModelRequest(model="markov"),
        NOT_FOUND,
        says="not been trained",
    ),
    # TrainModel
    case(
        "train-heuristic",
        "TrainModel",
        lambda _: pb.TrainModelRequest(model="time_decay"),
        INVALID,
        "model",
    ),
    case(
        "train-unknown",
        "TrainModel",
        lambda _: pb.TrainModelRequest(model="markov2"),
        INVALID,
        "model",
    ),
    case(
        "train-nothing-to-learn-from",
        "TrainModel",
        lambda _: pb.TrainModelRequest(),
        PRECONDITION,
        says="nothing to learn from",
    ),
    # RecordSpend
    case(
        "spend-missing-channel",
        "RecordSpend",
        lambda _: _spend(channel=""),
        INVALID,
        "channel",
    ),
    case(
        "spend-unknown-channel",
        "RecordSpend",
        lambda _: _spend(channel="television"),
        INVALID,
        "channel",
    ),
    case(
        "spend-channel-enum-name",
        "RecordSpend",
        lambda _: _spend(channel="CHANNEL_PAID_SEARCH"),
        INVALID,
        "channel",
    ),
    case(
        "spend-campaign-too-long",
        "RecordSpend",
        lambda _: _spend(campaign="c" * 257),
        INVALID,
        "campaign",
    ),
    case(
        "spend-campaign-control-characters",
        "RecordSpend",
        lambda _: _spend(campaign="brand\x07"),
        INVALID,
        "campaign",
    ),
    case(
        "spend-missing-amount",
        "RecordSpend",
        lambda _: pb.RecordSpendRequest(
            channel="email", period_start=_ts(T0), period_end=_ts(T0 + timedelta(1))
        ),
        INVALID,
        "amount",
    ),
    *(
        case(
            f"spend-negative-amount-{minor_units}",
            "RecordSpend",
            lambda _, minor_units=minor_units: _spend(amount=_usd(minor_units)),  # type: ignore[misc]
            INVALID,
            "amount.minor_units",
        )
        for minor_units in (-1, -(2**63))
    ),
    *(
        case(
            f"spend-bad-currency-{code or 'blank'}",
            "RecordSpend",
            lambda _, code=code: _spend(amount=_usd(100, code)),  # type: ignore[misc]
            INVALID,
            "amount.currency",
        )
        for code in ("", "ABC", "US", "XXX", "€")
    ),
    case(
        "spend-missing-period-start",
        "RecordSpend",
        lambda _: _spend(period_start=None),
        INVALID,
        "period_start",
    ),
    case(
        "spend-missing-period-end",
        "RecordSpend",
        lambda _: _spend(period_end=None),
        INVALID,
        "period_end",
    ),
    case(
        "spend-period-ends-before-it-starts",
        "RecordSpend",
        lambda _: _spend(period_end=_ts(T0 - timedelta(days=1))),
        INVALID,
        "period_end",
    ),
    case(
        "spend-empty-period",
        "RecordSpend",
        lambda _: _spend(period_end=_ts(T0)),
        INVALID,
        "period_end",
    ),
    case(
        "spend-period-start-1980",
        "RecordSpend",
        lambda _: _spend(period_start=_year(1980)),
        INVALID,
        "period_start",
    ),
    case(
        "spend-period-end-out-of-range",
        "RecordSpend",
        lambda _: _spend(period_end=Timestamp(seconds=10**12)),
        INVALID,
        "period_end",
    ),
    case(
        "spend-occurred-at-future",
        "RecordSpend",
        lambda _: _spend(occurred_at=_future()),
        INVALID,
        "occurred_at",
    ),
    case(
        "spend-occurred-at-1980",
        "RecordSpend",
        lambda _: _spend(occurred_at=_year(1980)),
        INVALID,
        "occurred_at",
    ),
    case(
        "spend-idempotency-key-too-long",
        "RecordSpend",
        lambda _: _spend(idempotency_key="k" * 201),
        INVALID,
        "idempotency_key",
    ),
    # ListSpend
    case(
        "list-unknown-channel",
        "ListSpend",
        lambda _: _list(channel="radio"),
        INVALID,
        "channel",
    ),
    case(
        "list-campaign-too-long",
        "ListSpend",
        lambda _: _list(campaign="c" * 257),
        INVALID,
        "campaign",
    ),
    case(
        "list-period-ends-before-it-starts",
        "ListSpend",
        lambda _: _list(period_end=_ts(T0 - timedelta(days=1))),
        INVALID,
        "period_end",
    ),
    case(
        "list-period-start-1980",
        "ListSpend",
        lambda _: _list(period_start=_year(1980)),
        INVALID,
        "period_start",
    ),
    case(
        "list-period-start-out-of-range",
        "ListSpend",
        lambda _: _list(period_start=Timestamp(seconds=-(10**12))),
        INVALID,
        "period_start",
    ),
    case(
        "list-negative-page-size",
        "ListSpend",
        lambda _: _list(page_size=-1),
        INVALID,
        "page_size",
    ),
    case(
        "list-junk-page-token",
        "ListSpend",
        lambda _: _list(page_token="bm90IGEgdG9rZW4"),  # noqa: S106 - a page token
        INVALID,
        "page_token",
    ),
]


# -- the shared check ----------------------------------------------------------------


async def _max_notification_id(service: Service) -> int:
    return await asyncio.to_thread(service.store.recorder.max_notification_id) or 0


async def _refused(running: Running, case: Case) -> None:
    await assert_refused(
        running.service.store,
        running.stub,
        case.method,
        case.request(running.ids),
        code=case.code,
        field=case.field,
        says=case.says,
    )


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_refused_and_records_nothing(
    attribution: Running, case: Case
) -> None:
    await _refused(attribution, case)


@pytest.mark.parametrize(
    ("method", "request_", "every"),
    [
        pytest.param(
            "RecordSpend",
            _spend(channel="carrier_pigeon", campaign="bell\x07", amount=_usd(-1)),
            ("channel", "campaign", "amount.minor_units"),
            id="spend",
        ),
        pytest.param(
            "RecordSpend",
            _spend(
                amount=_usd(5, "ZZZ"), period_start=_year(1980), occurred_at=_future()
            ),
            ("amount.currency", "period_start", "occurred_at"),
            id="spend-times",
        ),
        pytest.param(
            "GetDealAttribution",
            _attribution("deal 1", model="nonsense"),
            ("deal_id", "model"),
            id="attribution",
        ),
        pytest.param(
            "ListSpend",
            _list(channel="radio", period_start=_year(1980), page_size=-1),
            ("channel", "period_start", "page_size"),
            id="list",
        ),
    ],
)
async def test_every_bad_field_of_a_request_is_listed(
    attribution: Running, method: str, request_: Any, every: tuple[str, ...]
) -> None:
    """One refusal lists each bad field; the message stays the first one's."""
    await assert_refused(
        attribution.service.store,
        attribution.stub,
        method,
        request_,
        code=INVALID,
        field=every[0],
        every=every,
    )


async def test_the_refused_spend_left_only_the_valid_one(attribution: Running) -> None:
    listed = await attribution.stub.ListSpend(pb.ListSpendRequest(), timeout=10)
    assert [(s.channel, s.amount.minor_units) for s in listed.spends] == [
        ("paid_search", 250_000)
    ]


async def test_spend_comes_a_page_at_a_time_with_the_totals_of_all(
    attribution: Running,
) -> None:
    """Pages of any size add up to the whole list in its order; each has its totals.

    It records spend, so it comes after the checks that nothing else was recorded.
    """
    for days, channel, minor_units in (
        (40, "paid_search", 100_000),
        (10, "paid_social", 20_000),
        (30, "paid_search", 3_000),
        (20, "display", 400),
        (10, "paid_search", 50),
    ):
        await attribution.stub.RecordSpend(
            _spend(
                channel=channel,
                campaign="paged",
                amount=_usd(minor_units),
                period_start=_ts(T0 + timedelta(days=days)),
                period_end=_ts(T0 + timedelta(days=days + 7)),
            ),
            timeout=10,
        )
    whole = await attribution.stub.ListSpend(
        pb.ListSpendRequest(campaign="paged"), timeout=10
    )
    assert len(whole.spends) == 5
    assert whole.next_page_token == ""
    assert list(whole.totals) == [_usd(123_450)]

    async def listed(page_size: int, token: str) -> pb.ListSpendResponse:
        page: pb.ListSpendResponse = await attribution.stub.ListSpend(
            pb.ListSpendRequest(
                campaign="paged", page_size=page_size, page_token=token
            ),
            timeout=10,
        )
        return page

    for page_size in (1, 2, 5):
        pages = await pages_of(listed, page_size)
        assert len(pages) == -(-5 // page_size)
        assert [s for p in pages for s in p.spends] == list(whole.spends)
        assert all(list(p.totals) == list(whole.totals) for p in pages)

    first = await listed(2, "")
    # A token names a place in one list: another filter is another list.
    await assert_refused(
        attribution.service.store,
        attribution.stub,
        "ListSpend",
        pb.ListSpendRequest(
            campaign="paged", channel="paid_search", page_token=first.next_page_token
        ),
        code=INVALID,
        field="page_token",
    )
    # The page size may change from page to page.
    rest = await listed(3, first.next_page_token)
    assert [*first.spends, *rest.spends] == list(whole.spends)
    assert rest.next_page_token == ""
