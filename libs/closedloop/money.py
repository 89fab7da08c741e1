"""Money as integer minor units of an ISO 4217 currency; the exponent from Babel."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import get_currency_precision, list_currencies

from closedloop.errors import InvalidArgument

#: Codes that name no money: "no currency" and the code reserved for testing.
_NOT_MONEY = frozenset({"XXX", "XTS"})

#: ISO 4217 alphabetic codes Babel (CLDR) knows, current and historic.
CURRENCIES = frozenset(
    code
    for code in list_currencies()
    if len(code) == 3 and code.isalpha() and code not in _NOT_MONEY  # noqa: PLR2004
)


def check_currency(field: str, code: str) -> str:
    """The code, trimmed and upper-cased; INVALID_ARGUMENT naming `field` otherwise."""
    value = code.strip().upper()
    if not value:
        raise InvalidArgument(field, "is required")
    if value not in CURRENCIES:
        raise InvalidArgument(field, f"{code!r} is not an ISO 4217 currency code")
    return value


def exponent(currency: str) -> int:
    """Digits after the decimal point: JPY 0, USD 2, BHD 3 (never assumed to be 2)."""
    return int(get_currency_precision(currency))


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units; amounts of different currencies never mix."""

    minor_units: int
    currency: str

    @property
    def exponent(self) -> int:
        return exponent(self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact: 123456 USD -> Decimal("1234.56")."""
        return Decimal(self.minor_units).scaleb(-self.exponent)

    def __str__(self) -> str:
        return f"{self.to_decimal():.{self.exponent}f} {self.currency}"

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            msg = f"cannot add {other.currency} to {self.currency}"
            raise ValueError(msg)
        return Money(self.minor_units + other.minor_units, self.currency)
