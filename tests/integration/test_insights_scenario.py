"""The insights API answers the scripted quarter's questions with exact figures.

Every figure below was worked out by hand from the story.

The quarter (closedloop.testing.readside.scripted_quarter) is published
onto the context streams, the projector follows the log, and the insights service
answers over gRPC. Amounts are US cents.

Who is who:
  Ann  visitor v-ann: paid_search (spring-search) Jan 5, direct Jan 10; lead Jan 12,
       MQL Jan 15, SAL Jan 20, deal opened Feb 1, won Feb 20 at 1,200,000.
  Bob  visitor v-bob: paid_social (spring-social) Jan 8; lead Jan 9, MQL Jan 20,
       SAL Feb 5, deal opened Feb 10, lost Mar 1.
  Cara visitor v-cara: word_of_mouth, a customer's referral, Jan 3; lead Jan 4,
       SAL (no MQL) Jan 6, deal opened Jan 10, won Jan 31 at 800,000.
  Dan  visitor v-dan: paid_search Feb 1; lead Feb 2; his duplicate dan2 (lead Feb 3,
       MQL Feb 4) merged into him Feb 5; SAL Feb 10, opened Feb 15, won Mar 10 at
       300,000.
  Eve  visitor v-eve: paid_social Mar 1; lead Mar 2; disqualified Mar 5; erased
       Mar 20.
  Zed (paid_search) and Yan (paid_social) are visitors who never became leads.
  Q2: Fay (word of mouth, referral) won Apr 25 at 500,000; Gus (paid_social) won
      May 10 at 400,000; renewals: Ann 1,200,000 + 300,000 expansion, Cara 800,000 -
      200,000 contraction, Dan 300,000.
Attribution of the Q1 wins: linear gives Ann's 1,200,000 half to paid_search, half
to direct; first_touch all to paid_search. Spend: paid_search 900,000 over Q1
(310,000 / 280,000 / 310,000 by days), paid_social 200,000 in February.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING

import grpc
import nats
import pytest
import pytest_asyncio

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.config import ServiceConfig
from closedloop.consent.v1 import types_pb2 as c
from closedloop.grpckit.errors import field_violations
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.natsserver import NatsServer
from closedloop.projections import discover
from closedloop.testing.pages import pages_of
from closedloop.testing.readside import (
    SECRET_KEY,
    ident,
    publish,
    scripted_quarter,
    wait_caught_up,
    wait_for_log,
)
from closedloop.testing.streams import eventually
from services.insights.__main__ import Insights, bootstrap
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

Q1 = pb.Period(from_month="2026-01", to_month="2026-03")
Q2 = pb.Period(from_month="2026-04", to_month="2026-06")
DAY = 86_400


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def insights(
    module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[
    tuple[insights_service_pb2_grpc.InsightsServiceStub, Insights, dict[str, str]]
]:
    own_nats_server = module_nats
    tmp_path = tmp_path_factory.mktemp("insights")
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    events = scripted_quarter().log.events
    await publish(nc, events)
    await wait_for_log(nc, len(events))
    await nc.close()
    env = {
        "CLOSEDLOOP_DATA_DIR": str(tmp_path),
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        "CLOSEDLOOP_SECRET_KEY": SECRET_KEY.decode(),
        "CLOSEDLOOP_INSIGHTS_GRPC_PORT": "0",
    }
    projections = [cls() for cls in discover({}).projections.values()]
    projector, task = await start_projector(ProjectorConfig.from_env(env), projections)
    await wait_caught_up(projector)
    service = await bootstrap(ServiceConfig.from_env("insights", env), environ=env)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.server.port}")
    yield insights_service_pb2_grpc.InsightsServiceStub(channel), service, env
    await channel.close()
    await service.stop()
    await stop_projector(projector, task)


Fixture = tuple[insights_service_pb2_grpc.InsightsServiceStub, Insights, dict[str, str]]


def by_channel(rows: list[pb.RevenueRow]) -> dict[str, pb.RevenueRow]:
    return {row.channel: row for row in rows}


async def test_revenue_by_channel_with_roi_roas_and_cac(insights: Fixture) -> None:
    stub, _, _ = insights
    linear = await stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(model="linear", period=Q1)
    )
    rows = by_channel(list(linear.rows))
    assert set(rows) == {"paid_search", "word_of_mouth", "direct", "paid_social"}
    search = rows["paid_search"]
    # Ann's half (600,000) and all of Dan (300,000), against 900,000 of spend.
    assert (search.revenue.minor_units, search.spend.minor_units) == (900_000, 900_000)
    assert (search.roi, search.roas) == (0.0, 1.0)
    # Half a customer (Ann) and one (Dan): 900,000 / 1.5.
    assert search.customers == 1.5
    assert search.cac_minor_units == 600_000
    assert rows["direct"].revenue.minor_units == 600_000
    assert not rows["direct"].HasField("roi")
    social = rows["paid_social"]
    assert (social.revenue.minor_units, social.spend.minor_units) == (0, 200_000)
    assert (social.roi, social.roas) == (-1.0, 0.0)
    assert not social.HasField("cac_minor_units")
    assert [m.minor_units for m in linear.total_revenue] == [2_300_000]
    assert [m.minor_units for m in linear.total_spend] == [1_100_000]
    assert linear.model_keys == ["linear(lookback=7776000s)"]

    first = await stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(model="first_touch", period=Q1)
    )
    search = by_channel(list(first.rows))["paid_search"]
    assert search.revenue.minor_units == 1_500_000
    assert search.roi == pytest.approx(600_000 / 900_000)
    assert search.roas == pytest.approx(1_500_000 / 900_000)
    assert (search.customers, search.cac_minor_units) == (2.0, 450_000)

    february = await stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(
            model="linear", period=pb.Period(from_month="2026-02", to_month="2026-02")
        )
    )
    search = by_channel(list(february.rows))["paid_search"]
    assert (search.revenue.minor_units, search.spend.minor_units) == (600_000, 280_000)
    assert search.roi == pytest.approx(320_000 / 280_000)

    campaigns = await stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(
            model="linear", period=Q1, group_by=pb.GROUP_BY_CAMPAIGN, by_month=True
        )
    )
    table = {
        (r.month, r.campaign): (r.revenue.minor_units, r.spend.minor_units)
        for r in campaigns.rows
    }
    assert table == {
        ("2026-01", ""): (800_000, 0),
        ("2026-01", "spring-search"): (0, 310_000),
        ("2026-02", ""): (600_000, 0),
        ("2026-02", "spring-search"): (600_000, 280_000),
        ("2026-02", "spring-social"): (0, 200_000),
        ("2026-03", "spring-search"): (300_000, 310_000),
    }


async def test_the_revenue_rows_come_a_page_at_a_time(insights: Fixture) -> None:
    """Pages of any size add up to the whole table; totals and models on each page."""
    stub, _, _ = insights
    asked = pb.GetRevenueByChannelRequest(
        model="linear", period=Q1, group_by=pb.GROUP_BY_CAMPAIGN, by_month=True
    )
    whole = await stub.GetRevenueByChannel(asked)
    assert len(whole.rows) == 6
    assert whole.next_page_token == ""

    async def revenue(page_size: int, token: str) -> pb.GetRevenueByChannelResponse:
        request = pb.GetRevenueByChannelRequest()
        request.CopyFrom(asked)
        request.page_size, request.page_token = page_size, token
        page: pb.GetRevenueByChannelResponse = await stub.GetRevenueByChannel(request)
        return page

    described = ("model", "model_keys", "total_revenue", "total_spend")
    for page_size in (1, 4, 6):
        pages = await pages_of(revenue, page_size)
        assert len(pages) == -(-6 // page_size)
        assert [r for p in pages for r in p.rows] == list(whole.rows)
        for page in pages:
            assert [getattr(page, f) for f in described] == [
                getattr(whole, f) for f in described
            ]
            assert page.available_models == whole.available_models

    # A token names a place in one table: another model, period, grouping,
    # conversion or monthly split is another table.
    first = await revenue(2, "")
    campaigns, monthly = pb.GROUP_BY_CAMPAIGN, True
    for request in (
        pb.GetRevenueByChannelRequest(
            model="first_touch", period=Q1, group_by=campaigns, by_month=monthly
        ),
        pb.GetRevenueByChannelRequest(
            model="linear", period=Q2, group_by=campaigns, by_month=monthly
        ),
        pb.GetRevenueByChannelRequest(
            model="linear",
            period=Q1,
            group_by=pb.GROUP_BY_CHANNEL_AND_CAMPAIGN,
            by_month=monthly,
        ),
        pb.GetRevenueByChannelRequest(
            model="linear",
            period=Q1,
            group_by=campaigns,
            by_month=monthly,
            conversion=pb.CONVERSION_REVENUE_RECOGNIZED,
        ),
        pb.GetRevenueByChannelRequest(model="linear", period=Q1, group_by=campaigns),
    ):
        request.page_token = first.next_page_token
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetRevenueByChannel(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(error.value)] == ["page_token"]


async def test_do_paid_search_leads_close_more_often_than_paid_social_ones(
    insights: Fixture,
) -> None:
    stub, _, _ = insights
    funnel = await stub.GetFunnel(pb.GetFunnelRequest(period=Q1))
    rows = {row.channel: row for row in funnel.rows}
    assert set(rows) == {"paid_search", "paid_social", "word_of_mouth"}
    search, social, referral = (
        rows["paid_search"],
        rows["paid_social"],
        rows["word_of_mouth"],
    )
    counts = (
        "visitors",
        "visitors_identified",
        "leads",
        "mqls",
        "sals",
        "opportunities",
        "won",
        "disqualified",
    )
    assert [getattr(search, n) for n in counts] == [3, 2, 2, 2, 2, 2, 2, 0]
    assert [getattr(social, n) for n in counts] == [3, 2, 2, 1, 1, 1, 0, 1]
    # Cara went to SAL without being an MQL: she passed the MQL stage.
    assert [getattr(referral, n) for n in counts] == [1, 1, 1, 1, 1, 1, 1, 0]
    assert (search.close_rate, social.close_rate) == (1.0, 0.0)
    assert search.close_rate > social.close_rate
    assert social.lead_to_mql_rate == 0.5
    assert search.visitor_to_lead_rate == pytest.approx(2 / 3)
    # Ann 3 days, Dan 2 days (his duplicate was an MQL on Feb 4): median 2.5 days.
    assert search.median_lead_to_mql.seconds == int(2.5 * DAY)
    # Ann 19 days (Feb 1 -> Feb 20), Dan 23 days (Feb 15 -> Mar 10): median 21.
    assert search.median_opportunity_to_won.seconds == 21 * DAY
    assert not referral.HasField("median_lead_to_mql")
    assert [m.minor_units for m in search.won_revenue] == [1_500_000]
    assert (funnel.total.visitors, funnel.total.leads, funnel.total.won) == (7, 5, 3)

    last = await stub.GetFunnel(
        pb.GetFunnelRequest(period=Q1, touch=pb.TOUCH_LAST_BEFORE_LEAD)
    )
    rows = {row.channel: row for row in last.rows}
    # Ann's last touch before she became a lead was direct.
    assert (rows["direct"].leads, rows["direct"].won) == (1, 1)
    assert (rows["paid_search"].leads, rows["paid_search"].visitors) == (1, 2)

    mql = await stub.GetFunnel(
        pb.GetFunnelRequest(period=Q1, cohort_stage=pb.COHORT_STAGE_MQL)
    )
    assert {r.channel: r.leads for r in mql.rows if r.leads} == {
        "paid_search": 2,
        "paid_social": 1,
    }


async def test_a_persons_journey_by_email_and_by_lead(insights: Fixture) -> None:
    stub, _, _ = insights
    ann = await stub.GetCustomerJourney(
        pb.GetCustomerJourneyRequest(email="ann@example.com")
    )
    assert ann.lead_id == ident("lead", "ann")
    assert ann.stage == "customer"
    assert len(ann.entries) == 16
    assert [e.summary for e in ann.entries[:3]] == [
        "touch paid_search / spring-search (ad_click)",
        "touch direct (page_view)",
        "lead captured",
    ]
    assert ann.entries[-1].summary == "revenue expansion 300000 USD"
    dan = await stub.GetCustomerJourney(
        pb.GetCustomerJourneyRequest(lead_id=ident("lead", "dan2"))
    )
    assert dan.lead_id == ident("lead", "dan")
    assert len(dan.lead_ids) == 2
    # An erased person is not found by email any more; by lead id, without data.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetCustomerJourney(
            pb.GetCustomerJourneyRequest(email="eve@example.com")
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    eve = await stub.GetCustomerJourney(
        pb.GetCustomerJourneyRequest(lead_id=ident("lead", "eve"))
    )
    assert eve.erased


async def test_the_journey_comes_a_page_at_a_time(insights: Fixture) -> None:
    """Pages of any size add up to the whole journey; the person is on each page."""
    stub, _, _ = insights
    whole = await stub.GetCustomerJourney(
        pb.GetCustomerJourneyRequest(email="ann@example.com")
    )
    assert len(whole.entries) == 16
    assert whole.next_page_token == ""

    async def journey(page_size: int, token: str) -> pb.GetCustomerJourneyResponse:
        page: pb.GetCustomerJourneyResponse = await stub.GetCustomerJourney(
            pb.GetCustomerJourneyRequest(
                email="ann@example.com", page_size=page_size, page_token=token
            )
        )
        return page

    person = ("lead_id", "lead_ids", "anonymous_ids", "stage", "created_at", "erased")
    for page_size in (1, 3, 16):
        pages = await pages_of(journey, page_size)
        assert len(pages) == -(-16 // page_size)
        assert [e for p in pages for e in p.entries] == list(whole.entries)
        for page in pages:
            # The stage is "customer" on the pages before the win as well.
            assert [getattr(page, f) for f in person] == [
                getattr(whole, f) for f in person
            ]

    first = await journey(5, "")
    # A token names a place in one journey: the same person asked by lead id, or
    # another person, is another request.
    for other in (
        pb.GetCustomerJourneyRequest(
            lead_id=ident("lead", "ann"), page_token=first.next_page_token
        ),
        pb.GetCustomerJourneyRequest(
            email="cara@example.com", page_token=first.next_page_token
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetCustomerJourney(other)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(error.value)] == ["page_token"]


async def test_consent_per_person_and_counts_per_purpose(insights: Fixture) -> None:
    stub, _, _ = insights
    bob = await stub.GetConsentStatus(
        pb.GetConsentStatusRequest(email="bob@example.com", include_history=True)
    )
    # His email's record (newsletter, before he was a lead) and his lead's (GPC).
    assert len(bob.subjects) == 2
    effective = {(s.purpose, s.channel): s.state for s in bob.effective}
    assert effective == {
        (c.PURPOSE_NEWSLETTER, c.CHANNEL_EMAIL): c.CONSENT_STATE_OPTED_IN,
        (c.PURPOSE_PROFILING, c.CHANNEL_UNSPECIFIED): c.CONSENT_STATE_OPTED_OUT,
        (
            c.PURPOSE_THIRD_PARTY_SHARING,
            c.CHANNEL_UNSPECIFIED,
        ): c.CONSENT_STATE_OPTED_OUT,
    }
    gpc = [h for s in bob.subjects for h in s.history if h.method == c.METHOD_GPC]
    assert len(gpc) == 2
    assert all(
        h.notice_version == "privacy-2026-01" for s in bob.subjects for h in s.history
    )

    ann = await stub.GetConsentStatus(
        pb.GetConsentStatusRequest(lead_id=ident("lead", "ann"))
    )
    states = {(s.purpose, s.state) for s in ann.effective}
    assert states == {
        (c.PURPOSE_NEWSLETTER, c.CONSENT_STATE_OPTED_IN),
        (c.PURPOSE_MARKETING_EMAIL, c.CONSENT_STATE_OPTED_OUT),
    }
    eve = await stub.GetConsentStatus(
        pb.GetConsentStatusRequest(lead_id=ident("lead", "eve"))
    )
    assert all(s.erased for s in eve.subjects)
    assert {s.state for s in eve.effective} == {c.CONSENT_STATE_OPTED_OUT}

    everyone = await stub.GetConsentStatus(pb.GetConsentStatusRequest())
    counts = {
        (n.purpose, n.channel): (n.opted_in, n.opted_out, n.pending_confirmation)
        for n in everyone.counts
    }
    assert counts == {
        (c.PURPOSE_NEWSLETTER, c.CHANNEL_EMAIL): (2, 1, 0),
        (c.PURPOSE_MARKETING_EMAIL, c.CHANNEL_EMAIL): (0, 1, 0),
        (c.PURPOSE_ALL, c.CHANNEL_UNSPECIFIED): (0, 2, 0),
        (c.PURPOSE_PROFILING, c.CHANNEL_UNSPECIFIED): (0, 1, 0),
        (c.PURPOSE_THIRD_PARTY_SHARING, c.CHANNEL_UNSPECIFIED): (0, 1, 0),
    }


async def test_a_persons_audit_trail_comes_a_page_at_a_time(
    insights: Fixture,
) -> None:
    """Pages of any size add up to every record's trail; records and fold on each."""
    stub, _, _ = insights
    whole = await stub.GetConsentStatus(
        pb.GetConsentStatusRequest(email="bob@example.com", include_history=True)
    )
    trails = [list(s.history) for s in whole.subjects]
    # His lead's record (the two GPC changes), then his email's (the newsletter).
    assert [len(trail) for trail in trails] == [2, 1]
    assert whole.next_page_token == ""

    async def consent(page_size: int, token: str) -> pb.GetConsentStatusResponse:
        page: pb.GetConsentStatusResponse = await stub.GetConsentStatus(
            pb.GetConsentStatusRequest(
                email="bob@example.com",
                include_history=True,
                page_size=page_size,
                page_token=token,
            )
        )
        return page

    record = ("subject_aggregate_id", "lead_id", "erased", "erased_at", "states")
    # Entries of each record on each page: a trail goes on on the next page.
    splits = {1: [[1, 0], [1, 0], [0, 1]], 2: [[2, 0], [0, 1]], 3: [[2, 1]]}
    for page_size, split in splits.items():
        pages = await pages_of(consent, page_size)
        assert [[len(s.history) for s in p.subjects] for p in pages] == split
        for index, trail in enumerate(trails):
            assert [h for p in pages for h in p.subjects[index].history] == trail
        for page in pages:
            assert list(page.effective) == list(whole.effective)
            assert [[getattr(s, f) for f in record] for s in page.subjects] == [
                [getattr(s, f) for f in record] for s in whole.subjects
            ]

    # Without the trail, or without a person, nothing pages.
    for unpaged in (
        pb.GetConsentStatusRequest(email="bob@example.com", page_size=1),
        pb.GetConsentStatusRequest(page_size=1),
    ):
        answer = await stub.GetConsentStatus(unpaged)
        assert answer.next_page_token == ""
    assert list(answer.counts) == list(
        (await stub.GetConsentStatus(pb.GetConsentStatusRequest())).counts
    )

    # A token names a place in one person's trail: another person, the same one
    # by lead id, or the records without their trail, is another request.
    first = await consent(1, "")
    for other in (
        pb.GetConsentStatusRequest(email="ann@example.com", include_history=True),
        pb.GetConsentStatusRequest(lead_id=ident("lead", "bob"), include_history=True),
        pb.GetConsentStatusRequest(email="bob@example.com"),
        pb.GetConsentStatusRequest(include_history=True),
    ):
        other.page_token = first.next_page_token
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetConsentStatus(other)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(error.value)] == ["page_token"]


