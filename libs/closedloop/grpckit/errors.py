"""Turns domain errors into gRPC status codes in one place; never leaks a trace."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any

import grpc
from eventsourcing.persistence import InterfaceError, OperationalError
from google.protobuf import any_pb2, descriptor_pool
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from closedloop.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from closedloop.grpckit.client import serving

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


def status_of(error: DomainError) -> grpc.StatusCode:
    for kind, code in STATUS_OF:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def bad_request_status(error: InvalidArgument) -> grpc.Status:
    """INVALID_ARGUMENT with every violation as google.rpc.BadRequest details."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=v.description
            )
            for v in error.violations
        ]
    )
    details = any_pb2.Any()
    details.Pack(bad_request)
    status = status_pb2.Status(
        code=status_of(error).value[0], message=error.message, details=[details]
    )
    return rpc_status.to_status(status)  # type: ignore[no-any-return]


def field_violations(error: grpc.RpcError) -> tuple[FieldViolation, ...]:
    """The BadRequest field violations a failed call carries, none if it carries none.

    For clients: `error` is what a call raised (grpc.aio.AioRpcError or grpc.RpcError).
    Details that contradict the call's own status (a proxy rewrote it) count as none.
    """
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return ()
    if status is None:
        return ()
    violations: list[FieldViolation] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.extend(
                FieldViolation(v.field, v.description)
                for v in bad_request.field_violations
            )
    return tuple(violations)


def guard_servicer(servicer: Any, service_name: str) -> None:
    """Wraps each unary method of the servicer instance in the error mapping.

    The wrapper also notes the call's deadline for the calls it makes (see
    closedloop.grpckit.client).

    Done once when the service is registered rather than by a server interceptor,
    which would build a new method handler for every call.
    """
    service = descriptor_pool.Default().FindServiceByName(service_name)
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        inner = getattr(servicer, method.name, None)
        if inner is not None:
            full_name = f"/{service_name}/{method.name}"
            setattr(servicer, method.name, _guarded(inner, full_name))


def _guarded(
    inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Maps domain errors to status codes; anything unexpected is INTERNAL.

    Calls to other services made meanwhile end no later than this one.
    """

    @functools.wraps(inner)
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with serving(context):
                return await inner(request, context)
        except InvalidArgument as error:
            status = bad_request_status(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except DomainError as error:
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

    return guarded
