"""The insights dashboard: a read-only web page over the insights API, on loopback.

`make_dashboard_app(insights_address)` serves the page (GET /, /static/*) and JSON
endpoints that ask the insights service over gRPC, so every figure on the page is
exactly what the API answers, and the page reads nothing but the read models.
`/api/events` is a server-sent event stream: one poller per process asks
ListProjections every second while a page listens, and says "changed" when a
projection's position moved (the page then reloads its panels) or "status" when only
the lag or the parked count did.

Run on its own with `python -m services.insights.web` (it asks the
insights service at CLOSEDLOOP_INSIGHTS_ADDRESS), or call `start_dashboard` from a
process that already runs the insights service.

| variable | default |
|---|---|
| CLOSEDLOOP_INSIGHTS_HTTP_HOST | 127.0.0.1 (no login: keep it on loopback) |
| CLOSEDLOOP_INSIGHTS_HTTP_PORT | 8055 (0: a free port) |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from yarl import URL

from closedloop.config import ServiceConfig
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.grpckit.errors import FIELD_METADATA_KEY
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.money import exponent
from closedloop.process import Running, run_forever
from closedloop.protobuf import enum_name
from services.insights.settings import DashboardEnv

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

    from closedloop.common.v1.money_pb2 import Money

log = logging.getLogger("services.insights.web")

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8055
HOST_VARIABLE = "CLOSEDLOOP_INSIGHTS_HTTP_HOST"
PORT_VARIABLE = "CLOSEDLOOP_INSIGHTS_HTTP_PORT"

#: Tried in this order to learn which models the read model holds (the API lists
#: them with any answer, but needs one model to answer for).
MODELS = (
    "linear",
    "first_touch",
    "last_touch",
    "last_non_direct",
    "time_decay",
    "position_based",
    "w_shaped",
    "full_path",
    "markov",
    "shapley",
)

#: Every asset is served from here; nothing is fetched from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: Hosts a browser may name when the dashboard is bound to loopback. Anything else
#: is refused, so a page on another site cannot read it through DNS rebinding.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind

#: How an answer of the insights API reaches the page; anything else is a 502.
_HTTP_ERRORS: dict[grpc.StatusCode, type[web.HTTPException]] = {
    grpc.StatusCode.INVALID_ARGUMENT: web.HTTPBadRequest,
    grpc.StatusCode.NOT_FOUND: web.HTTPNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: web.HTTPConflict,
    grpc.StatusCode.UNAVAILABLE: web.HTTPServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: web.HTTPGatewayTimeout,
}

_GROUP_BY = {
    "channel": pb.GROUP_BY_CHANNEL,
    "campaign": pb.GROUP_BY_CAMPAIGN,
    "channel_and_campaign": pb.GROUP_BY_CHANNEL_AND_CAMPAIGN,
}
_CONVERSION = {
    "won": pb.CONVERSION_WON,
    "recognized": pb.CONVERSION_REVENUE_RECOGNIZED,
}
_TOUCH = {"first": pb.TOUCH_FIRST, "last": pb.TOUCH_LAST_BEFORE_LEAD}
_COHORT = {"lead": pb.COHORT_STAGE_LEAD, "mql": pb.COHORT_STAGE_MQL}

_FUNNEL_COUNTS = (
    "visitors",
    "visitors_identified",
    "leads",
    "mqls",
    "sals",
    "opportunities",
    "won",
    "disqualified",
)
_FUNNEL_RATES = (
    "visitor_to_lead_rate",
    "lead_to_mql_rate",
    "mql_to_sal_rate",
    "sal_to_opportunity_rate",
    "close_rate",
    "lead_to_won_rate",
)
_FUNNEL_MEDIANS = (
    "median_lead_to_mql",
    "median_mql_to_sal",
    "median_sal_to_opportunity",
    "median_opportunity_to_won",
    "median_lead_to_won",
)


class BadQuery(web.HTTPBadRequest):
    """A query parameter of the dashboard's own API is malformed."""

    def __init__(self, name: str, message: str) -> None:
        error = {"code": "INVALID_ARGUMENT", "message": f"{name}: {message}"}
        body = {"error": {**error, "field": name}}
        super().__init__(text=json.dumps(body), content_type="application/json")


