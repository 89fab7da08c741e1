"""Request field checks shared by the APIs; each failure names its field.

Limits (documented in the README): identifiers and names at most 256 characters,
email at most 254, free text at most 2,000, idempotency keys at most 200, attributes
at most 50 entries of 256 characters; `occurred_at` no more than five minutes ahead of
the server clock and not before 1990.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from closedloop.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

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


def text(
    field: str, value: str, *, max_length: int = MAX_NAME, required: bool = False
) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"is longer than {max_length} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "contains control characters")
    return value


def email(field: str, value: str, *, required: bool = True) -> str:
    value = text(field, value, max_length=MAX_EMAIL, required=required)
    if not value and not required:
        return ""
    if not _EMAIL.match(value):
        raise InvalidArgument(field, "is not a valid email address")
    local, _, domain = value.rpartition("@")
    if len(local) > 64:  # noqa: PLR2004 - RFC 5321
        raise InvalidArgument(field, "has a local part longer than 64 characters")
    return f"{local}@{domain.lower()}"


def identifier(field: str, value: str, *, required: bool = True) -> uuid.UUID | None:
    value = value.strip()
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, "is not a valid id") from None


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
        raise InvalidArgument(field, "is not a valid timestamp") from None
    if when > now + FUTURE_TOLERANCE:
        raise InvalidArgument(field, "lies in the future")
    if when < EARLIEST:
        raise InvalidArgument(field, "lies before 1990")
    return when


def enum_value(
    field: str, value: int, enum: EnumTypeWrapper, *, required: bool = False
) -> int:
    if value not in enum.DESCRIPTOR.values_by_number:
        raise InvalidArgument(field, f"has unknown value {value}")
    if required and value == 0:
        raise InvalidArgument(field, "is required")
    return value


def attributes(field: str, values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_ATTRIBUTES:
        raise InvalidArgument(field, f"has more than {MAX_ATTRIBUTES} entries")
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
