"""One call to the insights service; a failed call ends the command with its status."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from apps.cli.output import fail

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from apps.cli.settings import Settings


def call_insights(method: str, request: Message, settings: Settings) -> Any:
    import grpc  # noqa: PLC0415

    from closedloop.insights.v1 import insights_service_pb2_grpc  # noqa: PLC0415

    async def call() -> Any:
        async with grpc.aio.insecure_channel(settings.address) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            try:
                return await getattr(stub, method)(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                code = error.code().name
                raise fail(
                    f"{method} at {settings.address}: {code}: {error.details()}"
                ) from None

    return asyncio.run(call())