# -- JSON views of the API's answers ---------------------------------------------------


def money_text(minor_units: int, currency: str) -> str:
    """`123456, "USD"` -> "1,234.56 USD"; the digits come from the currency."""
    digits = exponent(currency) if currency else 0
    amount = Decimal(minor_units).scaleb(-digits)
    return f"{amount:,.{digits}f} {currency}".strip()


def money_json(minor_units: int, currency: str) -> dict[str, Any]:
    digits = exponent(currency) if currency else 0
    return {
        "minor_units": minor_units,
        "currency": currency,
        "exponent": digits,
        "major": float(Decimal(minor_units).scaleb(-digits)),
        "text": money_text(minor_units, currency),
    }


def _money(value: Money) -> dict[str, Any]:
    return money_json(int(value.minor_units), value.currency)


def _time(message: Message, name: str) -> str | None:
    if not message.HasField(name):
        return None
    value: Timestamp = getattr(message, name)
    return str(value.ToJsonString())


def _seconds(value: Duration) -> float:
    return float(value.seconds) + value.nanos / 1e9


def _optional(message: Message, name: str) -> float | None:
    return float(getattr(message, name)) if message.HasField(name) else None


def revenue_json(reply: pb.GetRevenueByChannelResponse) -> dict[str, Any]:
    rows = []
    for row in reply.rows:
        customers = float(row.customers)
        cac = (
            money_json(round(row.cac_minor_units), row.currency)
            if row.HasField("cac_minor_units")
            else None
        )
        rows.append(
            {
                "month": row.month,
                "channel": row.channel,
                "campaign": row.campaign,
                "currency": row.currency,
                "revenue": _money(row.revenue),
                "spend": _money(row.spend),
                "customers": customers,
                "conversions": int(row.conversions),
                "roi": _optional(row, "roi"),
                "roas": _optional(row, "roas"),
                "cac": cac,
            }
        )
    return {
        "model": reply.model,
        "model_keys": list(reply.model_keys),
        "available_models": list(reply.available_models),
        "rows": rows,
        "total_revenue": [_money(m) for m in reply.total_revenue],
        "total_spend": [_money(m) for m in reply.total_spend],
    }


def _funnel_row(row: pb.FunnelRow) -> dict[str, Any]:
    found: dict[str, Any] = {"channel": row.channel}
    found.update({name: int(getattr(row, name)) for name in _FUNNEL_COUNTS})
    found.update({name: _optional(row, name) for name in _FUNNEL_RATES})
    found["median_seconds"] = {
        name.removeprefix("median_"): _seconds(getattr(row, name))
        if row.HasField(name)
        else None
        for name in _FUNNEL_MEDIANS
    }
    found["won_revenue"] = [_money(m) for m in row.won_revenue]
    return found


def funnel_json(reply: pb.GetFunnelResponse) -> dict[str, Any]:
    return {
        "touch": "last" if reply.touch == pb.TOUCH_LAST_BEFORE_LEAD else "first",
        "cohort": "mql" if reply.cohort_stage == pb.COHORT_STAGE_MQL else "lead",
        "rows": [_funnel_row(row) for row in reply.rows],
        "total": _funnel_row(reply.total),
    }


def _entry_summary(entry: pb.JourneyEntry) -> str:
    """The API's summary, with a raw amount ("300000 USD") written as money."""
    summary = entry.summary
    if entry.HasField("amount"):
        raw = f" {entry.amount.minor_units} {entry.amount.currency}"
        if summary.endswith(raw):
            amount = money_text(int(entry.amount.minor_units), entry.amount.currency)
            summary = summary.removesuffix(raw) + " " + amount
    return summary


