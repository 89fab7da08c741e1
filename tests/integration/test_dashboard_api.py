"""The dashboard's JSON endpoints answer exactly what the insights API answers.

The scripted quarter (closedloop.testing.readside.scripted_quarter, worked
out by hand in test_insights_scenario.py) is published onto the context streams, the
projector follows the log in process, the insights service answers over gRPC, and
the dashboard is served on a free loopback port in front of it.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import nats
import pytest
import pytest_asyncio
from yarl import URL

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.config import ConfigError, ServiceConfig
from closedloop.consent.v1 import types_pb2 as c
from closedloop.grpckit.paging import DEFAULT_PAGE_SIZE
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.natsserver import NatsServer
from closedloop.projections import discover
from closedloop.protobuf import enum_name
from closedloop.testing.pages import pages_of
from closedloop.testing.readside import (
    SECRET_KEY,
    Scenario,
    ident,
    publish,
    scripted_quarter,
    wait_caught_up,
    wait_for_log,
)
from closedloop.testing.streams import eventually
from services.insights.__main__ import bootstrap
from services.insights.web import (
    dashboard_url,
    dial_address,
    http_settings,
    start_dashboard,
)
from services.insights.web_handlers import DASHBOARD_DIR
from services.insights.web_json import money_text
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

Q1 = {"from": "2026-01", "to": "2026-03"}


class Running:
    def __init__(
        self,
        stub: insights_service_pb2_grpc.InsightsServiceStub,
        http: aiohttp.ClientSession,
        url: str,
        scenario: Scenario,
        nats_url: str,
    ) -> None:
        self.stub = stub
        self.http = http
        self.url = url
        self.scenario = scenario
        self.nats_url = nats_url

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path, params=params) as response:
            return response.status, await response.json()

    async def ok(self, path: str, **params: str) -> Any:
        status, body = await self.get(path, **params)
        assert status == 200, body
        return body


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(
    module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    tmp_path = tmp_path_factory.mktemp("dashboard")
    scenario = scripted_quarter()
    nc = await nats.connect(module_nats.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await publish(nc, scenario.log.events)
    await wait_for_log(nc, len(scenario.log.events))
    await nc.close()
    env = {
        "CLOSEDLOOP_DATA_DIR": str(tmp_path),
        "CLOSEDLOOP_NATS_URL": module_nats.url,
        "CLOSEDLOOP_SECRET_KEY": SECRET_KEY.decode(),
        "CLOSEDLOOP_INSIGHTS_GRPC_PORT": "0",
    }
    projections = [cls() for cls in discover({}).projections.values()]
    projector, task = await start_projector(ProjectorConfig.from_env(env), projections)
    await wait_caught_up(projector)
    service = await bootstrap(ServiceConfig.from_env("insights", env), environ=env)
    address = f"127.0.0.1:{service.server.port}"
    dashboard = await start_dashboard(
        "127.0.0.1", 0, insights_address=address, poll_seconds=0.2
    )
    channel = grpc.aio.insecure_channel(address)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield Running(
        insights_service_pb2_grpc.InsightsServiceStub(channel),
        http,
        dashboard.url.rstrip("/"),
        scenario,
        module_nats.url,
    )
    await http.close()
    await dashboard.stop()
    await channel.close()
    await service.stop()
    await stop_projector(projector, task)


def money(value: Any) -> dict[str, Any]:
    """The JSON the dashboard gives for a Money of the API."""
    return {
        "minor_units": int(value.minor_units),
        "currency": value.currency,
        "text": money_text(int(value.minor_units), value.currency),
    }


def strip(found: dict[str, Any]) -> dict[str, Any]:
    return {k: found[k] for k in ("minor_units", "currency", "text")}


@pytest.mark.parametrize("model", ["linear", "first_touch"])
@pytest.mark.parametrize("group_by", ["channel", "campaign", "channel_and_campaign"])
async def test_revenue_rows_are_the_apis(
    running: Running, model: str, group_by: str
) -> None:
    body = await running.ok("/api/revenue", model=model, group_by=group_by, **Q1)
    reply = await running.stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(
            model=model,
            period=pb.Period(from_month="2026-01", to_month="2026-03"),
            group_by={
                "channel": pb.GROUP_BY_CHANNEL,
                "campaign": pb.GROUP_BY_CAMPAIGN,
                "channel_and_campaign": pb.GROUP_BY_CHANNEL_AND_CAMPAIGN,
            }[group_by],
        )
    )
    assert body["model"] == model
    assert body["model_keys"] == list(reply.model_keys)
    assert len(body["rows"]) == len(reply.rows) > 0
    for shown, row in zip(body["rows"], reply.rows, strict=True):
        assert (shown["channel"], shown["campaign"], shown["currency"]) == (
            row.channel,
            row.campaign,
            row.currency,
        )
        assert strip(shown["revenue"]) == money(row.revenue)
        assert strip(shown["spend"]) == money(row.spend)
        assert shown["customers"] == row.customers
        assert shown["conversions"] == row.conversions
        assert shown["roi"] == (row.roi if row.HasField("roi") else None)
        assert shown["roas"] == (row.roas if row.HasField("roas") else None)
        if row.HasField("cac_minor_units"):
            assert shown["cac"]["minor_units"] == round(row.cac_minor_units)
        else:
            assert shown["cac"] is None
    assert [strip(m) for m in body["total_revenue"]] == [
        money(m) for m in reply.total_revenue
    ]
    assert [strip(m) for m in body["total_spend"]] == [
        money(m) for m in reply.total_spend
    ]


async def test_revenue_figures_of_the_story(running: Running) -> None:
    body = await running.ok("/api/revenue", model="linear", **Q1)
    search = next(r for r in body["rows"] if r["channel"] == "paid_search")
    # Ann's half and all of Dan against 900,000 cents of spend: 9,000.00 USD each.
    assert search["revenue"]["text"] == "9,000.00 USD"
    assert search["revenue"]["exponent"] == 2
    assert search["spend"]["text"] == "9,000.00 USD"
    assert (search["roi"], search["roas"], search["customers"]) == (0.0, 1.0, 1.5)
    assert search["cac"]["text"] == "6,000.00 USD"
    assert body["total_revenue"][0]["text"] == "23,000.00 USD"
    recognized = await running.ok(
        "/api/revenue",
        model="linear",
        conversion="recognized",
        **{"from": "2026-04", "to": "2026-06"},
    )
    later = await running.stub.GetRevenueByChannel(
        pb.GetRevenueByChannelRequest(
            model="linear",
            period=pb.Period(from_month="2026-04", to_month="2026-06"),
            conversion=pb.CONVERSION_REVENUE_RECOGNIZED,
        )
    )
    assert [
        (r["channel"], r["revenue"]["minor_units"]) for r in recognized["rows"]
    ] == [(r.channel, r.revenue.minor_units) for r in later.rows]


async def test_models_are_those_the_read_model_knows(running: Running) -> None:
    body = await running.ok("/api/models")
    assert body["default"] == "linear"
    assert {"linear", "first_touch"} <= set(body["models"])
    assert all("(" not in m for m in body["models"])
    assert "linear(lookback=7776000s)" in body["model_keys"]


@pytest.mark.parametrize(
    ("touch", "api_touch"),
    [("first", pb.TOUCH_FIRST), ("last", pb.TOUCH_LAST_BEFORE_LEAD)],
)
async def test_funnel_rows_are_the_apis(
    running: Running, touch: str, api_touch: int
) -> None:
    body = await running.ok("/api/funnel", touch=touch, **Q1)
    reply = await running.stub.GetFunnel(
        pb.GetFunnelRequest(
            touch=api_touch,  # type: ignore[arg-type]
            period=pb.Period(from_month="2026-01", to_month="2026-03"),
        )
    )
    assert body["touch"] == touch
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
    rates = (
        "visitor_to_lead_rate",
        "lead_to_mql_rate",
        "mql_to_sal_rate",
        "sal_to_opportunity_rate",
        "close_rate",
        "lead_to_won_rate",
    )
    for shown, row in zip(
        [*body["rows"], body["total"]], [*reply.rows, reply.total], strict=True
    ):
        assert shown["channel"] == row.channel
        assert [shown[n] for n in counts] == [getattr(row, n) for n in counts]
        assert [shown[n] for n in rates] == [
            getattr(row, n) if row.HasField(n) else None for n in rates
        ]
        assert shown["median_seconds"]["opportunity_to_won"] == (
            row.median_opportunity_to_won.seconds
            if row.HasField("median_opportunity_to_won")
            else None
        )
        assert [strip(m) for m in shown["won_revenue"]] == [
            money(m) for m in row.won_revenue
        ]
    if touch == "first":
        search = next(r for r in body["rows"] if r["channel"] == "paid_search")
        assert (search["leads"], search["won"], search["close_rate"]) == (2, 2, 1.0)


async def test_a_journey_by_email_and_by_lead_id(running: Running) -> None:
    by_email = await running.ok("/api/journey", q="ann@example.com")
    reply = await running.stub.GetCustomerJourney(
        pb.GetCustomerJourneyRequest(email="ann@example.com")
    )
    assert by_email["lead_id"] == reply.lead_id == ident("lead", "ann")
    assert len(by_email["entries"]) == len(reply.entries) == 16
    assert [e["event_id"] for e in by_email["entries"]] == [
        e.event_id for e in reply.entries
    ]
    assert [e["kind"] for e in by_email["entries"]] == [
        enum_name(pb.EntryKind, "ENTRY_KIND_", e.kind) for e in reply.entries
    ]
    assert by_email["entries"][0]["summary"] == (
        "touch paid_search / spring-search (ad_click)"
    )
    assert by_email["entries"][0]["occurred_at"] == "2026-01-05T12:00:00Z"
    # The API's raw "300000 USD" is shown as money.
    assert by_email["entries"][-1]["summary"] == "revenue expansion 3,000.00 USD"
    assert by_email["entries"][-1]["amount"]["text"] == "3,000.00 USD"
    by_lead = await running.ok("/api/journey", q=ident("lead", "ann").upper())
    assert by_lead["entries"] == by_email["entries"]
    # A merged lead gives its survivor's journey.
    dan = await running.ok("/api/journey", q=ident("lead", "dan2"))
    assert dan["lead_id"] == ident("lead", "dan")
    assert len(dan["lead_ids"]) == 2


async def test_journey_errors_come_back_as_json(running: Running) -> None:
    status, body = await running.get("/api/journey", q="eve@example.com")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, body = await running.get("/api/journey", q="not a person")
    assert (status, body["error"]["field"]) == (400, "q")
    status, body = await running.get("/api/journey")
    assert (status, body["error"]["field"]) == (400, "q")
    eve = await running.ok("/api/journey", q=ident("lead", "eve"))
    assert eve["erased"]
    assert eve["erased_at"].startswith("2026-03-20")


async def test_consent_of_a_person_and_counts(running: Running) -> None:
    body = await running.ok("/api/consent", q="bob@example.com")
    reply = await running.stub.GetConsentStatus(
        pb.GetConsentStatusRequest(email="bob@example.com", include_history=True)
    )
    assert len(body["subjects"]) == len(reply.subjects) == 2
    assert {(s["purpose"], s["channel"], s["state"]) for s in body["effective"]} == {
        ("newsletter", "email", "opted_in"),
        ("profiling", "", "opted_out"),
        ("third_party_sharing", "", "opted_out"),
    }
    for shown, subject in zip(body["subjects"], reply.subjects, strict=True):
        assert shown["subject_aggregate_id"] == subject.subject_aggregate_id
        assert [h["change_id"] for h in shown["history"]] == [
            h.change_id for h in subject.history
        ]
        assert [h["method"] for h in shown["history"]] == [
            enum_name(c.Method, "METHOD_", h.method) for h in subject.history
        ]
    assert (
        sum(h["method"] == "gpc" for s in body["subjects"] for h in s["history"]) == 2
    )

    counts = await running.ok("/api/consent/counts")
    everyone = await running.stub.GetConsentStatus(pb.GetConsentStatusRequest())
    assert [
        (n["purpose"], n["channel"], n["opted_in"], n["opted_out"])
        for n in counts["counts"]
    ] == [
        (
            enum_name(c.Purpose, "PURPOSE_", n.purpose),
            enum_name(c.Channel, "CHANNEL_", n.channel),
            n.opted_in,
            n.opted_out,
        )
        for n in everyone.counts
    ]
    newsletter = next(
        n
        for n in counts["counts"]
        if (n["purpose"], n["channel"]) == ("newsletter", "email")
    )
    assert (newsletter["opted_in"], newsletter["opted_out"]) == (2, 1)


async def test_projections_and_their_lag(running: Running) -> None:
    async def caught_up() -> Any:
        body = await running.ok("/api/projections")
        return body if body["log_position"] > 0 else None

    body = await eventually(caught_up, timeout=15)
    assert {p["name"] for p in body["projections"]} == set(discover({}).names())
    for p in body["projections"]:
        assert p["state"] == "active"
        assert (p["position"], p["lag"], p["parked"]) == (body["log_position"], 0, 0)
    assert body["summary"] == {
        "max_lag": 0,
        "parked": 0,
        "active": len(body["projections"]),
        "not_serving": 0,
    }


async def read_event(lines: aiohttp.StreamReader) -> tuple[str, dict[str, Any]]:
    """The next named server-sent event (comments and retry hints skipped)."""
    name, data = "", ""
    while True:
        line = (await lines.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and name:
            return name, json.loads(data)


async def test_events_say_changed_when_an_event_arrives(running: Running) -> None:
    async with running.http.get(running.url + "/api/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name, first = await asyncio.wait_for(read_event(response.content), 10)
        assert name == "changed"
        before = first["positions"]["customer_journey"]
        scenario = running.scenario
        count = len(scenario.log.events)
        scenario.touch("2026-03-30", visitor="v-late", channel=lead_types.CHANNEL_EMAIL)
        nc = await nats.connect(running.nats_url)
        await publish(nc, scenario.log.events[count:])
        await nc.close()
        while True:
            name, payload = await asyncio.wait_for(read_event(response.content), 15)
            if name == "changed" and payload["positions"]["customer_journey"] > before:
                break
        assert payload["log_position"] >= payload["positions"]["customer_journey"]


async def test_a_journey_longer_than_a_page_is_shown_whole(running: Running) -> None:
    """The page shows a person's whole journey: the dashboard asks every page."""
    scenario = running.scenario
    count = len(scenario.log.events)
    for n in range(DEFAULT_PAGE_SIZE + 10):
        scenario.touch(
            f"2026-08-{1 + n % 28:02d}",
            visitor="v-long",
            hour=n // 28,
            channel=lead_types.CHANNEL_EMAIL,
        )
    scenario.capture("long", "2026-08-30", visitor="v-long")
    nc = await nats.connect(running.nats_url)
    await publish(nc, scenario.log.events[count:])
    await nc.close()

    async def journey(page_size: int, token: str) -> pb.GetCustomerJourneyResponse:
        page: pb.GetCustomerJourneyResponse = await running.stub.GetCustomerJourney(
            pb.GetCustomerJourneyRequest(
                lead_id=ident("lead", "long"), page_size=page_size, page_token=token
            )
        )
        return page

    async def identified() -> bool:
        try:
            last = (await pages_of(journey, DEFAULT_PAGE_SIZE))[-1]
        except grpc.aio.AioRpcError:
            return False
        return last.entries[-1].kind == pb.ENTRY_KIND_VISITOR_IDENTIFIED

    await eventually(identified, timeout=15)
    pages = await pages_of(journey, DEFAULT_PAGE_SIZE)
    assert len(pages) == 2
    shown = await running.ok("/api/journey", q="long@example.com")
    assert [e["event_id"] for e in shown["entries"]] == [
        e.event_id for p in pages for e in p.entries
    ]


