"""How the commands print: tables on stdout, errors on stderr, amounts and rates."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from google.protobuf.message import Message

# Piped output is not cut at 80 columns: tables stay one row per line.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def print_json(message: Message) -> None:
    from google.protobuf.json_format import MessageToJson  # noqa: PLC0415

    sys.stdout.write(
        MessageToJson(message, preserving_proto_field_name=True, indent=2) + "\n"
    )


def major(amount: int, currency: str) -> str:
    """Minor units as the currency writes them: 1234567 USD -> 12,345.67 USD."""
    from babel.numbers import get_currency_precision  # noqa: PLC0415

    digits = get_currency_precision(currency) if currency else 2
    value = amount / (10**digits)
    return f"{value:,.{digits}f} {currency}"


def percent(message: Message, field: str) -> str:
    return f"{getattr(message, field):.1%}" if message.HasField(field) else "-"
