"""INVALID_ARGUMENT as google.rpc.BadRequest details, and how a client reads them."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from closedloop.errors import FieldViolation, InvalidArgument
from closedloop.grpckit.errors import bad_request_status, field_violations

VIOLATIONS = (
    FieldViolation("email", "is not a valid email address"),
    FieldViolation("name", "contains control characters"),
)


@dataclass(frozen=True)
class _FailedCall:
    """What a client holds after a call failed: code, details, trailing metadata."""

    status_code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def ended_with(cls, status: grpc.Status, message: str = "") -> _FailedCall:
        return cls(status.code, message or status.details, status.trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self.status_code

    def details(self) -> str:
        return self.message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self.trailers


def test_every_violation_travels_and_the_message_is_the_first() -> None:
    status = bad_request_status(InvalidArgument.of(VIOLATIONS))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "email: is not a valid email address"
    assert field_violations(_FailedCall.ended_with(status)) == VIOLATIONS


def test_a_call_without_details_or_with_contradicting_ones_has_none() -> None:
    status = bad_request_status(InvalidArgument.of(VIOLATIONS))
    assert field_violations(_FailedCall.ended_with(status, "rewritten")) == ()
    not_found = _FailedCall(grpc.StatusCode.NOT_FOUND, "lead x does not exist")
    assert field_violations(not_found) == ()
