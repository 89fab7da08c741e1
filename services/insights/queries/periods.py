"""Periods of whole months, as asked and as microsecond bounds of business time."""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.grpckit.validation import refuse
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
    """The period's bounds; a malformed bound is refused and stands in as open."""
    bounds = {"from_month": "", "to_month": ""}
    for name in bounds:
        value = getattr(period, name)
        if not value:
            continue
        try:
            parse_month(value)
        except ValueError as error:
            refuse(f"{field_name}.{name}", str(error))
        else:
            bounds[name] = value
    first, last = bounds["from_month"], bounds["to_month"]
    if first and last and first > last:
        refuse(f"{field_name}.to_month", "is before from_month")
    return Window(
        start=month_start(first) if first else None,
        end=month_end(last) if last else None,
        first_month=first,
        last_month=last,
    )


def closed_window(period: Period, field_name: str = "period") -> Window:
    """A period with both bounds, for figures compared with the period before."""
    if not period.from_month or not period.to_month:
        refuse(field_name, "needs from_month and to_month")
    return window(period, field_name)