def journey_json(reply: pb.GetCustomerJourneyResponse) -> dict[str, Any]:
    entries = [
        {
            "kind": enum_name(pb.EntryKind, "ENTRY_KIND_", entry.kind) or "other",
            "occurred_at": _time(entry, "occurred_at"),
            "recorded_at": _time(entry, "recorded_at"),
            "event_id": entry.event_id,
            "event_type": entry.event_type,
            "lead_id": entry.lead_id,
            "anonymous_id": entry.anonymous_id,
            "channel": entry.channel,
            "campaign": entry.campaign,
            "stage": entry.stage,
            "deal_id": entry.deal_id,
            "amount": _money(entry.amount) if entry.HasField("amount") else None,
            "summary": _entry_summary(entry),
            "details": dict(sorted(entry.details.items())),
        }
        for entry in reply.entries
    ]
    return {
        "lead_id": reply.lead_id,
        "lead_ids": list(reply.lead_ids),
        "anonymous_ids": list(reply.anonymous_ids),
        "stage": reply.stage,
        "created_at": _time(reply, "created_at"),
        "erased": reply.erased,
        "erased_at": _time(reply, "erased_at"),
        "entries": entries,
    }


def _purpose(number: int) -> str:
    return enum_name(consent_types.Purpose, "PURPOSE_", number)


def _channel(number: int) -> str:
    return enum_name(consent_types.Channel, "CHANNEL_", number)


def _pair(state: pb.ConsentPairState) -> dict[str, Any]:
    return {
        "purpose": _purpose(state.purpose),
        "channel": _channel(state.channel),
        "state": enum_name(consent_types.ConsentState, "CONSENT_STATE_", state.state),
        "decided_by_change_id": state.decided_by_change_id,
        "decided_at": _time(state, "decided_at"),
    }


def _audit(entry: pb.ConsentAuditEntry) -> dict[str, Any]:
    return {
        "change_id": entry.change_id,
        "kind": enum_name(consent_types.ChangeKind, "CHANGE_KIND_", entry.kind),
        "purpose": _purpose(entry.purpose),
        "channel": _channel(entry.channel),
        "legal_basis": enum_name(
            consent_types.LegalBasis, "LEGAL_BASIS_", entry.legal_basis
        ),
        "source_system": enum_name(
            consent_types.SourceSystem, "SOURCE_SYSTEM_", entry.source_system
        ),
        "method": enum_name(consent_types.Method, "METHOD_", entry.method),
        "notice_version": entry.notice_version,
        "notice_hash": entry.notice_hash,
        "capture_method": entry.capture_method,
        "occurred_at": _time(entry, "occurred_at"),
        "recorded_at": _time(entry, "recorded_at"),
        "preferences": entry.preferences,
    }


def consent_json(reply: pb.GetConsentStatusResponse) -> dict[str, Any]:
    return {
        "subjects": [
            {
                "subject_aggregate_id": subject.subject_aggregate_id,
                "lead_id": subject.lead_id,
                "erased": subject.erased,
                "erased_at": _time(subject, "erased_at"),
                "states": [_pair(s) for s in subject.states],
                "history": [_audit(h) for h in subject.history],
            }
            for subject in reply.subjects
        ],
        "effective": [_pair(s) for s in reply.effective],
    }


def consent_counts_json(reply: pb.GetConsentStatusResponse) -> dict[str, Any]:
    return {
        "counts": [
            {
                "purpose": _purpose(count.purpose),
                "channel": _channel(count.channel),
                "opted_in": int(count.opted_in),
                "opted_out": int(count.opted_out),
                "pending_confirmation": int(count.pending_confirmation),
            }
            for count in reply.counts
        ]
    }


