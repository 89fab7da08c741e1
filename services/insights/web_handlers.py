"""The dashboard's HTTP handlers: the page, its assets, and JSON asked of the API.

Every JSON endpoint asks the insights service over gRPC (the stub under `STUB`), so
every figure on the page is exactly what the API answers; an API error reaches the
page as the matching HTTP status with the API's code, message and field.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from yarl import URL

from closedloop.grpckit.errors import field_violations
from closedloop.grpckit.paging import joined_pages, page_call
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from services.insights.web_json import (
    consent_counts_json,
    consent_json,
    funnel_json,
    journey_json,
    projections_json,
    revenue_json,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from aiohttp.typedefs import Middleware
    from google.protobuf.message import Message

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"

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


class BadQuery(web.HTTPBadRequest):
    """A query parameter of the dashboard's own API is malformed."""

    def __init__(self, name: str, message: str) -> None:
        error = {"code": "INVALID_ARGUMENT", "message": f"{name}: {message}"}
        body = {"error": {**error, "field": name}}
        super().__init__(text=json.dumps(body), content_type="application/json")


STUB = web.AppKey("stub", insights_service_pb2_grpc.InsightsServiceStub)


def _stub(request: web.Request) -> insights_service_pb2_grpc.InsightsServiceStub:
    return request.app[STUB]


def _http_error(error: grpc.aio.AioRpcError) -> web.HTTPException:
    code = error.code()
    body: dict[str, Any] = {"code": code.name, "message": error.details() or ""}
    if violations := field_violations(error):
        body["field"] = violations[0].field
    exception = _HTTP_ERRORS.get(code, web.HTTPBadGateway)
    return exception(text=json.dumps({"error": body}), content_type="application/json")


async def _ask(call: Callable[..., Awaitable[Any]], message: Message) -> Any:
    try:
        return await call(message, timeout=15)
    except grpc.aio.AioRpcError as error:
        raise _http_error(error) from None


async def _ask_every_page(
    method: Callable[..., Awaitable[Any]], message: Message, items: str
) -> Any:
    """One answer with the `items` of every page: the page shows them all."""
    try:
        return await joined_pages(page_call(method, message, timeout=15), items)
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
    reply = await _ask_every_page(
        _stub(request).GetRevenueByChannel,
        pb.GetRevenueByChannelRequest(
            model=model,
            period=_period(request),
            group_by=_choice(request, "group_by", _GROUP_BY),
            conversion=_choice(request, "conversion", _CONVERSION),
        ),
        "rows",
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
    person = (
        pb.GetCustomerJourneyRequest(lead_id=value)
        if kind == "lead_id"
        else pb.GetCustomerJourneyRequest(email=value)
    )
    reply = await _ask_every_page(_stub(request).GetCustomerJourney, person, "entries")
    return web.json_response(journey_json(reply))


async def consent(request: web.Request) -> web.Response:
    kind, value = _person(request)
    subject = (
        pb.GetConsentStatusRequest(lead_id=value, include_history=True)
        if kind == "lead_id"
        else pb.GetConsentStatusRequest(email=value, include_history=True)
    )
    reply = await _ask_every_page(
        _stub(request).GetConsentStatus, subject, "subjects.history"
    )
    return web.json_response(consent_json(reply))


async def consent_counts(request: web.Request) -> web.Response:
    # Counts over everyone are one page: only a person's audit trail pages.
    reply = await _ask(_stub(request).GetConsentStatus, pb.GetConsentStatusRequest())
    return web.json_response(consent_counts_json(reply))


async def projections(request: web.Request) -> web.Response:
    reply = await _ask(_stub(request).ListProjections, pb.ListProjectionsRequest())
    return web.json_response(projections_json(reply))


def host_guard(allowed: frozenset[str] | None) -> Middleware:
    """Refuses a Host header not in `allowed` (None: any); adds SECURITY_HEADERS."""

    @web.middleware
    async def guard(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
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

    return guard


def routes() -> list[web.AbstractRouteDef]:
    """The page, its assets and the JSON endpoints (not /api/events: see web_feed)."""
    return [
        web.get("/", index),
        web.get("/api/models", models),
        web.get("/api/revenue", revenue),
        web.get("/api/funnel", funnel),
        web.get("/api/journey", journey),
        web.get("/api/consent", consent),
        web.get("/api/consent/counts", consent_counts),
        web.get("/api/projections", projections),
        web.static("/static/", DASHBOARD_DIR, show_index=False),
    ]