async def test_customer_value_nrr_and_earned_growth(insights: Fixture) -> None:
    stub, _, _ = insights
    value = await stub.GetCustomerValue(pb.GetCustomerValueRequest(period=Q2))
    assert value.previous_period == Q1
    (usd,) = value.growth
    # Q1: 1,200,000 + 800,000 + 300,000. Q2 from the same customers:
    # Ann 1,500,000, Cara 600,000, Dan 300,000; new: Fay (earned) 500,000,
    # Gus (bought) 400,000.
    assert (usd.revenue_last_period, usd.revenue_this_period) == (2_300_000, 3_300_000)
    assert (usd.existing_customers, usd.existing_revenue_this_period) == (3, 2_400_000)
    assert (usd.new_customers, usd.new_earned_customers, usd.new_earned_revenue) == (
        2,
        1,
        500_000,
    )
    assert usd.nrr == pytest.approx(24 / 23)
    assert usd.enc == pytest.approx(5 / 23)
    # EGR = NRR + ENC - 100% = 29/23 - 1.
    assert usd.egr == pytest.approx(6 / 23)
    assert usd.total_growth == pytest.approx(10 / 23)
    acquisitions = {
        (a.acquisition, a.customers, a.lifetime_value) for a in value.acquisitions
    }
    assert acquisitions == {
        (pb.ACQUISITION_BOUGHT, 3, 3_700_000),
        (pb.ACQUISITION_EARNED, 2, 1_900_000),
    }
    assert [(v.lead_id, v.lifetime_value[0].minor_units) for v in value.customers] == [
        (ident("lead", "ann"), 2_700_000),
        (ident("lead", "cara"), 1_400_000),
        (ident("lead", "dan"), 600_000),
        (ident("lead", "fay"), 500_000),
        (ident("lead", "gus"), 400_000),
    ]
    cara = value.customers[1]
    assert [(m.month, m.amount.minor_units) for m in cara.monthly] == [
        ("2026-01", 800_000),
        ("2026-04", 600_000),
    ]
    assert cara.acquisition == pb.ACQUISITION_EARNED


