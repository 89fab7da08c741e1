"""The request checks every API shares: each failure names its field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from closedloop.errors import FieldViolation, InvalidArgument
from closedloop.grpckit import validation as check
from closedloop.lead.v1 import types_pb2

if TYPE_CHECKING:
    from collections.abc import Callable


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


def _refusal(checks: Callable[[check.RequestChecks], object]) -> InvalidArgument:
    """The one error that running `checks` inside `every_violation` ends with."""

    def run() -> None:
        with check.every_violation() as found:
            checks(found)

    with pytest.raises(InvalidArgument) as raised:
        run()
    return raised.value


def test_every_violation_lists_each_bad_field_and_leads_with_the_first() -> None:
    def checks(_: check.RequestChecks) -> None:
        assert check.text("name", "bell\x07") == "bell\x07"
        assert check.text("company", "Acme") == "Acme"
        assert check.enum_value("channel", 999, types_pb2.Channel) == 0
        assert check.required_id("lead_id", "lead 1") == check.NIL_ID

    refusal = _refusal(checks)
    assert str(refusal) == "name: contains control characters"
    assert refusal.field == "name"
    assert refusal.violations == (
        FieldViolation("name", "contains control characters"),
        FieldViolation("channel", "has unknown value 999"),
        FieldViolation("lead_id", "is not a valid id"),
    )


def test_a_field_keeps_its_first_violation_and_hides_those_inside_it() -> None:
    def checks(found: check.RequestChecks) -> None:
        check.email("email", "")
        check.refuse("amount", "is required")
        check.refuse("amount.currency", "is required")
        check.refuse("attributes", "has more than 50 entries")
        check.refuse("attributes[utm]", "contains control characters")
        assert found.refused("amount.currency")
        assert not found.refused("name")

    assert [v.field for v in _refusal(checks).violations] == [
        "email",
        "amount",
        "attributes",
    ]


def test_a_rule_that_raises_ends_the_checks_with_what_was_found() -> None:
    def rule(field: str, value: int) -> int:
        raise InvalidArgument(field, f"{value} breaks the rule")

    def checks(_: check.RequestChecks) -> None:
        check.text("name", "", required=True)
        assert check.kept(rule, "score", 7) == 7
        rule("limit", 3)
        check.text("never", "bell\x07")

    assert [str(v) for v in _refusal(checks).violations] == [
        "name: is required",
        "score: 7 breaks the rule",
        "limit: 3 breaks the rule",
    ]


def test_checks_that_pass_raise_nothing_and_outside_a_scope_the_first_raises() -> None:
    with check.every_violation() as found:
        assert check.text("name", " Ada ") == "Ada"
    assert found.violations == ()
    with pytest.raises(InvalidArgument) as raised:
        check.kept(check.text, "name", "bell\x07")
    assert raised.value.violations == (
        FieldViolation("name", "contains control characters"),
    )