async def publish_new(running: Running, count: int) -> None:
    """Puts the scenario's events from the `count`th on on the log."""
    nc = await nats.connect(running.nats_url)
    await publish(nc, running.scenario.log.events[count:])
    await nc.close()


async def test_revenue_rows_longer_than_a_page_are_shown_whole(
    running: Running,
) -> None:
    """The page shows every campaign of a period: the dashboard asks every page."""
    campaigns = DEFAULT_PAGE_SIZE + 10
    count = len(running.scenario.log.events)
    for n in range(campaigns):
        running.scenario.spend(
            f"autumn-{n}",
            "paid_search",
            f"autumn-{n:03d}",
            "2026-11-02",
            "2026-11-03",
            100,
        )
    await publish_new(running, count)
    november = {"from": "2026-11", "to": "2026-11"}

    async def revenue(page_size: int, token: str) -> pb.GetRevenueByChannelResponse:
        page: pb.GetRevenueByChannelResponse = await running.stub.GetRevenueByChannel(
            pb.GetRevenueByChannelRequest(
                model="linear",
                period=pb.Period(from_month="2026-11", to_month="2026-11"),
                group_by=pb.GROUP_BY_CAMPAIGN,
                page_size=page_size,
                page_token=token,
            )
        )
        return page

    async def recorded() -> bool:
        pages = await pages_of(revenue, DEFAULT_PAGE_SIZE)
        return sum(len(p.rows) for p in pages) == campaigns

    await eventually(recorded, timeout=15)
    pages = await pages_of(revenue, DEFAULT_PAGE_SIZE)
    assert len(pages) == 2
    shown = await running.ok(
        "/api/revenue", model="linear", group_by="campaign", **november
    )
    assert [r["campaign"] for r in shown["rows"]] == [
        r.campaign for p in pages for r in p.rows
    ]
    assert shown["total_spend"][0]["minor_units"] == campaigns * 100