async def test_the_customers_come_a_page_at_a_time(insights: Fixture) -> None:
    """Pages of any size add up to the whole ranking; the figures are on each page."""
    stub, _, _ = insights
    whole = await stub.GetCustomerValue(pb.GetCustomerValueRequest(period=Q2))
    assert len(whole.customers) == 5
    assert whole.next_page_token == ""

    async def value(page_size: int, token: str) -> pb.GetCustomerValueResponse:
        page: pb.GetCustomerValueResponse = await stub.GetCustomerValue(
            pb.GetCustomerValueRequest(period=Q2, page_size=page_size, page_token=token)
        )
        return page

    for page_size in (1, 2, 5):
        pages = await pages_of(value, page_size)
        assert len(pages) == -(-5 // page_size)
        assert [c for p in pages for c in p.customers] == list(whole.customers)
        for page in pages:
            assert (page.period, page.previous_period) == (Q2, Q1)
            assert list(page.growth) == list(whole.growth)
            assert list(page.acquisitions) == list(whole.acquisitions)
            assert list(page.cohorts) == list(whole.cohorts)

    # limit, the size before paging, still lists the first customers.
    top = await stub.GetCustomerValue(pb.GetCustomerValueRequest(period=Q2, limit=2))
    assert list(top.customers) == list(whole.customers[:2])
    rest = await stub.GetCustomerValue(
        pb.GetCustomerValueRequest(period=Q2, limit=2, page_token=top.next_page_token)
    )
    assert list(rest.customers) == list(whole.customers[2:4])

    # A token names a place in one ranking: another period, or another limit, is
    # another ranking.
    for other in (
        pb.GetCustomerValueRequest(period=Q1, page_token=top.next_page_token),
        pb.GetCustomerValueRequest(period=Q2, page_token=top.next_page_token),
        pb.GetCustomerValueRequest(period=Q2, page_token="bm90IGEgdG9rZW4"),  # noqa: S106
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetCustomerValue(other)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(error.value)] == ["page_token"]


async def test_list_projections_shows_position_and_lag(insights: Fixture) -> None:
    stub, _, _ = insights

    async def caught_up() -> pb.ListProjectionsResponse | None:
        reply = await stub.ListProjections(pb.ListProjectionsRequest())
        return reply if reply.log_position > 0 else None

    reply = await eventually(caught_up, timeout=15)
    assert {p.name for p in reply.projections} == set(discover({}).names())
    for p in reply.projections:
        assert p.state == pb.PROJECTION_STATE_ACTIVE
        assert (p.position, p.lag, p.parked) == (reply.log_position, 0, 0)
        assert p.version == p.installed_version == discover({}).get(p.name).version


@pytest.mark.parametrize(
    ("method", "request_message", "code", "field"),
    [
        (
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(),
            "INVALID_ARGUMENT",
            "lead_id",
        ),
        (
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(lead_id="nope"),
            "INVALID_ARGUMENT",
            "lead_id",
        ),
        (
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(email="nobody"),
            "INVALID_ARGUMENT",
            "email",
        ),
        (
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(
                email="ann@example.com",
                page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
            ),
            "INVALID_ARGUMENT",
            "page_token",
        ),
        (
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(lead_id=ident("lead", "nobody")),
            "NOT_FOUND",
            "",
        ),
        (
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(),
            "INVALID_ARGUMENT",
            "model",
        ),
        (
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(model="shapley"),
            "NOT_FOUND",
            "",
        ),
        (
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(
                model="linear", period=pb.Period(from_month="2026-13")
            ),
            "INVALID_ARGUMENT",
            "period.from_month",
        ),
        (
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(model="linear", page_size=-1),
            "INVALID_ARGUMENT",
            "page_size",
        ),
        (
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(
                model="linear",
                page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
            ),
            "INVALID_ARGUMENT",
            "page_token",
        ),
        (
            "GetFunnel",
            pb.GetFunnelRequest(
                period=pb.Period(from_month="2026-03", to_month="2026-01")
            ),
            "INVALID_ARGUMENT",
            "period.to_month",
        ),
        (
            "GetCustomerValue",
            pb.GetCustomerValueRequest(),
            "INVALID_ARGUMENT",
            "period",
        ),
        (
            "GetCustomerValue",
            pb.GetCustomerValueRequest(period=Q2, limit=-1),
            "INVALID_ARGUMENT",
            "limit",
        ),
        (
            "GetCustomerValue",
            pb.GetCustomerValueRequest(period=Q2, page_size=-1),
            "INVALID_ARGUMENT",
            "page_size",
        ),
        (
            "GetConsentStatus",
            pb.GetConsentStatusRequest(email="zoe@example.com"),
            "NOT_FOUND",
            "",
        ),
        (
            "GetConsentStatus",
            pb.GetConsentStatusRequest(email="bob@example.com", page_size=-1),
            "INVALID_ARGUMENT",
            "page_size",
        ),
        (
            "GetConsentStatus",
            pb.GetConsentStatusRequest(
                email="bob@example.com",
                include_history=True,
                page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
            ),
            "INVALID_ARGUMENT",
            "page_token",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    insights: Fixture, method: str, request_message: object, code: str, field: str
) -> None:
    stub, _, _ = insights
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await getattr(stub, method)(request_message)
    assert error.value.code().name == code
    if field:
        assert error.value.details().startswith(f"{field}:")
        assert field_violations(error.value)[0].field == field


@pytest.mark.parametrize(
    ("method", "request_message", "every"),
    [
        pytest.param(
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(lead_id="nope", page_size=-1),
            ("lead_id", "page_size"),
            id="journey",
        ),
        pytest.param(
            "GetCustomerJourney",
            pb.GetCustomerJourneyRequest(page_token="junk"),  # noqa: S106
            ("lead_id", "page_token"),
            id="journey-nobody",
        ),
        pytest.param(
            "GetCustomerValue",
            pb.GetCustomerValueRequest(limit=-1),
            ("limit", "period"),
            id="value",
        ),
        pytest.param(
            "GetCustomerValue",
            pb.GetCustomerValueRequest(
                period=pb.Period(from_month="2026-13", to_month="June"), limit=-1
            ),
            ("limit", "period.from_month", "period.to_month"),
            id="value-months",
        ),
        pytest.param(
            "GetCustomerValue",
            pb.GetCustomerValueRequest(page_size=-1, page_token="junk"),  # noqa: S106
            ("period", "page_size", "page_token"),
            id="value-page",
        ),
        pytest.param(
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(period=pb.Period(from_month="2026-13")),
            ("model", "period.from_month"),
            id="revenue",
        ),
        pytest.param(
            "GetRevenueByChannel",
            pb.GetRevenueByChannelRequest(page_size=-1, page_token="junk"),  # noqa: S106
            ("model", "page_size", "page_token"),
            id="revenue-page",
        ),
        pytest.param(
            "GetConsentStatus",
            pb.GetConsentStatusRequest(
                email="nobody",
                page_size=-1,
                page_token="junk",  # noqa: S106
            ),
            ("email", "page_size", "page_token"),
            id="consent-page",
        ),
        pytest.param(
            "GetFunnel",
            pb.GetFunnelRequest(
                period=pb.Period(from_month="2026-00", to_month="2026-1")
            ),
            ("period.from_month", "period.to_month"),
            id="funnel",
        ),
    ],
)
async def test_every_bad_field_of_a_request_is_listed(
    insights: Fixture, method: str, request_message: object, every: tuple[str, ...]
) -> None:
    """One refusal lists each bad field; the message stays the first one's."""
    stub, _, _ = insights
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await getattr(stub, method)(request_message)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{every[0]}:")
    assert [v.field for v in field_violations(error.value)] == list(every)


async def test_a_read_model_not_built_yet_is_a_failed_precondition(
    insights: Fixture, tmp_path: Path
) -> None:
    env = {
        "CLOSEDLOOP_DATA_DIR": str(tmp_path / "empty"),
        "CLOSEDLOOP_NATS_URL": "nats://127.0.0.1:1",
        "CLOSEDLOOP_INSIGHTS_GRPC_PORT": "0",
    }
    empty = await bootstrap(ServiceConfig.from_env("insights", env), environ=env)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{empty.server.port}"
        ) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.GetFunnel(pb.GetFunnelRequest())
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (
                "closedloop projections add funnel_by_channel" in error.value.details()
            )
            listed = await stub.ListProjections(pb.ListProjectionsRequest())
            assert {p.state for p in listed.projections} == {
                pb.PROJECTION_STATE_NOT_ADDED
            }
            assert listed.log_position == -1
    finally:
        await empty.stop()


async def report(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apps.cli",
        "report",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_reports_print_json_and_draw_charts(
    insights: Fixture, tmp_path: Path
) -> None:
    _, service, _ = insights
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")},
        "CLOSEDLOOP_INSIGHTS_ADDRESS": f"127.0.0.1:{service.server.port}",
    }
    charts = {
        name: tmp_path / f"{name}.png"
        for name in ("revenue", "funnel", "journey", "consent", "value")
    }
    results = await asyncio.gather(
        report(
            env,
            "revenue",
            "--model",
            "linear",
            "--from",
            "2026-01",
            "--to",
            "2026-03",
            "--json",
            "--chart",
            str(charts["revenue"]),
        ),
        report(
            env,
            "funnel",
            "--from",
            "2026-01",
            "--to",
            "2026-03",
            "--chart",
            str(charts["funnel"]),
        ),
        report(
            env,
            "journey",
            "--email",
            "ann@example.com",
            "--chart",
            str(charts["journey"]),
        ),
        report(env, "consent", "--chart", str(charts["consent"])),
        report(
            env,
            "value",
            "--from",
            "2026-04",
            "--to",
            "2026-06",
            "--json",
            "--chart",
            str(charts["value"]),
        ),
        report(env, "revenue", "--model", "nonesuch"),
    )
    for code, _, err in results[:5]:
        assert code == 0, err
    revenue = json.loads(results[0][1])
    search = next(r for r in revenue["rows"] if r["channel"] == "paid_search")
    assert search["revenue"] == {"minor_units": "900000", "currency": "USD"}
    assert search["cac_minor_units"] == 600_000
    assert "paid_search" in results[1][1]
    assert "100.0%" in results[1][1]  # paid search's close rate
    assert "stage -> sal" in results[2][1]
    assert "newsletter" in results[3][1]
    assert json.loads(results[4][1])["growth"][0]["nrr"] == pytest.approx(24 / 23)
    assert results[5][0] == 1
    assert "NOT_FOUND" in results[5][2]
    for path in charts.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
