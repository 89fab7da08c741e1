"""Turns domain errors into gRPC status codes in one place; never leaks a trace."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import grpc
from eventsourcing.persistence import InterfaceError, OperationalError

from closedloop.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

STATUS_OF: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ConcurrencyConflict, grpc.StatusCode.ABORTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)

#: Trailing metadata key naming the offending request field of INVALID_ARGUMENT.
FIELD_METADATA_KEY = "closedloop-field"


def status_of(error: DomainError) -> grpc.StatusCode:
    for kind, code in STATUS_OF:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps domain errors to status codes; anything unexpected is INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except DomainError as error:
                if isinstance(error, InvalidArgument):
                    context.set_trailing_metadata(((FIELD_METADATA_KEY, error.field),))
                await context.abort(status_of(error), error.message)
            except (OperationalError, InterfaceError) as error:
                log.warning("%s: store unavailable: %s", method, error)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, "the event store is unavailable; retry"
                )
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                incident = uuid.uuid4().hex[:12]
                log.exception("%s failed (incident %s)", method, incident)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error, incident {incident}"
                )

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
