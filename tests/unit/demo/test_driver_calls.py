"""The demo's driver tries a call again while it may pass later, and counts it once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from apps.demo.driver import Addresses, QuarterDriver


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name
    )


def _failing(
    codes: list[grpc.StatusCode],
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(codes):
            raise _error(codes[len(calls) - 1])
        return "reply"

    return calls, call


@pytest.fixture
async def driver() -> AsyncIterator[QuarterDriver]:
    address = "127.0.0.1:9"
    driver = QuarterDriver(Addresses(address, address, address, address))
    yield driver
    await driver.close()


async def test_unavailable_and_aborted_calls_are_tried_again(
    driver: QuarterDriver,
) -> None:
    calls, call = _failing([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED])
    assert await driver._call("touch", call) == "reply"
    assert len(calls) == 3
    assert driver.result.calls["touch"] == 1


async def test_a_call_already_done_is_skipped_not_retried(
    driver: QuarterDriver,
) -> None:
    calls, call = _failing([grpc.StatusCode.ALREADY_EXISTS])
    assert await driver._call("lead", call) is None
    assert len(calls) == 1
    assert driver.result.skipped["lead"] == 1


async def test_a_refusal_is_raised_at_once(driver: QuarterDriver) -> None:
    calls, call = _failing([grpc.StatusCode.INVALID_ARGUMENT])
    with pytest.raises(grpc.aio.AioRpcError):
        await driver._call("deal", call)
    assert len(calls) == 1