async def test_an_audit_trail_longer_than_a_page_is_shown_whole(
    running: Running,
) -> None:
    """The page shows a person's whole trail: the dashboard asks every page."""
    changes = DEFAULT_PAGE_SIZE + 10
    count = len(running.scenario.log.events)
    for n in range(changes):
        running.scenario.consent(
            ident("consent", "trail"),
            f"2026-10-{1 + n % 28:02d}",
            hour=n // 28,
            granted=n % 2 == 0,
            purpose=c.PURPOSE_NEWSLETTER,
            channel=c.CHANNEL_EMAIL,
            method=c.METHOD_FORM,
            email="trail@example.com",
        )
    await publish_new(running, count)

    async def consent(page_size: int, token: str) -> pb.GetConsentStatusResponse:
        page: pb.GetConsentStatusResponse = await running.stub.GetConsentStatus(
            pb.GetConsentStatusRequest(
                email="trail@example.com",
                include_history=True,
                page_size=page_size,
                page_token=token,
            )
        )
        return page

    async def recorded() -> bool:
        try:
            pages = await pages_of(consent, DEFAULT_PAGE_SIZE)
        except grpc.aio.AioRpcError:
            return False
        return sum(len(s.history) for p in pages for s in p.subjects) == changes

    await eventually(recorded, timeout=15)
    pages = await pages_of(consent, DEFAULT_PAGE_SIZE)
    assert len(pages) == 2
    shown = await running.ok("/api/consent", q="trail@example.com")
    (trail,) = shown["subjects"]
    assert [h["change_id"] for h in trail["history"]] == [
        h.change_id for p in pages for s in p.subjects for h in s.history
    ]


