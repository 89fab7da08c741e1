"""The lead application over eventsourcing's in-process store, with group commit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from closedloop.errors import FailedPrecondition, InvalidArgument, NotFound
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.unit_of_work import CommandExecutor
from services.lead.application import (
    AcceptLead,
    CaptureLead,
    DisqualifyLead,
    Leads,
    LeadStore,
    MergeLeads,
    QualifyLead,
    RecordTouchpoint,
    ReopenLead,
    TouchpointResult,
)
from services.lead.domain import (
    EmailClaim,
    Lead,
    Stage,
    email_claim_id,
    visitor_id,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
async def leads() -> AsyncIterator[Leads]:
    store = LeadStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    yield Leads(store, executor, secret_key=b"test")
    await executor.close()
    store.close()


def touch(
    *,
    anonymous_id: str = "",
    lead_id: uuid.UUID | None = None,
    occurred_at: datetime = T0,
    channel: str = "paid_search",
    key: str = "",
) -> RecordTouchpoint:
    return RecordTouchpoint(
        anonymous_id=anonymous_id,
        lead_id=lead_id,
        channel=channel,
        source="google",
        medium="cpc",
        campaign="spring",
        content="",
        interaction="page_view",
        occurred_at=occurred_at,
        attributes={"page": "/pricing"},
        idempotency_key=key,
    )


def capture(
    email: str, anonymous_id: str = "", occurred_at: datetime = T0
) -> CaptureLead:
    return CaptureLead(
        email=email,
        name="Ana",
        company="Example",
        source_system="web",
        anonymous_id=anonymous_id,
        occurred_at=occurred_at,
    )


async def new_lead(leads: Leads, email: str, anonymous_id: str = "") -> Lead:
    lead, created = await leads.capture_lead(
        capture(email, anonymous_id), EventMeta.new()
    )
    assert created is True
    return lead


async def record(leads: Leads, cmd: RecordTouchpoint) -> uuid.UUID:
    result = await leads.record_touchpoint(cmd, EventMeta.new())
    assert result.created is True
    return result.touchpoint_id


def stored_events(leads: Leads, aggregate_id: uuid.UUID) -> list[Any]:
    return list(leads.store.events.get(aggregate_id))


# -- journeys --------------------------------------------------------------------------


async def test_journey_joins_visitor_and_lead_touchpoints_in_business_time_order(
    leads: Leads,
) -> None:
    # recorded out of business-time order on purpose
    v3 = await record(leads, touch(anonymous_id="anon-1", occurred_at=day(3)))
    v1 = await record(leads, touch(anonymous_id="anon-1", occurred_at=day(1)))
    v2 = await record(leads, touch(anonymous_id="anon-1", occurred_at=day(2)))
    await record(leads, touch(anonymous_id="stranger", occurred_at=day(2.5)))
    lead, created = await leads.capture_lead(
        capture("ana@example.com", "anon-1", occurred_at=day(4)), EventMeta.new()
    )
    assert created is True
    assert lead.anonymous_ids == ["anon-1"]
    l6 = await record(leads, touch(lead_id=lead.id, occurred_at=day(6)))
    l5 = await record(leads, touch(lead_id=lead.id, occurred_at=day(5)))
    # the visitor keeps browsing after being identified
    v7 = await record(leads, touch(anonymous_id="anon-1", occurred_at=day(7)))
    l0 = await record(leads, touch(lead_id=lead.id, occurred_at=day(0)))  # CRM import

    journey_lead, touchpoints = leads.get_journey(lead.id)

    assert journey_lead.id == lead.id
    assert [t.touchpoint_id for t in touchpoints] == [l0, v1, v2, v3, l5, l6, v7]
    assert [t.occurred_at for t in touchpoints] == sorted(
        t.occurred_at for t in touchpoints
    )
    by_id = {t.touchpoint_id: t for t in touchpoints}
    assert by_id[v1].anonymous_id == "anon-1"
    assert by_id[v1].lead_id is None
    assert by_id[l5].lead_id == lead.id
    assert by_id[l5].anonymous_id == ""
    assert by_id[v1].attributes == {"page": "/pricing"}


async def test_equal_business_times_keep_recording_order(leads: Leads) -> None:
    lead = await new_lead(leads, "ana@example.com")
    ids = [
        await record(leads, touch(lead_id=lead.id, occurred_at=day(1)))
        for _ in range(5)
    ]
    _, touchpoints = leads.get_journey(lead.id)
    assert [t.touchpoint_id for t in touchpoints] == ids


async def test_identified_visitor_without_touchpoints_leaves_journey_empty(
    leads: Leads,
) -> None:
    lead = await new_lead(leads, "ana@example.com", "anon-never-tracked")
    journey_lead, touchpoints = leads.get_journey(lead.id)
    assert journey_lead.id == lead.id
    assert touchpoints == []


async def test_touchpoint_idempotency_key_through_the_application(leads: Leads) -> None:
    first = await leads.record_touchpoint(
        touch(anonymous_id="anon-1", key="evt-1", channel="email"), EventMeta.new()
    )
    again = await leads.record_touchpoint(
        touch(anonymous_id="anon-1", key="evt-1", channel="email"), EventMeta.new()
    )
    other_visitor = await leads.record_touchpoint(
        touch(anonymous_id="anon-2", key="evt-1"), EventMeta.new()
    )

    assert first == TouchpointResult(first.touchpoint_id, "email", created=True)
    assert again == TouchpointResult(first.touchpoint_id, "email", created=False)
    assert other_visitor.created is True
    assert other_visitor.touchpoint_id != first.touchpoint_id
    visitor = leads.store.repository.get(visitor_id("anon-1"))
    assert len(visitor.touchpoints) == 1
    assert [type(e).__qualname__ for e in stored_events(leads, visitor.id)] == [
        "Visitor.FirstSeen",
        "TouchpointOwner.TouchpointRecorded",
    ]


@pytest.mark.parametrize("junk", ["", "null", "undefined", "anonymous", "-1", "0000"])
async def test_junk_anonymous_ids_are_refused(leads: Leads, junk: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await leads.record_touchpoint(touch(anonymous_id=junk), EventMeta.new())
    assert raised.value.field == "anonymous_id"
    with pytest.raises(InvalidArgument):
        await leads.capture_lead(
            capture("ana@example.com", junk or "null"), EventMeta.new()
        )
    with pytest.raises(NotFound):
        leads.find_lead_by_email("ana@example.com")
    assert stored_events(leads, visitor_id(junk)) == []


# -- capture and identity --------------------------------------------------------------


async def test_same_email_in_another_case_returns_the_existing_lead(
    leads: Leads,
) -> None:
    await record(leads, touch(anonymous_id="laptop", occurred_at=day(1)))
    await record(leads, touch(anonymous_id="phone", occurred_at=day(2)))
    first = await new_lead(leads, "Ana@Example.com", "laptop")

    again, created = await leads.capture_lead(
        capture("ana@EXAMPLE.COM", "phone", occurred_at=day(3)), EventMeta.new()
    )

    assert created is False
    assert again.id == first.id
    assert again.email == "Ana@Example.com"
    assert again.anonymous_ids == ["laptop", "phone"]
    assert leads.get_lead(first.id).anonymous_ids == ["laptop", "phone"]
    _, touchpoints = leads.get_journey(first.id)
    assert [t.anonymous_id for t in touchpoints] == ["laptop", "phone"]
    lead_events = [type(e).__qualname__ for e in stored_events(leads, first.id)]
    assert lead_events == [
        "Lead.Captured",
        "Lead.VisitorIdentified",
        "Lead.VisitorIdentified",
    ]


async def test_capturing_again_with_a_known_visitor_records_nothing(
    leads: Leads,
) -> None:
    lead = await new_lead(leads, "ana@example.com", "laptop")
    version = leads.get_lead(lead.id).version
    again, created = await leads.capture_lead(
        capture("ANA@example.com", "laptop"), EventMeta.new()
    )
    assert (again.id, created) == (lead.id, False)
    assert leads.get_lead(lead.id).version == version


async def test_find_lead_by_email(leads: Leads) -> None:
    ana = await new_lead(leads, "ana@example.com")
    bob = await new_lead(leads, "bob@example.com")

    assert leads.find_lead_by_email("ana@example.com").id == ana.id
    assert leads.find_lead_by_email("ANA@example.COM").id == ana.id
    assert leads.find_lead_by_email("bob@example.com").id == bob.id
    with pytest.raises(NotFound):
        leads.find_lead_by_email("carol@example.com")


async def test_the_email_index_holds_no_address(leads: Leads) -> None:
    lead = await new_lead(leads, "ana@example.com")
    digest = leads.email_digest("ana@example.com")
    assert digest == leads.email_digest("ANA@EXAMPLE.COM")
    assert digest != Leads(
        leads.store, leads.executor, secret_key=b"other"
    ).email_digest("ana@example.com")
    claim = leads.store.repository.get(email_claim_id(digest))
    assert isinstance(claim, EmailClaim)
    assert claim.lead_id == lead.id
    for claim_event in stored_events(leads, claim.id):
        assert "ana@example.com" not in repr(vars(claim_event)).lower()


# -- lifecycle through the application -------------------------------------------------


async def test_lifecycle_commands(leads: Leads) -> None:
    lead = await new_lead(leads, "ana@example.com")
    meta = EventMeta.new()

    mql = await leads.qualify_lead(
        QualifyLead(lead.id, 70, "fit", "scoring", day(1)), meta
    )
    assert mql.stage is Stage.MQL
    sal = await leads.accept_lead(
        AcceptLead(
            lead.id, "sam", skip_qualification=False, actor="sales", occurred_at=day(2)
        ),
        meta,
    )
    assert (sal.stage, sal.owner) == (Stage.SAL, "sam")
    gone = await leads.disqualify_lead(
        DisqualifyLead(lead.id, "no_budget", "", "sam", day(3)), meta
    )
    assert gone.stage is Stage.DISQUALIFIED
    with pytest.raises(FailedPrecondition):
        await leads.qualify_lead(QualifyLead(lead.id, 70, "", "", day(4)), meta)
    back = await leads.reopen_lead(ReopenLead(lead.id, "budget", "sam", day(5)), meta)
    assert back.stage is Stage.LEAD

    stored = leads.get_lead(lead.id)
    assert stored.stage is Stage.LEAD
    assert stored.stage_changed_at == day(5)
    assert [type(e).__qualname__ for e in stored_events(leads, lead.id)] == [
        "Lead.Captured",
        "Lead.Qualified",
        "Lead.Accepted",
        "Lead.Disqualified",
        "Lead.Reopened",
    ]


async def test_unknown_lead_is_not_found(leads: Leads) -> None:
    unknown = uuid.uuid4()
    meta = EventMeta.new()
    await record(leads, touch(anonymous_id="anon-1"))
    with pytest.raises(NotFound):
        leads.get_lead(unknown)
    with pytest.raises(NotFound):
        leads.get_journey(unknown)
    with pytest.raises(NotFound):
        leads.get_lead(visitor_id("anon-1"))  # a visitor is not a lead
    with pytest.raises(NotFound):
        await leads.qualify_lead(QualifyLead(unknown, 1, "", "", T0), meta)
    with pytest.raises(NotFound):
        await leads.accept_lead(
            AcceptLead(
                unknown, "sam", skip_qualification=True, actor="", occurred_at=T0
            ),
            meta,
        )
    with pytest.raises(NotFound):
        await leads.disqualify_lead(DisqualifyLead(unknown, "spam", "", "", T0), meta)
    with pytest.raises(NotFound):
        await leads.reopen_lead(ReopenLead(unknown, "", "", T0), meta)
    with pytest.raises(NotFound):
        await leads.record_touchpoint(touch(lead_id=unknown), meta)
    assert stored_events(leads, unknown) == []


# -- merging ---------------------------------------------------------------------------


async def test_merge_keeps_the_duplicates_whole_history_under_the_survivor(
    leads: Leads,
) -> None:
    s_visit = await record(leads, touch(anonymous_id="anon-s", occurred_at=day(1)))
    d_visit = await record(leads, touch(anonymous_id="anon-d", occurred_at=day(2)))
    survivor = await new_lead(leads, "ana@example.com", "anon-s")
    duplicate = await new_lead(leads, "ana.work@example.com", "anon-d")
    s_touch = await record(leads, touch(lead_id=survivor.id, occurred_at=day(4)))
    d_touch = await record(leads, touch(lead_id=duplicate.id, occurred_at=day(3)))

    merged = await leads.merge_leads(
        MergeLeads(survivor.id, duplicate.id, "ops", day(5)), EventMeta.new()
    )

    assert merged.id == survivor.id
    assert merged.merged_lead_ids == [duplicate.id]
    lead, touchpoints = leads.get_journey(survivor.id)
    assert lead.id == survivor.id
    assert [t.touchpoint_id for t in touchpoints] == [
        s_visit,
        d_visit,
        d_touch,
        s_touch,
    ]
    # the duplicate's email now finds the survivor, and so does its id
    assert leads.find_lead_by_email("ana.work@example.com").id == survivor.id
    assert leads.find_lead_by_email("ana@example.com").id == survivor.id
    via_duplicate, same_touchpoints = leads.get_journey(duplicate.id)
    assert via_duplicate.id == survivor.id
    assert same_touchpoints == touchpoints
    stored_duplicate = leads.get_lead(duplicate.id)
    assert stored_duplicate.merged_into == survivor.id
    assert stored_duplicate.stage is Stage.MERGED
    claim = leads.store.repository.get(
        email_claim_id(leads.email_digest("ana.work@example.com"))
    )
    assert claim.lead_id == survivor.id
    # capturing the duplicate's email again lands on the survivor
    again, created = await leads.capture_lead(
        capture("ANA.work@example.com", "anon-new"), EventMeta.new()
    )
    assert (again.id, created) == (survivor.id, False)
    assert "anon-new" in leads.get_lead(survivor.id).anonymous_ids


async def test_chained_merges_resolve_to_the_last_survivor(leads: Leads) -> None:
    a = await new_lead(leads, "a@example.com")
    b = await new_lead(leads, "b@example.com")
    c = await new_lead(leads, "c@example.com")
    tp_c = await record(leads, touch(lead_id=c.id, occurred_at=day(1)))
    tp_b = await record(leads, touch(lead_id=b.id, occurred_at=day(2)))
    await leads.merge_leads(MergeLeads(b.id, c.id, "ops", day(3)), EventMeta.new())
    await leads.merge_leads(MergeLeads(a.id, b.id, "ops", day(4)), EventMeta.new())

    for email in ("a@example.com", "b@example.com", "c@example.com"):
        assert leads.find_lead_by_email(email).id == a.id
    lead, touchpoints = leads.get_journey(c.id)
    assert lead.id == a.id
    assert [t.touchpoint_id for t in touchpoints] == [tp_c, tp_b]


async def test_a_merged_duplicate_refuses_commands_naming_the_survivor(
    leads: Leads,
) -> None:
    survivor = await new_lead(leads, "ana@example.com")
    duplicate = await new_lead(leads, "ana.work@example.com")
    third = await new_lead(leads, "third@example.com")
    await leads.merge_leads(
        MergeLeads(survivor.id, duplicate.id, "ops", T0), EventMeta.new()
    )
    version = leads.get_lead(duplicate.id).version
    meta = EventMeta.new()

    commands = [
        leads.qualify_lead(QualifyLead(duplicate.id, 1, "", "", T0), meta),
        leads.accept_lead(
            AcceptLead(
                duplicate.id, "sam", skip_qualification=True, actor="", occurred_at=T0
            ),
            meta,
        ),
        leads.disqualify_lead(DisqualifyLead(duplicate.id, "spam", "", "", T0), meta),
        leads.reopen_lead(ReopenLead(duplicate.id, "", "", T0), meta),
        leads.record_touchpoint(touch(lead_id=duplicate.id), meta),
        leads.merge_leads(MergeLeads(survivor.id, duplicate.id, "ops", T0), meta),
        leads.merge_leads(MergeLeads(third.id, duplicate.id, "ops", T0), meta),
        leads.merge_leads(MergeLeads(duplicate.id, third.id, "ops", T0), meta),
    ]
    for command in commands:
        with pytest.raises(FailedPrecondition, match=str(survivor.id)):
            await command

    assert leads.get_lead(duplicate.id).version == version
    assert leads.get_lead(third.id).merged_into is None
    assert leads.get_lead(survivor.id).merged_lead_ids == [duplicate.id]


async def test_a_lead_cannot_be_merged_into_itself(leads: Leads) -> None:
    lead = await new_lead(leads, "ana@example.com")
    with pytest.raises(InvalidArgument) as raised:
        await leads.merge_leads(
            MergeLeads(lead.id, lead.id, "ops", T0), EventMeta.new()
        )
    assert raised.value.field == "merged_lead_id"
    assert leads.get_lead(lead.id).version == 1


async def test_merging_unknown_leads_is_not_found(leads: Leads) -> None:
    lead = await new_lead(leads, "ana@example.com")
    with pytest.raises(NotFound, match="merged_lead_id"):
        await leads.merge_leads(
            MergeLeads(lead.id, uuid.uuid4(), "", T0), EventMeta.new()
        )
    with pytest.raises(NotFound, match="surviving_lead_id"):
        await leads.merge_leads(
            MergeLeads(uuid.uuid4(), lead.id, "", T0), EventMeta.new()
        )
    assert leads.get_lead(lead.id).merged_into is None


# -- group commit ----------------------------------------------------------------------


async def test_concurrent_commands_are_group_committed(leads: Leads) -> None:
    visitors = [f"anon-{n}" for n in range(10)]
    commands = [
        (visitors[i % 10], touch(anonymous_id=visitors[i % 10], occurred_at=day(i)))
        for i in range(50)
    ]

    results = await asyncio.gather(
        *(leads.record_touchpoint(cmd, EventMeta.new()) for _, cmd in commands)
    )

    assert all(r.created for r in results)
    assert len({r.touchpoint_id for r in results}) == 50
    assert leads.executor.commands == 50
    assert leads.executor.batches < 50
    for anonymous_id in visitors:
        expected = {
            r.touchpoint_id
            for (owner, _), r in zip(commands, results, strict=True)
            if owner == anonymous_id
        }
        visitor = leads.store.repository.get(visitor_id(anonymous_id))
        assert {t.touchpoint_id for t in visitor.touchpoints} == expected
        assert len(visitor.touchpoints) == 5
        assert visitor.version == 6  # FirstSeen and five touchpoints
        assert visitor.first_seen_at == min(
            cmd.occurred_at for owner, cmd in commands if owner == anonymous_id
        )


async def test_same_key_twice_in_one_batch_records_once(leads: Leads) -> None:
    results = await asyncio.gather(
        *(
            leads.record_touchpoint(
                touch(anonymous_id="anon-1", key="k"), EventMeta.new()
            )
            for _ in range(5)
        )
    )
    assert [r.created for r in results] == [True, False, False, False, False]
    assert len({r.touchpoint_id for r in results}) == 1
    assert len(leads.store.repository.get(visitor_id("anon-1")).touchpoints) == 1


async def test_same_email_twice_in_one_batch_makes_one_lead(leads: Leads) -> None:
    results = await asyncio.gather(
        leads.capture_lead(capture("ana@example.com", "anon-1"), EventMeta.new()),
        leads.capture_lead(capture("ANA@example.com", "anon-2"), EventMeta.new()),
    )
    (first, created_first), (second, created_second) = results
    assert (created_first, created_second) == (True, False)
    assert first.id == second.id
    assert leads.get_lead(first.id).anonymous_ids == ["anon-1", "anon-2"]


async def test_a_failing_command_fails_alone_in_its_batch(leads: Leads) -> None:
    good = await new_lead(leads, "good@example.com")
    gone = await new_lead(leads, "gone@example.com")
    await leads.disqualify_lead(
        DisqualifyLead(gone.id, "spam", "", "ops", T0), EventMeta.new()
    )
    gone_version = leads.get_lead(gone.id).version
    unknown = uuid.uuid4()
    batches_before = leads.executor.batches

    results = await asyncio.gather(
        *(
            leads.record_touchpoint(
                touch(anonymous_id="anon-1", occurred_at=day(i)), EventMeta.new()
            )
            for i in range(5)
        ),
        leads.qualify_lead(QualifyLead(unknown, 50, "", "", T0), EventMeta.new()),
        leads.qualify_lead(QualifyLead(gone.id, 50, "", "", T0), EventMeta.new()),
        leads.qualify_lead(QualifyLead(good.id, 50, "fit", "", T0), EventMeta.new()),
        leads.record_touchpoint(touch(anonymous_id="null"), EventMeta.new()),
        *(
            leads.record_touchpoint(
                touch(lead_id=good.id, occurred_at=day(i)), EventMeta.new()
            )
            for i in range(5)
        ),
        return_exceptions=True,
    )

    touchpoints_before, failures, touchpoints_after = (
        results[:5],
        results[5:9],
        results[9:],
    )
    assert isinstance(failures[0], NotFound)
    assert isinstance(failures[1], FailedPrecondition)
    assert isinstance(failures[2], Lead)
    assert failures[2].stage is Stage.MQL
    assert isinstance(failures[3], InvalidArgument)
    for result in (*touchpoints_before, *touchpoints_after):
        assert isinstance(result, TouchpointResult)
        assert result.created is True
    assert leads.executor.batches - batches_before < len(results)
    assert len(leads.store.repository.get(visitor_id("anon-1")).touchpoints) == 5
    stored_good = leads.get_lead(good.id)
    assert stored_good.stage is Stage.MQL
    assert len(stored_good.touchpoints) == 5
    stored_gone = leads.get_lead(gone.id)
    assert stored_gone.stage is Stage.DISQUALIFIED
    assert stored_gone.version == gone_version
    assert stored_events(leads, unknown) == []


# -- metadata --------------------------------------------------------------------------


async def test_every_stored_event_carries_the_meta_of_its_command(leads: Leads) -> None:
    meta = {name: EventMeta.new(correlation_id=f"corr-{name}") for name in "abcdefgh"}
    assert len({m.traceparent for m in meta.values()}) == len(meta)

    await leads.record_touchpoint(touch(anonymous_id="anon-1"), meta["a"])
    ana, _ = await leads.capture_lead(capture("ana@example.com", "anon-1"), meta["b"])
    # one batch, three commands, three metas
    bob_result, _, _ = await asyncio.gather(
        leads.capture_lead(capture("bob@example.com"), meta["c"]),
        leads.record_touchpoint(touch(anonymous_id="anon-1"), meta["d"]),
        leads.qualify_lead(QualifyLead(ana.id, 10, "", "", T0), meta["e"]),
    )
    bob = bob_result[0]
    await leads.record_touchpoint(touch(lead_id=bob.id), meta["f"])
    await leads.merge_leads(MergeLeads(ana.id, bob.id, "ops", T0), meta["g"])
    await leads.capture_lead(capture("BOB@example.com", "anon-2"), meta["h"])

    def metas(aggregate_id: uuid.UUID) -> list[tuple[str, str | None]]:
        return [
            (
                type(e).__qualname__,
                (m.correlation_id if (m := EventMeta.of(e)) else None),
            )
            for e in stored_events(leads, aggregate_id)
        ]

    assert metas(visitor_id("anon-1")) == [
        ("Visitor.FirstSeen", "corr-a"),
        ("TouchpointOwner.TouchpointRecorded", "corr-a"),
        ("TouchpointOwner.TouchpointRecorded", "corr-d"),
    ]
    assert metas(ana.id) == [
        ("Lead.Captured", "corr-b"),
        ("Lead.VisitorIdentified", "corr-b"),
        ("Lead.Qualified", "corr-e"),
        ("Lead.DuplicateMerged", "corr-g"),
        ("Lead.VisitorIdentified", "corr-h"),
    ]
    assert metas(bob.id) == [
        ("Lead.Captured", "corr-c"),
        ("TouchpointOwner.TouchpointRecorded", "corr-f"),
        ("Lead.MergedInto", "corr-g"),
    ]
    bob_claim = email_claim_id(leads.email_digest("bob@example.com"))
    assert metas(bob_claim) == [
        ("EmailClaim.Claimed", "corr-c"),
        ("EmailClaim.Reassigned", "corr-g"),
    ]
    # the whole metadata, not only the correlation id
    first_event = stored_events(leads, ana.id)[0]
    assert EventMeta.of(first_event) == meta["b"]


async def test_meta_survives_a_batch_that_had_to_be_replayed(leads: Leads) -> None:
    gone = await new_lead(leads, "gone@example.com")
    await leads.disqualify_lead(
        DisqualifyLead(gone.id, "spam", "", "ops", T0), EventMeta.new()
    )
    metas = [EventMeta.new(correlation_id=f"corr-{n}") for n in range(4)]

    results = await asyncio.gather(
        leads.record_touchpoint(touch(anonymous_id="anon-1"), metas[0]),
        leads.qualify_lead(QualifyLead(gone.id, 1, "", "", T0), metas[1]),
        leads.record_touchpoint(touch(anonymous_id="anon-1"), metas[2]),
        leads.capture_lead(capture("new@example.com"), metas[3]),
        return_exceptions=True,
    )

    assert isinstance(results[1], FailedPrecondition)
    assert [EventMeta.of(e) for e in stored_events(leads, visitor_id("anon-1"))] == [
        metas[0],
        metas[0],
        metas[2],
    ]
    new_lead_id = results[3][0].id
    assert [EventMeta.of(e) for e in stored_events(leads, new_lead_id)] == [metas[3]]
    assert all(EventMeta.of(e) != metas[1] for e in stored_events(leads, gone.id))
