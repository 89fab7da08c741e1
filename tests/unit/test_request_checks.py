"""The request checks every API shares: each failure names its field."""

from __future__ import annotations

import pytest

from closedloop.errors import InvalidArgument
from closedloop.grpckit import validation as check
from closedloop.lead.v1 import types_pb2


@pytest.mark.parametrize(
    "value", ["a\x00b", "bell\x07", "vertical\x0btab", "esc\x1b[0m"]
)
def test_text_refuses_control_characters(value: str) -> None:
    with pytest.raises(InvalidArgument, match="control characters") as raised:
        check.text("campaign", value)
    assert raised.value.field == "campaign"


@pytest.mark.parametrize(
    "value", ["tab\there", "two\nlines", "crlf\r\n end", "émoji ✓"]
)
def test_text_keeps_tabs_newlines_and_any_printable_character(value: str) -> None:
    assert check.text("content", value) == value.strip()


def test_text_strips_and_limits_length() -> None:
    assert check.text("source", "  google  ") == "google"
    with pytest.raises(InvalidArgument, match="longer than 3"):
        check.text("source", "abcd", max_length=3)


def test_enum_value_accepts_only_numbers_the_enum_defines() -> None:
    assert check.enum_value("channel", types_pb2.CHANNEL_REFERRAL, types_pb2.Channel)
    with pytest.raises(InvalidArgument, match="unknown value 999"):
        check.enum_value("channel", 999, types_pb2.Channel)
    with pytest.raises(InvalidArgument, match="is required"):
        check.enum_value("channel", 0, types_pb2.Channel, required=True)