async def test_bad_parameters_name_the_field(running: Running) -> None:
    status, body = await running.get("/api/revenue", model="linear", group_by="x")
    assert (status, body["error"]["field"]) == (400, "group_by")
    status, body = await running.get("/api/revenue", model="nonesuch")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, body = await running.get("/api/revenue", model="linear", to="2026-13")
    assert (status, body["error"]["field"]) == (400, "period.to_month")
    status, body = await running.get("/api/funnel", touch="middle")
    assert (status, body["error"]["field"]) == (400, "touch")


async def test_the_page_and_its_assets_are_local(running: Running) -> None:
    async with running.http.get(running.url + "/") as response:
        assert response.status == 200
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert 'data-testid="revenue-table"' in page
    for asset in ("app.js", "style.css"):
        async with running.http.get(f"{running.url}/static/{asset}") as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    for path in DASHBOARD_DIR.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert "innerHTML" not in text
    for escape in ("/static/../web.py", "/static/%2e%2e/web.py"):
        target = URL(running.url + escape, encoded=True)
        async with running.http.get(target) as response:
            assert response.status in {403, 404}, escape


async def test_only_loopback_host_names_are_answered(running: Running) -> None:
    async with running.http.get(
        running.url + "/api/projections", headers={"Host": "rebound.example:80"}
    ) as response:
        assert response.status == 403
    async with running.http.get(
        running.url + "/api/projections", headers={"Host": "localhost"}
    ) as response:
        assert response.status == 200


async def test_money_is_written_with_the_currencys_exponent() -> None:
    assert money_text(123_456, "USD") == "1,234.56 USD"
    assert money_text(1_200, "JPY") == "1,200 JPY"
    assert money_text(1_234_567, "BHD") == "1,234.567 BHD"
    assert money_text(-5, "EUR") == "-0.05 EUR"


async def test_http_settings_from_the_environment() -> None:
    assert http_settings({}) == ("127.0.0.1", 8055)
    assert http_settings({"CLOSEDLOOP_INSIGHTS_HTTP_PORT": "0"}) == ("127.0.0.1", 0)
    assert dashboard_url({"CLOSEDLOOP_INSIGHTS_HTTP_PORT": "9001"}) == (
        "http://127.0.0.1:9001/"
    )
    assert dial_address("0.0.0.0", 50055) == "127.0.0.1:50055"  # noqa: S104
    assert dial_address("::1", 8055) == "[::1]:8055"
    assert dial_address("10.0.0.7", 50055) == "10.0.0.7:50055"
    with pytest.raises(ConfigError, match="CLOSEDLOOP_INSIGHTS_HTTP_PORT"):
        http_settings({"CLOSEDLOOP_INSIGHTS_HTTP_PORT": "web"})
