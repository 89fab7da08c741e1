"""Domain errors shared by every context: the one dependency-free module domains import.

Each class says how a caller should read the failure; `closedloop.grpckit` maps them
to gRPC status codes in one place, so domain code never knows about transport.
"""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a command may raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One malformed request field and what is wrong with it."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class InvalidArgument(DomainError):  # noqa: N818 - reads as the status it maps to
    """Request fields are malformed; nothing was recorded.

    Carries every violation found; the message and `field` are the first one's,
    which is what a caller that reads only one expects.
    """

    def __init__(self, field: str, message: str) -> None:
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, message),)
        super().__init__(f"{field}: {message}")
        self.field = field

    @classmethod
    def of(cls, violations: tuple[FieldViolation, ...]) -> InvalidArgument:
        """One error for several violations, the first of them leading."""
        first, *_ = violations
        error = cls(first.field, first.description)
        error.violations = violations
        return error


class NotFound(DomainError):  # noqa: N818
    """The thing a request names does not exist."""


class AlreadyExists(DomainError):  # noqa: N818
    """The thing a request would create exists already."""


class FailedPrecondition(DomainError):  # noqa: N818
    """The command does not fit the current state (a broken business rule)."""


class ConcurrencyConflict(DomainError):  # noqa: N818
    """Another writer changed the same aggregate; retrying may succeed."""


class Unavailable(DomainError):  # noqa: N818
    """A service this command depends on could not be reached."""
