"""One retry policy for every part that waits and tries again, on tenacity.

The wait grows exponentially from a first delay up to a cap, plus a random part
proportional to it (so many processes that lost the same server do not come back in
step). What legitimately differs between callers are parameters: which errors are
worth another try, how many attempts (optimistic concurrency conflicts) or how long
(a file lock) before giving up, the delays, what to log before waiting, and an event
that ends the waiting of a part that is being stopped. The last error is re-raised
when the policy gives up; errors it does not retry pass through at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import tenacity
from tenacity.asyncio import AsyncRetrying
from tenacity.wait import wait_base

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")

#: Which errors are worth another try: exception types, or a predicate on the error.
#: Cancellations and interrupts never are.
RetryOn = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | Callable[[BaseException], bool]
)


class RetryStopped(Exception):  # noqa: N818 - a state, not a failure
    """The stop event was set while waiting for the next attempt."""


@dataclass(frozen=True)
class Backoff:
    """Waits `first`, then `factor` times longer each time, at most `cap`.

    On top of that delay, a random part of up to `jitter` times it.
    """

    first: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0

    @classmethod
    def constant(cls, delay: float) -> Backoff:
        return cls(first=delay, cap=delay, factor=1.0)

    def delay(self, attempt: int) -> float:
        """The wait after the `attempt`-th failed attempt (1-based), before jitter."""
        return min(self.first * self.factor ** (attempt - 1), self.cap)


#: Tries again at once: for conflicts, where the next attempt reloads and decides.
NO_WAIT = Backoff.constant(0.0)


class _BackoffWait(wait_base):
    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self._backoff.delay(retry_state.attempt_number)
        if self._backoff.jitter:
            delay += random.uniform(0, delay * self._backoff.jitter)
        return delay


def _retry_condition(on: RetryOn) -> tenacity.retry_base:
    """Only errors: a cancellation or an interrupt is never tried again."""
    if isinstance(on, type | tuple):
        types = on
        return tenacity.retry_if_exception(
            lambda error: isinstance(error, Exception) and isinstance(error, types)
        )
    predicate = on
    return tenacity.retry_if_exception(
        lambda error: isinstance(error, Exception) and predicate(error)
    )


def _stop_condition(
    attempts: int | None, give_up_after: float | None
) -> tenacity.stop.stop_base:
    stop: tenacity.stop.stop_base = tenacity.stop_never
    if attempts is not None:
        stop = tenacity.stop_after_attempt(max(attempts, 1))
    if give_up_after is not None:
        stop = stop | tenacity.stop_after_delay(give_up_after)
    return stop


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def _last_error(retry_state: tenacity.RetryCallState) -> BaseException:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    assert error is not None  # noqa: S101 - tenacity sleeps only after a failure
    return error


def call(
    fn: Callable[[], T],
    *,
    on: RetryOn,
    backoff: Backoff = NO_WAIT,
    attempts: int | None = None,
    give_up_after: float | None = None,
    before_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Calls `fn` until it returns, retrying the errors `on` selects.

    `attempts` counts calls (at least one); `give_up_after` is in seconds since the
    first; neither means until it succeeds. `before_retry` hears each retried error.
    """
    retrying = tenacity.Retrying(
        sleep=_sleep,
        retry=_retry_condition(on),
        stop=_stop_condition(attempts, give_up_after),
        wait=_BackoffWait(backoff),
        before_sleep=(
            None
            if before_retry is None
            else lambda state: before_retry(_last_error(state))
        ),
        reraise=True,
    )
    return retrying(fn)


async def call_async(
    fn: Callable[[], Awaitable[T]],
    *,
    on: RetryOn,
    backoff: Backoff = NO_WAIT,
    attempts: int | None = None,
    give_up_after: float | None = None,
    before_retry: Callable[[BaseException], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """`call` for coroutines; a set `stop` ends the wait with RetryStopped.

    `before_retry` may be a coroutine function: it is awaited before the wait.
    """

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        if before_retry is not None:
            heard = before_retry(_last_error(state))
            if inspect.isawaitable(heard):
                await heard

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
        if stop.is_set():
            raise RetryStopped

    async def attempt() -> T:
        # A coroutine function, so that tenacity awaits it: `fn` may be a lambda
        # that returns an awaitable.
        return await fn()

    retrying = AsyncRetrying(
        sleep=sleep,
        retry=_retry_condition(on),
        stop=_stop_condition(attempts, give_up_after),
        wait=_BackoffWait(backoff),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: T = await retrying(attempt)
    return result
