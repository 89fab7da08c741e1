"""The scripted quarter: the scenario every read-side test works its figures from."""

from __future__ import annotations

from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.testing.readside.scenario import (
    Scenario,
    subject_of_email,
    subject_of_lead,
)

PAID_SEARCH = lead_types.CHANNEL_PAID_SEARCH
PAID_SOCIAL = lead_types.CHANNEL_PAID_SOCIAL
DIRECT = lead_types.CHANNEL_DIRECT
WORD_OF_MOUTH = lead_types.CHANNEL_WORD_OF_MOUTH


def scripted_quarter() -> Scenario:  # noqa: PLR0915 - the story, fact by fact
    """Q1 2026 and the renewals of Q2, small enough to check every figure by hand.

    Ann (paid search) and Dan (paid search, with a duplicate lead merged in) are won;
    Bob (paid social) is lost; Cara (a customer's referral) is won without being an
    MQL; Eve (paid social) is disqualified and erased; Zed and Yan never leave their
    email. In Q2, Fay (referral) and Gus (paid social) are won, and the Q1 customers
    renew (Cara smaller). See tests/integration/test_insights_scenario.py for the
    figures.
    """
    s = Scenario()
    c = consent_types
    # Ann: paid search, then direct; lead, MQL, SAL, deal won 12,000.00.
    s.touch(
        "2026-01-05",
        visitor="v-ann",
        channel=PAID_SEARCH,
        source="google",
        medium="cpc",
        campaign="spring-search",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    s.touch("2026-01-10", visitor="v-ann", channel=DIRECT)
    ann = s.capture("ann", "2026-01-12", visitor="v-ann")
    s.consent(
        subject_of_lead("ann"),
        "2026-01-12",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        lead_id=ann,
        hour=13,
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-01-12",
        granted=True,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_REQUESTED,
        lead_id=ann,
        hour=14,
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-01-13",
        granted=True,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_CONFIRMED,
        lead_id=ann,
    )
    s.qualify(ann, "2026-01-15")
    s.accept(ann, "2026-01-20")
    deal_ann = s.open_deal("ann", ann, "2026-02-01", 1_000_000)
    s.win(deal_ann, ann, "2026-02-20", 1_200_000)
    s.recognize(
        deal_ann, ann, "2026-02-20", 1_200_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-03-01",
        granted=False,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_UNSUBSCRIBE_LINK,
        lead_id=ann,
    )
    # Bob: consent given with his email before he is a lead; paid social; lost.
    s.touch(
        "2026-01-08",
        visitor="v-bob",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="spring-social",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    s.consent(
        subject_of_email("bob@example.com"),
        "2026-01-08",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        email="bob@example.com",
        hour=13,
    )
    bob = s.capture("bob", "2026-01-09", visitor="v-bob")
    s.qualify(bob, "2026-01-20")
    s.accept(bob, "2026-02-05")
    deal_bob = s.open_deal("bob", bob, "2026-02-10", 500_000)
    s.lose(deal_bob, bob, "2026-03-01")
    for purpose in (c.PURPOSE_THIRD_PARTY_SHARING, c.PURPOSE_PROFILING):
        s.consent(
            subject_of_lead("bob"),
            "2026-02-01",
            granted=False,
            purpose=purpose,
            channel=c.CHANNEL_UNSPECIFIED,
            method=c.METHOD_GPC,
            lead_id=bob,
        )
    # Cara: a customer recommended us; accepted without being an MQL; won 8,000.00.
    s.touch(
        "2026-01-03",
        visitor="v-cara",
        channel=WORD_OF_MOUTH,
        medium="wom",
        interaction=lead_types.INTERACTION_REFERRAL,
    )
    cara = s.capture("cara", "2026-01-04", visitor="v-cara")
    s.accept(cara, "2026-01-06", skipped=True)
    deal_cara = s.open_deal("cara", cara, "2026-01-10", 800_000)
    s.win(deal_cara, cara, "2026-01-31", 800_000)
    s.recognize(
        deal_cara, cara, "2026-01-31", 800_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    # Dan: paid search; a duplicate lead (dan2) became MQL and was merged into Dan.
    s.touch(
        "2026-02-01",
        visitor="v-dan",
        channel=PAID_SEARCH,
        source="google",
        medium="cpc",
        campaign="spring-search",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    dan = s.capture("dan", "2026-02-02", visitor="v-dan")
    dan2 = s.capture("dan2", "2026-02-03", email="dan.work@example.com")
    s.qualify(dan2, "2026-02-04")
    s.merge(dan, dan2, "2026-02-05")
    s.accept(dan, "2026-02-10", skipped=True)
    deal_dan = s.open_deal("dan", dan, "2026-02-15", 300_000)
    s.win(deal_dan, dan, "2026-03-10", 300_000)
    s.recognize(
        deal_dan, dan, "2026-03-10", 300_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    # Eve: paid social; disqualified as spam; then she asked to be erased.
    s.touch(
        "2026-03-01",
        visitor="v-eve",
        channel=PAID_SOCIAL,
        source="facebook",
        medium="cpc",
        campaign="spring-social",
    )
    eve = s.capture("eve", "2026-03-02", visitor="v-eve")
    s.consent(
        subject_of_lead("eve"),
        "2026-03-02",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        lead_id=eve,
        hour=13,
    )
    s.disqualify(eve, "2026-03-05")
    s.erase(subject_of_lead("eve"), "2026-03-20", lead_id=eve, email="eve@example.com")
    s.erase(subject_of_email("eve@example.com"), "2026-03-20", email="eve@example.com")
    s.lead_erased(eve, "2026-03-20")
    # Visitors who never became leads.
    s.touch(
        "2026-01-15",
        visitor="v-zed",
        channel=PAID_SEARCH,
        source="bing",
        medium="cpc",
        campaign="spring-search",
    )
    s.touch(
        "2026-02-10",
        visitor="v-yan",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="spring-social",
    )
    # Attribution of the Q1 wins under two models, and the quarter's spend.
    s.attribute(
        deal_ann,
        ann,
        "2026-02-20",
        "linear",
        [("paid_search", "spring-search", 600_000), ("direct", "", 600_000)],
    )
    s.attribute(
        deal_ann,
        ann,
        "2026-02-20",
        "first_touch",
        [("paid_search", "spring-search", 1_200_000)],
    )
    s.attribute(
        deal_cara, cara, "2026-01-31", "linear", [("word_of_mouth", "", 800_000)]
    )
    s.attribute(
        deal_cara, cara, "2026-01-31", "first_touch", [("word_of_mouth", "", 800_000)]
    )
    s.attribute(
        deal_dan,
        dan,
        "2026-03-10",
        "linear",
        [("paid_search", "spring-search", 300_000)],
    )
    s.attribute(
        deal_dan,
        dan,
        "2026-03-10",
        "first_touch",
        [("paid_search", "spring-search", 300_000)],
    )
    s.spend(
        "q1-search", "paid_search", "spring-search", "2026-01-01", "2026-04-01", 900_000
    )
    s.spend(
        "feb-social",
        "paid_social",
        "spring-social",
        "2026-02-01",
        "2026-03-01",
        200_000,
    )
    # Q2: renewals of the Q1 customers, and two new customers.
    s.recognize(
        deal_ann,
        ann,
        "2026-05-20",
        1_200_000,
        deal_types.REVENUE_KIND_RENEWAL,
        "renewal",
    )
    s.recognize(
        deal_ann,
        ann,
        "2026-05-20",
        300_000,
        deal_types.REVENUE_KIND_EXPANSION,
        "expansion",
    )
    s.recognize(
        deal_cara,
        cara,
        "2026-04-30",
        800_000,
        deal_types.REVENUE_KIND_RENEWAL,
        "renewal",
    )
    s.recognize(
        deal_cara,
        cara,
        "2026-04-30",
        -200_000,
        deal_types.REVENUE_KIND_CONTRACTION,
        "contraction",
    )
    s.recognize(
        deal_dan, dan, "2026-06-10", 300_000, deal_types.REVENUE_KIND_RENEWAL, "renewal"
    )
    s.touch(
        "2026-04-01",
        visitor="v-fay",
        channel=WORD_OF_MOUTH,
        medium="wom",
        interaction=lead_types.INTERACTION_REFERRAL,
    )
    fay = s.capture("fay", "2026-04-02", visitor="v-fay")
    s.accept(fay, "2026-04-05", skipped=True)
    deal_fay = s.open_deal("fay", fay, "2026-04-10", 500_000)
    s.win(deal_fay, fay, "2026-04-25", 500_000)
    s.recognize(
        deal_fay, fay, "2026-04-25", 500_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    s.touch(
        "2026-04-03",
        visitor="v-gus",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="summer-social",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    gus = s.capture("gus", "2026-04-04", visitor="v-gus")
    s.qualify(gus, "2026-04-06")
    s.accept(gus, "2026-04-08")
    deal_gus = s.open_deal("gus", gus, "2026-04-20", 400_000)
    s.win(deal_gus, gus, "2026-05-10", 400_000)
    s.recognize(
        deal_gus, gus, "2026-05-10", 400_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    return s