def projections_json(reply: pb.ListProjectionsResponse) -> dict[str, Any]:
    projections = [
        {
            "name": p.name,
            "version": int(p.version),
            "generation": int(p.generation),
            "state": enum_name(pb.ProjectionState, "PROJECTION_STATE_", p.state),
            "position": int(p.position),
            "lag": int(p.lag),
            "parked": int(p.parked),
            "events_applied": int(p.events_applied),
            "updated_at": _time(p, "updated_at"),
            "installed_version": int(p.installed_version),
            "last_error": p.last_error,
        }
        for p in reply.projections
    ]
    lags = [
        int(p.lag) for p in reply.projections if p.state == pb.PROJECTION_STATE_ACTIVE
    ]
    return {
        "log_position": int(reply.log_position),
        "projections": projections,
        "summary": {
            # -1: unknown (the log could not be reached, or nothing serves yet).
            "max_lag": -1 if not lags or min(lags) < 0 else max(lags),
            "parked": sum(int(p.parked) for p in reply.projections),
            "active": len(lags),
            "not_serving": len(projections) - len(lags),
        },
    }


# -- the change feed behind /api/events ------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Where the projections stand; `moved` changes only when a position moved."""

    moved: tuple[tuple[Any, ...], ...]
    status: tuple[Any, ...]
    payload: dict[str, Any] = field(compare=False, hash=False)


def snapshot_of(reply: pb.ListProjectionsResponse) -> Snapshot:
    view = projections_json(reply)
    moved = tuple(
        (p["name"], p["generation"], p["state"], p["position"], p["events_applied"])
        for p in view["projections"]
    )
    status = (
        view["log_position"],
        tuple((p["name"], p["lag"], p["parked"]) for p in view["projections"]),
    )
    payload = {
        "log_position": view["log_position"],
        "positions": {p["name"]: p["position"] for p in view["projections"]},
        **view["summary"],
    }
    return Snapshot(moved, status, payload)


class ChangeFeed:
    """The latest snapshot, and a way to wait for the next one.

    Each listener remembers what it last sent and compares, so none misses a move
    however slowly it writes.
    """

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.listeners = 0
        self.closed = False
        self._updated = asyncio.Event()

    def update(self, snapshot: Snapshot) -> None:
        if snapshot != self.snapshot:
            self.snapshot = snapshot
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._updated.wait(), timeout)


# -- the application -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    #: None: any Host header (bound to every interface).
    allowed_hosts: frozenset[str] | None
    keepalive_seconds: float


STUB = web.AppKey("stub", insights_service_pb2_grpc.InsightsServiceStub)
FEED = web.AppKey("feed", ChangeFeed)
SETTINGS = web.AppKey("settings", Settings)


def _stub(request: web.Request) -> insights_service_pb2_grpc.InsightsServiceStub:
    return request.app[STUB]


def _http_error(error: grpc.aio.AioRpcError) -> web.HTTPException:
    code = error.code()
    trailing = dict(error.trailing_metadata() or ())
    body: dict[str, Any] = {"code": code.name, "message": error.details() or ""}
    if FIELD_METADATA_KEY in trailing:
        body["field"] = trailing[FIELD_METADATA_KEY]
    exception = _HTTP_ERRORS.get(code, web.HTTPBadGateway)
    return exception(text=json.dumps({"error": body}), content_type="application/json")


async def _ask(call: Callable[..., Awaitable[Any]], message: Message) -> Any:
    try:
        return await call(message, timeout=15)
    except grpc.aio.AioRpcError as error:
        raise _http_error(error) from None


def _choice(request: web.Request, name: str, choices: Mapping[str, Any]) -> Any:
    value = request.query.get(name, "")
    if not value:
        return next(iter(choices.values()))
    if value not in choices:
        raise BadQuery(name, f"must be one of {', '.join(choices)}")
    return choices[value]


def _period(request: web.Request) -> pb.Period:
    return pb.Period(
        from_month=request.query.get("from", "").strip(),
        to_month=request.query.get("to", "").strip(),
    )


