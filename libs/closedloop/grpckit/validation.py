"""Request field checks shared by the APIs; each failure names its field.

A servicer runs a request's checks inside `every_violation()`, so that a client learns
every malformed field of a request at once (google.rpc.BadRequest), not one per try.
Outside that scope each check raises at its first failure.

Limits (documented in the README): identifiers and names at most 256 characters,
email at most 254, free text at most 2,000, idempotency keys at most 200, attributes
at most 50 entries of 256 characters; `occurred_at` no more than five minutes ahead of
the server clock and not before 1990.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from closedloop.errors import FieldViolation, InvalidArgument
from closedloop.money import Money

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

MAX_NAME = 256
MAX_EMAIL = 254
MAX_TEXT = 2000
MAX_KEY = 200
MAX_ATTRIBUTES = 50
#: Control characters other than tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
FUTURE_TOLERANCE = timedelta(minutes=5)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


P = ParamSpec("P")
T = TypeVar("T")

#: Stands in for a required id that was refused, so the checks after it still run.
NIL_ID = uuid.UUID(int=0)


class RequestChecks:
    """The violations found so far among one request's checks, first found first.

    A field keeps only its first violation, and a field inside a refused one (`amount`
    refused, then `amount.currency`) none: what follows from a stand-in value is noise.
    """

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []

    @property
    def violations(self) -> tuple[FieldViolation, ...]:
        return tuple(self._found)

    def refused(self, *fields: str) -> bool:
        """Whether any of `fields` (or a field around it) was refused already."""
        return any(self._covered(field) for field in fields)

    def record(self, violations: Iterable[FieldViolation]) -> None:
        for violation in violations:
            if not self._covered(violation.field):
                self._found.append(violation)

    def _covered(self, field: str) -> bool:
        return any(
            field == found.field
            or field.startswith((f"{found.field}.", f"{found.field}["))
            for found in self._found
        )


_CHECKS: ContextVar[RequestChecks | None] = ContextVar(
    "closedloop_request_checks", default=None
)


@contextlib.contextmanager
def every_violation() -> Iterator[RequestChecks]:
    """Runs a request's checks to the end, then refuses it once, listing them all.

    Inside, a check that refuses its field records the violation and returns a
    stand-in value, so the checks after it still run; code that raises
    InvalidArgument ends them there. On leaving, the violations found raise one
    InvalidArgument, whose message is the first's: what a caller saw when the checks
    stopped at the first.
    """
    checks = RequestChecks()
    token = _CHECKS.set(checks)
    try:
        yield checks
    except InvalidArgument as error:
        checks.record(error.violations)
        raise InvalidArgument.of(checks.violations) from None
    finally:
        _CHECKS.reset(token)
    if checks.violations:
        raise InvalidArgument.of(checks.violations)


def refuse(field: str, description: str) -> None:
    """Refuses `field`: recorded inside `every_violation`, raised outside it."""
    checks = _CHECKS.get()
    if checks is None:
        raise InvalidArgument(field, description)
    checks.record((FieldViolation(field, description),))


def kept(
    rule: Callable[Concatenate[str, T, P], T],
    field: str,
    value: T,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`rule(field, value, ...)`, a domain rule that raises, run as one more check.

    Inside `every_violation` its refusal is recorded and `value` stands in for its
    result.
    """
    try:
        return rule(field, value, *args, **kwargs)
    except InvalidArgument as error:
        checks = _CHECKS.get()
        if checks is None:
            raise
        checks.record(error.violations)
        return value


def text(
    field: str, value: str, *, max_length: int = MAX_NAME, required: bool = False
) -> str:
    value = value.strip()
    if required and not value:
        refuse(field, "is required")
    elif len(value) > max_length:
        refuse(field, f"is longer than {max_length} characters")
    elif _CONTROL.search(value):
        refuse(field, "contains control characters")
    return value


def email(field: str, value: str, *, required: bool = True) -> str:
    value = text(field, value, max_length=MAX_EMAIL, required=required)
    if not value and not required:
        return ""
    if not _EMAIL.match(value):
        refuse(field, "is not a valid email address")
        return value
    local, _, domain = value.rpartition("@")
    if len(local) > 64:  # noqa: PLR2004 - RFC 5321
        refuse(field, "has a local part longer than 64 characters")
    return f"{local}@{domain.lower()}"


def identifier(field: str, value: str, *, required: bool = True) -> uuid.UUID | None:
    value = value.strip()
    if not value:
        if required:
            refuse(field, "is required")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        refuse(field, "is not a valid id")
        return None


def required_id(field: str, value: str) -> uuid.UUID:
    """A required id; `NIL_ID` stands in for a refused one."""
    return identifier(field, value) or NIL_ID


def occurred_at(
    field: str, value: Timestamp, has_value: bool, *, now: datetime | None = None
) -> datetime:
    """Business time: now when absent; not in the far future; not before 1990."""
    now = now or datetime.now(UTC)
    if not has_value:
        return now
    try:
        when = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        refuse(field, "is not a valid timestamp")
        return now
    if when > now + FUTURE_TOLERANCE:
        refuse(field, "lies in the future")
        return now
    if when < EARLIEST:
        refuse(field, "lies before 1990")
        return now
    return when


def time_from_1990(field: str, value: Timestamp) -> datetime | None:
    """A forecast or a period bound: any valid time from 1990 on, the future included.

    None stands in for a refused one.
    """
    try:
        when = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        refuse(field, "is not a valid timestamp")
        return None
    if when < EARLIEST:
        refuse(field, "lies before 1990")
        return None
    return when


def money(request: Message, field: str) -> Money:
    """A required Money field; an unset one is refused, and no money stands in."""
    if not request.HasField(field):
        refuse(field, "is required")
        return Money(0, "")
    value = getattr(request, field)
    return Money(value.minor_units, value.currency)


def enum_value(
    field: str, value: int, enum: EnumTypeWrapper, *, required: bool = False
) -> int:
    """The number, if the enum defines it; 0 stands in for a refused one."""
    if value not in enum.DESCRIPTOR.values_by_number:
        refuse(field, f"has unknown value {value}")
        return 0
    if required and value == 0:
        refuse(field, "is required")
    return value


def attributes(field: str, values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_ATTRIBUTES:
        refuse(field, f"has more than {MAX_ATTRIBUTES} entries")
        return {}
    checked = {}
    for key, value in values.items():
        name = text(f"{field}.key", key, required=True)
        checked[name] = text(f"{field}[{name}]", value)
    return checked


def business_time(
    request: Message, field: str = "occurred_at", *, default: datetime | None = None
) -> datetime:
    """A business-time field of a request: `default` (else now) when unset."""
    if default is not None and not request.HasField(field):
        return default
    return occurred_at(field, getattr(request, field), request.HasField(field))
