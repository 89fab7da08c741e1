"""Business times as integer microseconds since the epoch, and calendar months.

Read models store times as integers: exact, sortable and the same in SQLite and
PostgreSQL. Months are `YYYY-MM` strings in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def micros(ts: Timestamp) -> int:
    """A protobuf Timestamp as microseconds (sub-microsecond digits dropped)."""
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def micros_of(value: datetime) -> int:
    delta = value.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_of(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def month_of(us: int) -> str:
    return datetime_of(us).strftime("%Y-%m")


def parse_month(month: str) -> tuple[int, int]:
    """`2026-03` -> (2026, 3); ValueError for anything else."""
    match = _MONTH.match(month)
    if match is None:
        msg = f"{month!r} is not a month like 2026-03"
        raise ValueError(msg)
    return int(match.group(1)), int(match.group(2))


def month_start(month: str) -> int:
    year, number = parse_month(month)
    return micros_of(datetime(year, number, 1, tzinfo=UTC))


def next_month(month: str) -> str:
    year, number = parse_month(month)
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, number = parse_month(month)
    if number == 1:
        return f"{year - 1:04d}-12"
    return f"{year:04d}-{number - 1:02d}"


def month_end(month: str) -> int:
    """The first microsecond after the month."""
    return month_start(next_month(month))


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included."""
    months = []
    current = first
    while current <= last:
        months.append(current)
        current = next_month(current)
    return months


def split_by_month(start_us: int, end_us: int, amount: int) -> dict[str, int]:
    """Splits an integer amount over the months of [start, end) by time, exactly.

    Each month gets its share of the seconds; the minor units left by flooring go to
    the largest remainders (ties to the earlier month), so the parts sum to `amount`.
    An empty or reversed period puts everything in the month of `start`.
    """
    if end_us <= start_us:
        return {month_of(start_us): amount}
    spans: list[tuple[str, int]] = []
    cursor = start_us
    while cursor < end_us:
        month = month_of(cursor)
        stop = min(month_end(month), end_us)
        spans.append((month, stop - cursor))
        cursor = stop
    total = end_us - start_us
    sign = -1 if amount < 0 else 1
    magnitude = abs(amount)
    floors = [magnitude * span // total for _, span in spans]
    remainders = [magnitude * span % total for _, span in spans]
    left = magnitude - sum(floors)
    for index in sorted(range(len(spans)), key=lambda i: (-remainders[i], i))[:left]:
        floors[index] += 1
    return {month: sign * part for (month, _), part in zip(spans, floors, strict=True)}
