"""The one retry policy: which errors, how many attempts, how long it waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from closedloop import retry


class Flaky:
    """Fails with `error` the first `failures` calls, then answers."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"

    async def call_async(self) -> str:
        return self()


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = retry.Backoff(first=0.1, cap=0.5)
    assert [backoff.delay(n) for n in range(1, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )
    assert retry.Backoff.constant(1.0).delay(7) == 1.0


def test_retries_selected_errors_until_it_succeeds() -> None:
    flaky = Flaky(3, ConnectionError("away"))
    heard: list[BaseException] = []
    assert retry.call(flaky, on=ConnectionError, before_retry=heard.append) == "done"
    assert flaky.calls == 4
    assert heard == [flaky.error] * 3


def test_gives_up_after_its_attempts_with_the_last_error() -> None:
    flaky = Flaky(5, ConnectionError("away"))
    with pytest.raises(ConnectionError, match="away"):
        retry.call(flaky, on=ConnectionError, attempts=3)
    assert flaky.calls == 3


def test_at_least_one_attempt() -> None:
    flaky = Flaky(0, ConnectionError("away"))
    assert retry.call(flaky, on=ConnectionError, attempts=0) == "done"


def test_other_errors_pass_through_at_once() -> None:
    flaky = Flaky(5, KeyError("not found"))
    with pytest.raises(KeyError):
        retry.call(flaky, on=ConnectionError)
    assert flaky.calls == 1


def test_a_predicate_selects_errors() -> None:
    flaky = Flaky(2, ValueError("busy"))
    assert retry.call(flaky, on=lambda e: "busy" in str(e)) == "done"
    assert flaky.calls == 3


def test_waits_grow_with_jitter_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    backoff = retry.Backoff(first=0.1, cap=0.4, jitter=0.5)
    retry.call(Flaky(4, OSError()), on=OSError, backoff=backoff)
    assert len(slept) == 4
    for attempt, seconds in enumerate(slept, start=1):
        delay = backoff.delay(attempt)
        assert delay <= seconds <= delay * 1.5


def test_no_wait_does_not_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    retry.call(Flaky(2, OSError()), on=OSError)
    assert slept == []


def test_gives_up_after_a_while() -> None:
    began = time.monotonic()
    with pytest.raises(OSError, match="locked"):
        retry.call(
            Flaky(1000, OSError("locked")),
            on=OSError,
            backoff=retry.Backoff.constant(0.01),
            give_up_after=0.1,
        )
    assert 0.1 <= time.monotonic() - began < 1.0


async def test_async_retries_and_awaits_its_callback() -> None:
    flaky = Flaky(2, TimeoutError())
    heard: list[BaseException] = []

    async def record(error: BaseException) -> None:
        await asyncio.sleep(0)
        heard.append(error)

    result = await retry.call_async(
        flaky.call_async,
        on=TimeoutError,
        backoff=retry.Backoff.constant(0.01),
        before_retry=record,
    )
    assert result == "done"
    assert heard == [flaky.error] * 2


async def test_an_awaitable_returned_by_a_plain_function_is_awaited() -> None:
    flaky = Flaky(1, TimeoutError())
    answer = await retry.call_async(lambda: asyncio.to_thread(flaky), on=OSError)
    assert answer == "done"
    assert flaky.calls == 2


async def test_async_gives_up_after_its_attempts() -> None:
    flaky = Flaky(5, TimeoutError("slow"))
    with pytest.raises(TimeoutError, match="slow"):
        await retry.call_async(flaky.call_async, on=TimeoutError, attempts=2)
    assert flaky.calls == 2


async def test_a_stop_ends_the_wait() -> None:
    stop = asyncio.Event()
    flaky = Flaky(1000, OSError())
    asyncio.get_running_loop().call_later(0.1, stop.set)
    began = time.monotonic()
    with pytest.raises(retry.RetryStopped):
        await retry.call_async(
            flaky.call_async,
            on=OSError,
            backoff=retry.Backoff.constant(30.0),
            stop=stop,
        )
    assert time.monotonic() - began < 5.0
    assert flaky.calls == 1


async def test_a_cancellation_is_never_retried() -> None:
    flaky = Flaky(0, OSError())
    started = asyncio.Event()

    async def hangs() -> str:
        flaky()
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(retry.call_async(hangs, on=BaseException))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flaky.calls == 1
