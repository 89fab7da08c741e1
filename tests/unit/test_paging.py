"""The one way list RPCs page: bounded sizes, opaque tokens bound to their request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from closedloop.errors import FieldViolation, InvalidArgument
from closedloop.grpckit import paging
from closedloop.grpckit import validation as check
from closedloop.insights.v1 import insights_service_pb2 as insights_pb
from closedloop.lead.v1 import lead_service_pb2 as pb
from closedloop.lead.v1 import types_pb2

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

LEAD_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000001"
OTHER_LEAD_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000002"


def _pages(items: list[int], **fields: object) -> list[list[int]]:
    """Every page of `items`, asking with `fields` and each next token in turn."""
    pages, token = [], ""
    while True:
        request = pb.GetJourneyRequest(lead_id=LEAD_ID, page_token=token, **fields)
        page = paging.page_request(request).of(items)
        pages.append(list(page.items))
        token = page.next_page_token
        if not token:
            return pages


def test_the_pages_hold_every_item_once_in_order() -> None:
    assert _pages(list(range(7)), page_size=3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _pages(list(range(6)), page_size=3) == [[0, 1, 2], [3, 4, 5]]
    assert _pages([], page_size=3) == [[]]


def test_a_page_read_by_sql_tells_a_next_page_by_one_row_more() -> None:
    items = list(range(5))
    first = paging.page_request(pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=2))
    page = first.read_from_start(items[first.start : first.start + first.limit])
    assert (list(page.items), bool(page.next_page_token)) == ([0, 1], True)
    last = paging.page_request(
        pb.GetJourneyRequest(
            lead_id=LEAD_ID, page_size=3, page_token=page.next_page_token
        )
    )
    assert (last.start, last.limit) == (2, 4)
    page = last.read_from_start(items[last.start : last.start + last.limit])
    assert (list(page.items), page.next_page_token) == ([2, 3, 4], "")


def test_no_size_means_the_default_and_a_large_one_the_maximum() -> None:
    items = list(range(2500))
    assert [len(p) for p in _pages(items)] == [100] * 25
    assert [len(p) for p in _pages(items, page_size=5000)] == [1000, 1000, 500]
    assert paging.DEFAULT_PAGE_SIZE == 100
    assert paging.MAX_PAGE_SIZE == 1000


def test_the_size_may_change_from_page_to_page() -> None:
    items = list(range(10))
    first = paging.page_request(pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=4))
    token = first.of(items).next_page_token
    second = paging.page_request(
        pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=2, page_token=token)
    )
    assert list(second.of(items).items) == [4, 5]


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        paging.page_request(pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=-1))
    assert str(raised.value) == "page_size: must not be negative"


@pytest.mark.parametrize(
    "token",
    ["junk", "", "AQAAAAAAAAAFAAAAAAAAAAA", "é", "A" * 200],
    ids=["junk", "empty-but-padded", "forged", "not-ascii", "long"],
)
def test_a_token_never_issued_is_refused(token: str) -> None:
    request = pb.GetJourneyRequest(lead_id=LEAD_ID, page_token=token or "=")
    with pytest.raises(InvalidArgument) as raised:
        paging.page_request(request)
    assert str(raised.value) == "page_token: is not a page token of this request"


def test_a_token_serves_only_the_request_it_came_from() -> None:
    page = paging.page_request(pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=1))
    token = page.of([1, 2]).next_page_token
    with pytest.raises(InvalidArgument, match="page_token"):
        paging.page_request(
            pb.GetJourneyRequest(lead_id=OTHER_LEAD_ID, page_token=token)
        )


def test_bad_paging_fields_join_the_other_violations() -> None:
    request = pb.GetJourneyRequest(lead_id="lead 1", page_size=-5)
    request.page_token = "junk"  # noqa: S105 - a page token, not a secret

    def checks() -> None:
        with check.every_violation():
            check.required_id("lead_id", request.lead_id)
            page = paging.page_request(request)
            assert (page.start, page.size) == (0, paging.DEFAULT_PAGE_SIZE)

    with pytest.raises(InvalidArgument) as raised:
        checks()
    assert raised.value.violations == (
        FieldViolation("lead_id", "is not a valid id"),
        FieldViolation("page_size", "must not be negative"),
        FieldViolation("page_token", "is not a page token of this request"),
    )


def _journey_of(
    items: list[int], asked: list[str]
) -> Callable[[str], Awaitable[pb.GetJourneyResponse]]:
    """A GetJourney of `items` two a page; each token asked for lands in `asked`."""

    async def call(token: str) -> pb.GetJourneyResponse:
        asked.append(token)
        request = pb.GetJourneyRequest(lead_id=LEAD_ID, page_size=2, page_token=token)
        page = paging.page_request(request).of(items)
        return pb.GetJourneyResponse(
            lead_id=LEAD_ID,
            touchpoints=[
                types_pb2.Touchpoint(touchpoint_id=str(i)) for i in page.items
            ],
            next_page_token=page.next_page_token,
        )

    return call


async def test_every_page_asks_with_each_next_token_until_the_last() -> None:
    asked: list[str] = []
    call = _journey_of(list(range(5)), asked)
    seen = [
        t.touchpoint_id
        async for response in paging.every_page(call)
        for t in response.touchpoints
    ]
    assert seen == ["0", "1", "2", "3", "4"]
    assert len(asked) == 3
    assert asked[0] == ""


async def test_joined_pages_hold_every_item_and_no_next_token() -> None:
    asked: list[str] = []
    call = _journey_of(list(range(5)), asked)
    whole = await paging.joined_pages(call, "touchpoints")
    assert [t.touchpoint_id for t in whole.touchpoints] == ["0", "1", "2", "3", "4"]
    assert (whole.lead_id, whole.next_page_token) == (LEAD_ID, "")
    assert len(asked) == 3

    asked.clear()
    first = await paging.joined_pages(call, "touchpoints", at_most=3)
    assert [t.touchpoint_id for t in first.touchpoints] == ["0", "1", "2"]
    assert first.next_page_token == ""
    assert len(asked) == 2


def _trails_of(
    trails: dict[str, list[str]], asked: list[str]
) -> Callable[[str], Awaitable[insights_pb.GetConsentStatusResponse]]:
    """A GetConsentStatus of records and their trails, two entries a page."""
    trail = [
        (record, change) for record, changes in trails.items() for change in changes
    ]

    async def call(token: str) -> insights_pb.GetConsentStatusResponse:
        asked.append(token)
        request = insights_pb.GetConsentStatusRequest(
            lead_id=LEAD_ID, include_history=True, page_size=2, page_token=token
        )
        page = paging.page_request(request).of(trail)
        return insights_pb.GetConsentStatusResponse(
            subjects=[
                insights_pb.ConsentSubject(
                    subject_aggregate_id=record,
                    history=[
                        insights_pb.ConsentAuditEntry(change_id=change)
                        for owner, change in page.items
                        if owner == record
                    ],
                )
                for record in trails
            ],
            next_page_token=page.next_page_token,
        )

    return call


def _trails(response: insights_pb.GetConsentStatusResponse) -> dict[str, list[str]]:
    return {
        subject.subject_aggregate_id: [h.change_id for h in subject.history]
        for subject in response.subjects
    }


async def test_joined_pages_join_lists_inside_the_elements_every_page_repeats() -> None:
    trails = {"email": ["1", "2", "3"], "lead": ["4", "5"]}
    asked: list[str] = []
    whole = await paging.joined_pages(_trails_of(trails, asked), "subjects.history")
    assert _trails(whole) == trails
    assert (len(asked), whole.next_page_token) == (3, "")

    asked.clear()
    first = await paging.joined_pages(
        _trails_of(trails, asked), "subjects.history", at_most=3
    )
    assert _trails(first) == {"email": ["1", "2", "3"], "lead": []}
    assert len(asked) == 2


async def test_an_element_that_changed_between_pages_is_shown_again() -> None:
    served = _trails_of({"email": ["1", "2", "3"]}, [])

    async def call(token: str) -> insights_pb.GetConsentStatusResponse:
        page = await served(token)
        if token:
            page.subjects[0].erased = True
        return page

    whole = await paging.joined_pages(call, "subjects.history")
    assert [(s.erased, len(s.history)) for s in whole.subjects] == [
        (False, 2),
        (True, 1),
    ]
