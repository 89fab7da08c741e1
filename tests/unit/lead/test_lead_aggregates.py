"""The lead aggregates on their own: visitors, leads and the lifecycle rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.domain import Aggregate

from closedloop.errors import FailedPrecondition, InvalidArgument
from services.lead.domain import (
    EmailClaim,
    Lead,
    Stage,
    TouchpointOwner,
    TouchpointRequest,
    Visitor,
    check_stitchable,
    is_stitchable,
    visitor_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)

JUNK_IDS = [
    "",
    "null",
    "undefined",
    "anonymous",
    "-1",
    "0000",
    "--",
    "00-00",
    "0",
    "-",
    "NULL",
    "  Undefined ",
    " anonymous\t",
]


def request(
    *,
    key: str = "",
    occurred_at: datetime = T0,
    channel: str = "paid_search",
    touchpoint_id: uuid.UUID | None = None,
) -> TouchpointRequest:
    return TouchpointRequest(
        touchpoint_id=touchpoint_id or uuid.uuid4(),
        channel=channel,
        source="google",
        medium="cpc",
        campaign="spring",
        content="hero",
        interaction="ad_click",
        occurred_at=occurred_at,
        attributes={"utm_term": "crm"},
        idempotency_key=key,
    )


def new_lead(email: str = "ana@example.com", occurred_at: datetime = T0) -> Lead:
    return Lead(
        email=email,
        name="Ana",
        company="Example",
        source_system="web",
        anonymous_id="",
        occurred_at=occurred_at,
    )


def mql(lead: Lead) -> Lead:
    lead.qualify(score=80, reason="fit", actor="marketing", occurred_at=T0)
    return lead


def sal(lead: Lead) -> Lead:
    mql(lead).accept(
        owner="sam", skip_qualification=False, actor="sales", occurred_at=T0
    )
    return lead


def qualnames(aggregate: Aggregate) -> list[str]:
    return [type(e).__qualname__ for e in aggregate.collect_events()]


def replay(events: list[Any]) -> Any:
    """The aggregate as a repository would rebuild it from its stored events."""
    aggregate = None
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


# -- visitors and touchpoints ----------------------------------------------------------


def test_visitor_id_is_derived_from_the_anonymous_id() -> None:
    visitor = Visitor("anon-1", T0)
    assert visitor.id == visitor_id("anon-1")
    assert Visitor("anon-1", T0).id == visitor.id
    assert Visitor("anon-2", T0).id != visitor.id
    assert visitor.first_seen_at == T0
    assert visitor.touchpoints == []


def test_same_idempotency_key_gives_the_same_touchpoint_and_no_new_event() -> None:
    visitor = Visitor("anon-1", T0)
    first_id, created = visitor.record_touchpoint(request(key="k1"))
    assert created is True
    visitor.collect_events()
    version = visitor.version

    again_id, created_again = visitor.record_touchpoint(request(key="k1"))

    assert again_id == first_id
    assert created_again is False
    assert visitor.collect_events() == []
    assert visitor.version == version
    assert [t.touchpoint_id for t in visitor.touchpoints] == [first_id]


def test_different_keys_and_empty_keys_each_record_a_touchpoint() -> None:
    visitor = Visitor("anon-1", T0)
    ids = [
        visitor.record_touchpoint(request(key="k1"))[0],
        visitor.record_touchpoint(request(key="k2"))[0],
        visitor.record_touchpoint(request())[0],
        visitor.record_touchpoint(request())[0],
    ]
    assert len(set(ids)) == 4
    assert [t.touchpoint_id for t in visitor.touchpoints] == ids
    assert [t.sequence for t in visitor.touchpoints] == [0, 1, 2, 3]
    assert visitor.touchpoint_keys == {"k1": ids[0], "k2": ids[1]}


def test_idempotency_survives_reconstruction_from_events() -> None:
    visitor = Visitor("anon-1", T0)
    first_id, _ = visitor.record_touchpoint(request(key="k1"))
    rebuilt = replay(visitor.collect_events())

    again_id, created = rebuilt.record_touchpoint(request(key="k1"))

    assert (again_id, created) == (first_id, False)
    assert rebuilt.collect_events() == []


def test_touchpoints_say_whose_they_are() -> None:
    visitor = Visitor("anon-1", T0)
    visitor.record_touchpoint(request())
    lead = new_lead()
    lead.record_touchpoint(request())

    assert visitor.touchpoints[0].anonymous_id == "anon-1"
    assert visitor.touchpoints[0].lead_id is None
    assert lead.touchpoints[0].anonymous_id == ""
    assert lead.touchpoints[0].lead_id == lead.id


def test_touchpoint_keeps_what_was_asked() -> None:
    lead = new_lead()
    asked = request(key="k", occurred_at=T0 - timedelta(days=3), channel="email")
    lead.record_touchpoint(asked)
    (tp,) = lead.touchpoints
    assert tp.touchpoint_id == asked.touchpoint_id
    assert (tp.channel, tp.source, tp.medium) == ("email", "google", "cpc")
    assert (tp.campaign, tp.content, tp.interaction) == ("spring", "hero", "ad_click")
    assert tp.occurred_at == T0 - timedelta(days=3)
    assert tp.attributes == {"utm_term": "crm"}


# -- the lifecycle ---------------------------------------------------------------------


def test_captured_lead_starts_in_stage_lead() -> None:
    lead = new_lead()
    assert lead.stage is Stage.LEAD
    assert lead.created_at == T0
    assert lead.stage_changed_at == T0
    assert lead.anonymous_ids == []
    assert lead.merged_lead_ids == []
    assert lead.merged_into is None


def test_qualify_makes_an_mql() -> None:
    lead = new_lead()
    lead.collect_events()
    when = T0 + timedelta(days=2)

    lead.qualify(score=75, reason="visited pricing", actor="scoring", occurred_at=when)

    assert lead.stage is Stage.MQL
    assert lead.score == 75
    assert lead.qualification_reason == "visited pricing"
    assert lead.stage_changed_at == when
    (qualified,) = lead.collect_events()
    assert isinstance(qualified, Lead.Qualified)
    assert (qualified.score, qualified.reason, qualified.actor) == (
        75,
        "visited pricing",
        "scoring",
    )
    assert qualified.occurred_at == when


def test_an_mql_cannot_be_qualified_again() -> None:
    lead = mql(new_lead())
    lead.collect_events()
    with pytest.raises(FailedPrecondition):
        lead.qualify(score=1, reason="", actor="", occurred_at=T0)
    assert lead.collect_events() == []
    assert lead.score == 80


def test_accept_makes_an_mql_a_sal() -> None:
    lead = mql(new_lead())
    lead.collect_events()
    when = T0 + timedelta(days=5)

    lead.accept(owner="sam", skip_qualification=False, actor="sales", occurred_at=when)

    assert lead.stage is Stage.SAL
    assert lead.owner == "sam"
    assert lead.stage_changed_at == when
    (accepted,) = lead.collect_events()
    assert isinstance(accepted, Lead.Accepted)
    assert accepted.skipped_qualification is False


def test_accepting_a_lead_that_is_no_mql_is_refused() -> None:
    lead = new_lead()
    lead.collect_events()
    with pytest.raises(FailedPrecondition, match="skip_qualification"):
        lead.accept(
            owner="sam", skip_qualification=False, actor="sales", occurred_at=T0
        )
    assert lead.stage is Stage.LEAD
    assert lead.owner == ""
    assert lead.collect_events() == []


def test_skip_qualification_accepts_a_lead_directly() -> None:
    lead = new_lead()
    lead.collect_events()
    lead.accept(owner="sam", skip_qualification=True, actor="sales", occurred_at=T0)
    assert lead.stage is Stage.SAL
    (accepted,) = lead.collect_events()
    assert accepted.skipped_qualification is True


def test_skip_qualification_on_an_mql_did_not_skip_anything() -> None:
    lead = mql(new_lead())
    lead.collect_events()
    lead.accept(owner="sam", skip_qualification=True, actor="sales", occurred_at=T0)
    (accepted,) = lead.collect_events()
    assert accepted.skipped_qualification is False


def test_a_sal_cannot_be_accepted_or_qualified_again() -> None:
    lead = sal(new_lead())
    lead.collect_events()
    with pytest.raises(FailedPrecondition):
        lead.accept(owner="kim", skip_qualification=True, actor="sales", occurred_at=T0)
    with pytest.raises(FailedPrecondition):
        lead.qualify(score=1, reason="", actor="", occurred_at=T0)
    assert lead.owner == "sam"
    assert lead.collect_events() == []


@pytest.mark.parametrize(
    ("prepare", "stage_before"),
    [(lambda lead: lead, Stage.LEAD), (mql, Stage.MQL), (sal, Stage.SAL)],
    ids=["lead", "mql", "sal"],
)
def test_disqualify_from_lead_mql_or_sal(
    prepare: Callable[[Lead], Lead], stage_before: Stage
) -> None:
    lead = prepare(new_lead())
    assert lead.stage is stage_before
    lead.collect_events()
    when = T0 + timedelta(days=9)

    lead.disqualify(
        reason="no_budget", detail="next year", actor="sam", occurred_at=when
    )

    assert lead.stage is Stage.DISQUALIFIED
    assert lead.disqualification_reason == "no_budget"
    assert lead.disqualification_detail == "next year"
    assert lead.stage_changed_at == when
    (disqualified,) = lead.collect_events()
    assert isinstance(disqualified, Lead.Disqualified)


def disqualified_lead() -> Lead:
    lead = mql(new_lead())
    lead.disqualify(reason="spam", detail="bot", actor="sam", occurred_at=T0)
    lead.collect_events()
    return lead


@pytest.mark.parametrize(
    "command",
    [
        lambda lead: lead.qualify(score=1, reason="", actor="", occurred_at=T0),
        lambda lead: lead.accept(
            owner="sam", skip_qualification=False, actor="", occurred_at=T0
        ),
        lambda lead: lead.accept(
            owner="sam", skip_qualification=True, actor="", occurred_at=T0
        ),
        lambda lead: lead.disqualify(
            reason="other", detail="", actor="", occurred_at=T0
        ),
    ],
    ids=["qualify", "accept", "accept-skipping", "disqualify"],
)
def test_nothing_but_reopen_after_disqualification(
    command: Callable[[Lead], None],
) -> None:
    lead = disqualified_lead()
    with pytest.raises(FailedPrecondition):
        command(lead)
    assert lead.stage is Stage.DISQUALIFIED
    assert lead.disqualification_reason == "spam"
    assert lead.collect_events() == []


def test_reopen_returns_a_disqualified_lead_to_stage_lead() -> None:
    lead = disqualified_lead()
    when = T0 + timedelta(days=30)

    lead.reopen(reason="budget approved", actor="sam", occurred_at=when)

    assert lead.stage is Stage.LEAD
    assert lead.stage_changed_at == when
    assert lead.disqualification_reason == ""
    assert lead.disqualification_detail == ""
    (reopened,) = lead.collect_events()
    assert isinstance(reopened, Lead.Reopened)
    assert reopened.reason == "budget approved"
    # and the funnel starts again
    lead.qualify(score=90, reason="", actor="", occurred_at=when)
    assert lead.stage is Stage.MQL


@pytest.mark.parametrize(
    "prepare", [lambda lead: lead, mql, sal], ids=["lead", "mql", "sal"]
)
def test_only_a_disqualified_lead_can_be_reopened(
    prepare: Callable[[Lead], Lead],
) -> None:
    lead = prepare(new_lead())
    lead.collect_events()
    stage = lead.stage
    with pytest.raises(FailedPrecondition):
        lead.reopen(reason="", actor="", occurred_at=T0)
    assert lead.stage is stage
    assert lead.collect_events() == []


# -- merging ---------------------------------------------------------------------------


def merged_pair() -> tuple[Lead, Lead]:
    survivor = new_lead("ana@example.com")
    duplicate = new_lead("ana.work@example.com")
    survivor.collect_events()
    duplicate.collect_events()
    survivor.merge(duplicate, actor="ops", occurred_at=T0 + timedelta(days=1))
    return survivor, duplicate


def test_merge_records_an_event_on_both_leads() -> None:
    survivor, duplicate = merged_pair()

    (merged,) = survivor.collect_events()
    assert isinstance(merged, Lead.DuplicateMerged)
    assert merged.merged_lead_id == duplicate.id
    assert merged.actor == "ops"
    assert merged.occurred_at == T0 + timedelta(days=1)
    (merged_into,) = duplicate.collect_events()
    assert isinstance(merged_into, Lead.MergedInto)
    assert merged_into.surviving_lead_id == survivor.id

    assert survivor.merged_lead_ids == [duplicate.id]
    assert survivor.stage is Stage.LEAD
    assert duplicate.merged_into == survivor.id
    assert duplicate.stage is Stage.MERGED
    assert duplicate.stage_changed_at == T0 + timedelta(days=1)


DUPLICATE_COMMANDS: dict[str, Callable[[Lead, Lead], object]] = {
    "qualify": lambda dup, _: dup.qualify(score=1, reason="", actor="", occurred_at=T0),
    "accept": lambda dup, _: dup.accept(
        owner="sam", skip_qualification=True, actor="", occurred_at=T0
    ),
    "disqualify": lambda dup, _: dup.disqualify(
        reason="duplicate", detail="", actor="", occurred_at=T0
    ),
    "reopen": lambda dup, _: dup.reopen(reason="", actor="", occurred_at=T0),
    "identify_visitor": lambda dup, _: dup.identify_visitor("anon-9", T0),
    "record_touchpoint": lambda dup, _: dup.record_touchpoint(request(key="late")),
    "merge-as-survivor": lambda dup, _: dup.merge(new_lead("x@example.com"), "", T0),
    "merge-as-duplicate": lambda dup, _: new_lead("y@example.com").merge(dup, "", T0),
    "merge-back": lambda dup, survivor: dup.merge(survivor, "", T0),
    "merge-again": lambda dup, survivor: survivor.merge(dup, "", T0),
}


@pytest.mark.parametrize("command", DUPLICATE_COMMANDS.values(), ids=DUPLICATE_COMMANDS)
def test_a_merged_duplicate_refuses_every_later_command(
    command: Callable[[Lead, Lead], object],
) -> None:
    survivor, duplicate = merged_pair()
    survivor.collect_events()
    duplicate.collect_events()
    version = duplicate.version

    with pytest.raises(FailedPrecondition, match=str(survivor.id)):
        command(duplicate, survivor)

    assert duplicate.collect_events() == []
    assert survivor.collect_events() == []
    assert duplicate.version == version
    assert duplicate.stage is Stage.MERGED
    assert duplicate.touchpoints == []
    assert survivor.merged_lead_ids == [duplicate.id]


def test_a_lead_cannot_be_merged_into_itself() -> None:
    lead = new_lead()
    lead.collect_events()
    with pytest.raises(InvalidArgument) as raised:
        lead.merge(lead, actor="ops", occurred_at=T0)
    assert raised.value.field == "merged_lead_id"
    assert lead.collect_events() == []
    assert lead.merged_into is None
    assert lead.merged_lead_ids == []


def test_the_survivor_takes_further_merges_and_commands() -> None:
    survivor, _ = merged_pair()
    third = new_lead("third@example.com")
    survivor.merge(third, actor="ops", occurred_at=T0)
    survivor.qualify(score=10, reason="", actor="", occurred_at=T0)
    assert len(survivor.merged_lead_ids) == 2
    assert survivor.stage is Stage.MQL


# -- identification --------------------------------------------------------------------


def test_identify_visitor_is_idempotent() -> None:
    lead = new_lead()
    lead.collect_events()

    assert lead.identify_visitor("anon-1", T0) is True
    assert lead.identify_visitor("anon-1", T0 + timedelta(hours=1)) is False
    assert lead.identify_visitor("anon-2", T0) is True

    assert lead.anonymous_ids == ["anon-1", "anon-2"]
    events = lead.collect_events()
    assert [type(e) for e in events] == [Lead.VisitorIdentified] * 2
    assert [e.anonymous_id for e in events] == ["anon-1", "anon-2"]


@pytest.mark.parametrize("junk", JUNK_IDS)
def test_identify_visitor_refuses_ids_that_identify_nobody(junk: str) -> None:
    lead = new_lead()
    lead.collect_events()
    with pytest.raises(InvalidArgument) as raised:
        lead.identify_visitor(junk, T0)
    assert raised.value.field == "anonymous_id"
    assert lead.anonymous_ids == []
    assert lead.collect_events() == []


@pytest.mark.parametrize("junk", JUNK_IDS)
def test_junk_ids_are_not_stitchable(junk: str) -> None:
    assert is_stitchable(junk) is False
    with pytest.raises(InvalidArgument) as raised:
        check_stitchable("anonymous_id", junk)
    assert raised.value.field == "anonymous_id"


@pytest.mark.parametrize(
    "good",
    [
        "anon-1",
        "0b6c2f0e-8e0f-4c8f-a7a8-6a0a3d2b9e51",
        "GA1.2.123456789.1700000000",
        "1",
        "-10",
        "0001",
        "nullable",
        "anonymous-42",
        "00000000-0000-0000-0000-000000000001",
    ],
)
def test_normal_ids_are_stitchable(good: str) -> None:
    assert is_stitchable(good) is True
    check_stitchable("anonymous_id", good)


# -- events ----------------------------------------------------------------------------


def test_event_class_names_are_past_tense() -> None:
    visitor = Visitor("anon-1", T0)
    visitor.record_touchpoint(request())
    survivor = new_lead("a@example.com")
    survivor.identify_visitor("anon-1", T0)
    survivor.record_touchpoint(request())
    mql(survivor).accept(
        owner="sam", skip_qualification=False, actor="", occurred_at=T0
    )
    survivor.disqualify(reason="spam", detail="", actor="", occurred_at=T0)
    survivor.reopen(reason="", actor="", occurred_at=T0)
    duplicate = new_lead("b@example.com")
    survivor.merge(duplicate, actor="", occurred_at=T0)
    claim = EmailClaim("digest", survivor.id)
    claim.reassign(duplicate.id)

    assert qualnames(visitor) == [
        "Visitor.FirstSeen",
        "TouchpointOwner.TouchpointRecorded",
    ]
    assert qualnames(survivor) == [
        "Lead.Captured",
        "Lead.VisitorIdentified",
        "TouchpointOwner.TouchpointRecorded",
        "Lead.Qualified",
        "Lead.Accepted",
        "Lead.Disqualified",
        "Lead.Reopened",
        "Lead.DuplicateMerged",
    ]
    assert qualnames(duplicate) == ["Lead.Captured", "Lead.MergedInto"]
    assert qualnames(claim) == ["EmailClaim.Claimed", "EmailClaim.Reassigned"]
    # creation events carry the aggregate's topic, so a repository can rebuild it
    assert issubclass(Lead.Captured, Aggregate.Created)
    assert issubclass(Visitor.FirstSeen, Aggregate.Created)
    assert issubclass(EmailClaim.Claimed, Aggregate.Created)
    assert not issubclass(TouchpointOwner.TouchpointRecorded, Aggregate.Created)


def test_email_claim_reassign_to_the_same_lead_records_nothing() -> None:
    lead_id = uuid.uuid4()
    claim = EmailClaim("digest", lead_id)
    claim.collect_events()
    claim.reassign(lead_id)
    assert claim.collect_events() == []
    other = uuid.uuid4()
    claim.reassign(other)
    assert claim.lead_id == other


def test_business_time_is_kept_apart_from_recorded_time() -> None:
    a_year_ago = datetime.now(UTC) - timedelta(days=365)
    lead = new_lead(occurred_at=a_year_ago)
    lead.qualify(score=1, reason="", actor="import", occurred_at=a_year_ago)
    lead.record_touchpoint(request(occurred_at=a_year_ago - timedelta(days=7)))

    assert lead.created_at == a_year_ago
    assert lead.stage_changed_at == a_year_ago
    assert lead.touchpoints[0].occurred_at == a_year_ago - timedelta(days=7)
    now = datetime.now(UTC)
    events = lead.collect_events()
    assert len(events) == 3
    for domain_event in events:
        assert domain_event.occurred_at <= a_year_ago
        assert abs(now - domain_event.timestamp) < timedelta(minutes=1)
    assert lead.created_on != lead.created_at
    assert abs(now - lead.created_on) < timedelta(minutes=1)


def test_a_lead_rebuilt_from_its_events_has_the_same_state() -> None:
    lead = new_lead()
    lead.identify_visitor("anon-1", T0)
    lead.record_touchpoint(request(key="k"))
    sal(lead)
    lead.disqualify(reason="competitor", detail="", actor="", occurred_at=T0)
    lead.reopen(reason="", actor="", occurred_at=T0 + timedelta(days=1))
    lead.merge(new_lead("b@example.com"), actor="", occurred_at=T0)

    rebuilt = replay(lead.collect_events())

    assert isinstance(rebuilt, Lead)
    assert vars(rebuilt) == vars(lead)
