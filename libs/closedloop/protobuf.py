"""Small conversions between protobuf well-known types and Python values."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """Exact to the microsecond, and cheap: relays convert every event's times."""
    delta = value - _EPOCH
    return Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def to_datetime(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


@functools.cache
def enum_number(enum: EnumTypeWrapper, prefix: str, name: str) -> int:
    """`("CHANNEL_", "paid_search")` -> CHANNEL_PAID_SEARCH; unknown names give 0."""
    if not name:
        return 0
    try:
        return int(enum.Value(prefix + name.upper()))
    except ValueError:
        return 0


def enum_name(enum: EnumTypeWrapper, prefix: str, number: int) -> str:
    """CHANNEL_PAID_SEARCH -> "paid_search"; the zero value gives ""."""
    if number == 0:
        return ""
    return str(enum.Name(number)).removeprefix(prefix).lower()