def _person(request: web.Request) -> tuple[str, str]:
    """`q` as ("lead_id", uuid) or ("email", address)."""
    value = request.query.get("q", "").strip()
    if not value:
        raise BadQuery("q", "enter a lead id or an email address")
    if "@" in value:
        return "email", value
    try:
        return "lead_id", str(uuid.UUID(value))
    except ValueError:
        raise BadQuery(
            "q", "is neither a lead id (UUID) nor an email address"
        ) from None


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(DASHBOARD_DIR / "index.html")


async def models(request: web.Request) -> web.Response:
    stub = _stub(request)
    last: grpc.aio.AioRpcError | None = None
    for model in MODELS:
        try:
            reply = await stub.GetRevenueByChannel(
                pb.GetRevenueByChannelRequest(model=model), timeout=15
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise _http_error(error) from None
            last = error
            continue
        known = list(reply.available_models)
        names = [m for m in known if "(" not in m] or list(MODELS)
        return web.json_response(
            {
                "models": names,
                "model_keys": [m for m in known if "(" in m],
                "default": "linear" if "linear" in names else names[0],
            }
        )
    assert last is not None  # noqa: S101 - the loop ran at least once
    raise _http_error(last)


async def revenue(request: web.Request) -> web.Response:
    model = request.query.get("model", "").strip() or "linear"
    reply = await _ask(
        _stub(request).GetRevenueByChannel,
        pb.GetRevenueByChannelRequest(
            model=model,
            period=_period(request),
            group_by=_choice(request, "group_by", _GROUP_BY),
            conversion=_choice(request, "conversion", _CONVERSION),
        ),
    )
    return web.json_response(revenue_json(reply))


async def funnel(request: web.Request) -> web.Response:
    reply = await _ask(
        _stub(request).GetFunnel,
        pb.GetFunnelRequest(
            touch=_choice(request, "touch", _TOUCH),
            period=_period(request),
            cohort_stage=_choice(request, "cohort", _COHORT),
        ),
    )
    return web.json_response(funnel_json(reply))


async def journey(request: web.Request) -> web.Response:
    kind, value = _person(request)
    reply = await _ask(
        _stub(request).GetCustomerJourney,
        pb.GetCustomerJourneyRequest(**{kind: value}),
    )
    return web.json_response(journey_json(reply))


async def consent(request: web.Request) -> web.Response:
    kind, value = _person(request)
    reply = await _ask(
        _stub(request).GetConsentStatus,
        pb.GetConsentStatusRequest(**{kind: value}, include_history=True),
    )
    return web.json_response(consent_json(reply))


async def consent_counts(request: web.Request) -> web.Response:
    reply = await _ask(_stub(request).GetConsentStatus, pb.GetConsentStatusRequest())
    return web.json_response(consent_counts_json(reply))


async def projections(request: web.Request) -> web.Response:
    reply = await _ask(_stub(request).ListProjections, pb.ListProjectionsRequest())
    return web.json_response(projections_json(reply))


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: "changed" when a position moved, "status" otherwise."""
    feed = request.app[FEED]
    keepalive = request.app[SETTINGS].keepalive_seconds
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    sent: Snapshot | None = None
    feed.listeners += 1
    try:
        while not feed.closed:
            current = feed.snapshot
            if current is not None and current is not sent:
                if sent is None or current.moved != sent.moved:
                    await response.write(_sse("changed", current.payload))
                elif current.status != sent.status:
                    await response.write(_sse("status", current.payload))
                sent = current
                continue
            await feed.wait(keepalive)
            if not feed.closed and feed.snapshot is sent:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the page went away
    finally:
        feed.listeners -= 1
    return response


async def _poll(
    stub: insights_service_pb2_grpc.InsightsServiceStub,
    feed: ChangeFeed,
    interval: float,
) -> None:
    """Asks for the projections' positions while anyone listens."""
    while not feed.closed:
        if feed.listeners:
            try:
                reply = await stub.ListProjections(
                    pb.ListProjectionsRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                # A status change, not a move: the page learns the service is away.
                moved = feed.snapshot.moved if feed.snapshot is not None else ()
                feed.update(
                    Snapshot(
                        moved,
                        ("unreachable", error.code().name),
                        {"error": error.code().name},
                    )
                )
            else:
                feed.update(snapshot_of(reply))
        await asyncio.sleep(interval)


@web.middleware
async def _guard(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    allowed = request.app[SETTINGS].allowed_hosts
    if allowed is not None:
        try:
            host = URL(f"http://{request.host}").host or ""
        except ValueError:
            host = ""
        if host.strip("[]") not in allowed:
            raise web.HTTPForbidden(text="this dashboard answers on loopback only")
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _allowed_hosts(bind_host: str) -> frozenset[str] | None:
    if bind_host in WILDCARD_HOSTS:
        return None
    return LOOPBACK_NAMES | {bind_host.strip("[]")}


def make_dashboard_app(
    insights_address: str,
    *,
    bind_host: str = DEFAULT_HTTP_HOST,
    poll_seconds: float = 1.0,
    keepalive_seconds: float = 15.0,
) -> web.Application:
    """The dashboard, asking the insights service at `insights_address` (gRPC)."""
    app = web.Application(middlewares=[_guard])
    app[FEED] = ChangeFeed()
    app[SETTINGS] = Settings(_allowed_hosts(bind_host), keepalive_seconds)

    async def insights_channel(app: web.Application) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(insights_address)
        stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
        app[STUB] = stub
        poller = asyncio.create_task(
            _poll(stub, app[FEED], poll_seconds), name="dashboard-poller"
        )
        yield
        app[FEED].close()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await channel.close()

    async def release_listeners(app: web.Application) -> None:
        app[FEED].close()

    app.cleanup_ctx.append(insights_channel)
    app.on_shutdown.append(release_listeners)
    app.router.add_get("/", index)
    app.router.add_get("/api/models", models)
    app.router.add_get("/api/revenue", revenue)
    app.router.add_get("/api/funnel", funnel)
    app.router.add_get("/api/journey", journey)
    app.router.add_get("/api/consent", consent)
    app.router.add_get("/api/consent/counts", consent_counts)
    app.router.add_get("/api/projections", projections)
    app.router.add_get("/api/events", events)
    app.router.add_static("/static/", DASHBOARD_DIR, show_index=False)
    return app


# -- running it ------------------------------------------------------------------------


def http_settings(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(host, port) from CLOSEDLOOP_INSIGHTS_HTTP_HOST and _PORT, with defaults."""
    env = DashboardEnv.from_env(environ)
    port = DEFAULT_HTTP_PORT if env.http_port is None else env.http_port
    return env.http_host or DEFAULT_HTTP_HOST, port


def dial_address(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to `host`:`port`."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dashboard_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the dashboard answers with the configured (non-zero) port."""
    return f"http://{dial_address(*http_settings(environ))}/"


@dataclass
class Dashboard:
    """A running dashboard; `stop()` closes open event streams and the port."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{dial_address(self.host, self.port)}/"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_dashboard(
    host: str | None = None,
    port: int | None = None,
    *,
    insights_address: str,
    environ: Mapping[str, str] | None = None,
    poll_seconds: float = 1.0,
) -> Dashboard:
    """Serves the dashboard; host and port default to the environment's settings."""
    env_host, env_port = http_settings(environ)
    host = env_host if host is None else host
    port = env_port if port is None else port
    app = make_dashboard_app(
        insights_address, bind_host=host, poll_seconds=poll_seconds
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound = int(address[1])
            break
    return Dashboard(runner=runner, host=host, port=bound)


def main() -> None:
    config = ServiceConfig.from_env("insights")

    async def start() -> Running:
        dashboard = await start_dashboard(
            insights_address=config.peer_address("insights")
        )
        return Running(
            name="the dashboard",
            banner=f"closedloop dashboard on {dashboard.url}",
            on_stop=dashboard.stop,
        )

    run_forever(start, collect_less=False)


if __name__ == "__main__":
    main()
