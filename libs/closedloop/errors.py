"""Domain errors shared by every context: the one dependency-free module domains import.

Each class says how a caller should read the failure; `closedloop.grpckit` maps them
to gRPC status codes in one place, so domain code never knows about transport.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a command may raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):  # noqa: N818 - reads as the status it maps to
    """A request field is malformed; nothing was recorded."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


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
