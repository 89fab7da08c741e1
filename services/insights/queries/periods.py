"""Periods of whole months, as asked and as microsecond bounds of business time."""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.errors import InvalidArgument
from closedloop.projections.times import month_end, month_start, parse_month


@dataclass(frozen=True)
class Period:
    """Months as asked ("YYYY-MM", both included); an empty bound is open."""

    from_month: str = ""
    to_month: str = ""


@dataclass(frozen=True)
class Window:
    """A period as microseconds [start, end); None for an open bound."""

    start: int | None
    end: int | None
    first_month: str = ""
    last_month: str = ""

    def contains(self, us: int | None) -> bool:
        if us is None:
            return False
        return (self.start is None or us >= self.start) and (
            self.end is None or us < self.end
        )

    def has_month(self, month: str) -> bool:
        return (not self.first_month or month >= self.first_month) and (
            not self.last_month or month <= self.last_month
        )


def window(period: Period, field_name: str = "period") -> Window:
    for name in ("from_month", "to_month"):
        value = getattr(period, name)
        if value:
            try:
                parse_month(value)
            except ValueError as error:
                raise InvalidArgument(f"{field_name}.{name}", str(error)) from None
    if period.from_month and period.to_month and period.from_month > period.to_month:
        raise InvalidArgument(f"{field_name}.to_month", "is before from_month")
    return Window(
        start=month_start(period.from_month) if period.from_month else None,
        end=month_end(period.to_month) if period.to_month else None,
        first_month=period.from_month,
        last_month=period.to_month,
    )
