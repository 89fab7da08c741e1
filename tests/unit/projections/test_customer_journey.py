"""customer_journey: a person's facts in time order, across visitors and merges."""

from __future__ import annotations

import pytest

from closedloop.errors import NotFound
from closedloop.identity import email_digest
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.readmodels.customer_journey import identity
from closedloop.testing.readside import (
    SECRET_KEY,
    apply_events,
    ident,
    scripted_quarter,
    snapshot,
)
from services.insights.queries.customer_journey import customer_journey_of
from services.insights.wire import journey_response
from services.projector.projections.customer_journey import CustomerJourney


@pytest.fixture(scope="module")
def built() -> tuple[object, ...]:
    projection = CustomerJourney()
    store, key = apply_events(projection, scripted_quarter().log.events, batch_size=9)
    return store, key, projection


def journey(built: tuple[object, ...], **kwargs: str) -> pb.GetCustomerJourneyResponse:
    store, key, projection = built
    with store.read() as conn:  # type: ignore[attr-defined]
        found = customer_journey_of(conn, store.tables_for(projection, key), **kwargs)  # type: ignore[attr-defined]
    return journey_response(found)


def test_a_journey_runs_from_the_first_visit_to_the_renewal(
    built: tuple[object, ...],
) -> None:
    ann = journey(built, email_digest=email_digest(SECRET_KEY, "Ann@Example.com "))
    assert ann.lead_id == ident("lead", "ann")
    assert ann.anonymous_ids == ["v-ann"]
    assert ann.stage == "customer"
    assert [e.summary for e in ann.entries] == [
        "touch paid_search / spring-search (ad_click)",
        "touch direct (page_view)",
        "lead captured",
        "visitor identified",
        "consent granted: newsletter by email (form)",
        "consent granted: marketing_email by email (double_opt_in_requested)",
        "consent granted: marketing_email by email (double_opt_in_confirmed)",
        "stage -> mql",
        "stage -> sal",
        "deal opened 1000000 USD",
        "stage -> opportunity",
        "deal won 1200000 USD",
        "revenue new 1200000 USD",
        "consent withdrew: marketing_email by email (unsubscribe_link)",
        "revenue renewal 1200000 USD",
        "revenue expansion 300000 USD",
    ]
    times = [(e.occurred_at.seconds, e.recorded_at.seconds) for e in ann.entries]
    assert times == sorted(times)


def test_a_merged_lead_gives_its_survivors_whole_journey(
    built: tuple[object, ...],
) -> None:
    by_duplicate = journey(built, lead_id=ident("lead", "dan2"))
    by_survivor = journey(built, lead_id=ident("lead", "dan"))
    assert by_duplicate == by_survivor
    assert by_survivor.lead_id == ident("lead", "dan")
    assert sorted(by_survivor.lead_ids) == sorted(
        [ident("lead", "dan"), ident("lead", "dan2")]
    )
    kinds = [pb.EntryKind.Name(e.kind) for e in by_survivor.entries]
    assert kinds.count("ENTRY_KIND_LEAD_CAPTURED") == 2
    assert "ENTRY_KIND_LEADS_MERGED" in kinds
    # The duplicate's own qualification is in the person's journey.
    assert "stage -> mql" in [e.summary for e in by_survivor.entries]


def test_the_email_of_a_person_who_asked_to_be_erased_finds_nobody(
    built: tuple[object, ...],
) -> None:
    with pytest.raises(NotFound):
        journey(built, email_digest=email_digest(SECRET_KEY, "eve@example.com"))
    eve = journey(built, lead_id=ident("lead", "eve"))
    assert eve.erased
    assert eve.erased_at.ToJsonString() == "2026-03-20T12:00:00Z"
    assert eve.stage == "disqualified"
    assert sum(e.kind == pb.ENTRY_KIND_ERASED for e in eve.entries) == 2


def test_nothing_personal_is_stored(built: tuple[object, ...]) -> None:
    store, key, projection = built
    rows = snapshot(store, projection, key)  # type: ignore[arg-type]
    assert "pii:v1" not in repr(rows)
    digests = {row[3] for row in rows[identity.leads.name]}
    assert email_digest(SECRET_KEY, "eve@example.com") not in digests
