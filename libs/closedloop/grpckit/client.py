"""One way for a service to call another: a grpc.aio channel and a stub on it.

The channel reconnects soon after the other service comes back, and its interceptor
gives every call what the caller's context says: the correlation id and traceparent
of the command being served (`on_behalf_of`), and a deadline no later than that of the
call being served (`serving`, entered for every call a closedloop server handles), so
a caller that gave up does not leave work behind it. Without a call being served, a
call gets the client's default timeout.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from closedloop.grpckit import CORRELATION_ID_KEY, TRACEPARENT_KEY

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from closedloop.eventstore.metadata import EventMeta

StubT = TypeVar("StubT")

#: Reconnect soon after the other service comes back, instead of backing off for up
#: to two minutes. gRPC's "min_reconnect_backoff" stays: it is the connect timeout.
RECONNECT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

#: The ids outgoing calls carry, while a port calls on behalf of a command.
_on_behalf_of: ContextVar[EventMeta | None] = ContextVar("on_behalf_of", default=None)
#: When the call being served ends (time.monotonic()), None without a deadline.
_serving_until: ContextVar[float | None] = ContextVar("serving_until", default=None)


@contextlib.asynccontextmanager
async def on_behalf_of(meta: EventMeta | None) -> AsyncIterator[None]:
    """Calls made inside carry `meta`'s correlation id and traceparent."""
    token = _on_behalf_of.set(meta)
    try:
        yield
    finally:
        _on_behalf_of.reset(token)


@contextlib.contextmanager
def serving(context: grpc.aio.ServicerContext) -> Iterator[None]:
    """Inside, outgoing calls end no later than the incoming call of `context`."""
    remaining = context.time_remaining()
    token = _serving_until.set(
        None if remaining is None else time.monotonic() + remaining
    )
    try:
        yield
    finally:
        _serving_until.reset(token)


def call_timeout(timeout: float) -> float:
    """`timeout`, or what is left of the call being served if that is less."""
    until = _serving_until.get()
    if until is None:
        return timeout
    return max(0.0, min(timeout, until - time.monotonic()))


class ContextInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the caller's ids and deadline to every unary call of a channel."""

    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = client_call_details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        meta = _on_behalf_of.get()
        if meta is not None:
            if CORRELATION_ID_KEY not in metadata:
                metadata.add(CORRELATION_ID_KEY, meta.correlation_id)
            if TRACEPARENT_KEY not in metadata:
                metadata.add(TRACEPARENT_KEY, meta.traceparent)
        timeout = self.default_timeout if details.timeout is None else details.timeout
        return await continuation(
            grpc.aio.ClientCallDetails(
                method=details.method,
                timeout=call_timeout(timeout),
                metadata=metadata,
                credentials=details.credentials,
                wait_for_ready=details.wait_for_ready,
            ),
            request,
        )


def open_channel(address: str, *, default_timeout: float) -> grpc.aio.Channel:
    """A channel to another service whose calls follow the caller's context."""
    return grpc.aio.insecure_channel(
        address,
        options=RECONNECT_OPTIONS,
        interceptors=[ContextInterceptor(default_timeout)],
    )


class ServiceClient(Generic[StubT]):
    """A stub on a channel opened at its first use; `close()` releases it."""

    def __init__(
        self,
        address: str,
        stub_class: Callable[[grpc.aio.Channel], StubT],
        *,
        default_timeout: float,
    ) -> None:
        self.address = address
        self.default_timeout = default_timeout
        self._stub_class = stub_class
        self._channel: grpc.aio.Channel | None = None
        self._stub: StubT | None = None

    def stub(self) -> StubT:
        if self._stub is None:
            self._channel = open_channel(
                self.address, default_timeout=self.default_timeout
            )
            self._stub = self._stub_class(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()
