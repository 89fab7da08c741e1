"""Calls to the insights service; a failed call ends the command with its status."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from apps.cli.output import fail

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from google.protobuf.message import Message

    from apps.cli.settings import Settings


def call_insights(method: str, request: Message, settings: Settings) -> Any:
    return _with_stub(
        method, settings, lambda stub: getattr(stub, method)(request, timeout=30)
    )


def call_insights_pages(
    method: str,
    request: Message,
    settings: Settings,
    items: str,
    *,
    at_most: int | None = None,
) -> Any:
    """Every page of a list-like answer as one response: all its `items` in order.

    With `at_most`, only as many pages as that many items need.
    """
    from closedloop.grpckit.paging import joined_pages, page_call  # noqa: PLC0415

    def pages(stub: Any) -> Awaitable[Any]:
        call = page_call(getattr(stub, method), request, timeout=30)
        return joined_pages(call, items, at_most=at_most)

    return _with_stub(method, settings, pages)


def _with_stub(
    method: str, settings: Settings, call: Callable[[Any], Awaitable[Any]]
) -> Any:
    import grpc  # noqa: PLC0415

    from closedloop.insights.v1 import insights_service_pb2_grpc  # noqa: PLC0415

    async def run() -> Any:
        async with grpc.aio.insecure_channel(settings.address) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            try:
                return await call(stub)
            except grpc.aio.AioRpcError as error:
                code = error.code().name
                raise fail(
                    f"{method} at {settings.address}: {code}: {error.details()}"
                ) from None

    return asyncio.run(run())
