"""A deterministic plan of one quarter of marketing, made from a seed.

Nothing here does I/O: `plan_quarter(seed, visitors)` returns every step that the
driver will send, each with its business time, so the same seed always gives the
same quarter. The channels behave differently on purpose (see CHANNEL_PROFILES):
paid social brings many cheap leads that rarely close; events bring fewer, dearer
leads that close often and renew; word of mouth brings earned customers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

QUARTER_START = datetime(2026, 7, 1, tzinfo=UTC)
QUARTER_DAYS = 92  # 1 July to 30 September 2026
QUARTER_END = QUARTER_START + timedelta(days=QUARTER_DAYS)


@dataclass(frozen=True)
class ChannelProfile:
    """How visitors first arriving through one channel behave, and what it costs."""

    channel: str
    source: str
    medium: str
    campaign: str
    interaction: str
    share: float  # of first touches
    capture: float  # visitor -> lead
    mql: float  # lead -> MQL
    sal: float  # MQL -> SAL
    opportunity: float  # SAL -> deal opened
    win: float  # deal -> won
    deal_size: int  # mean annual contract value, USD cents
    expansion: float  # won -> expansion within the quarter
    daily_spend: int  # USD cents per day; 0 for unpaid channels
    earned: bool = False


CHANNEL_PROFILES: tuple[ChannelProfile, ...] = (
    ChannelProfile("paid_social", "linkedin", "cpc", "q3-linkedin-leadgen", "ad_click",
                   0.30, 0.18, 0.35, 0.30, 0.45, 0.10, 900_000, 0.03, 80_000),
    ChannelProfile("paid_search", "google", "cpc", "q3-search-brand", "ad_click",
                   0.20, 0.08, 0.60, 0.60, 0.60, 0.30, 1_800_000, 0.10, 90_000),
    ChannelProfile("organic_search", "google", "organic", "", "page_view",
                   0.17, 0.05, 0.45, 0.50, 0.55, 0.25, 1_500_000, 0.08, 0),
    ChannelProfile("display", "adroll", "display", "q3-retargeting-display", "ad_view",
                   0.09, 0.02, 0.25, 0.30, 0.40, 0.10, 900_000, 0.02, 25_000),
    ChannelProfile("events", "saastr", "event", "q3-field-events", "event",
                   0.04, 0.45, 0.75, 0.70, 0.70, 0.45, 4_000_000, 0.35, 120_000),
    ChannelProfile("email", "newsletter", "email", "q3-nurture", "email_click",
                   0.07, 0.10, 0.40, 0.45, 0.50, 0.25, 1_200_000, 0.10, 5_000),
    ChannelProfile("referral", "g2.com", "referral", "", "page_view",
                   0.05, 0.10, 0.55, 0.60, 0.60, 0.30, 1_400_000, 0.10, 0),
    ChannelProfile("word_of_mouth", "customer", "customer-referral", "", "referral",
                   0.04, 0.50, 0.80, 0.80, 0.80, 0.60, 2_200_000, 0.30, 0, earned=True),
    ChannelProfile("direct", "(direct)", "(none)", "", "page_view",
                   0.04, 0.06, 0.40, 0.45, 0.50, 0.20, 1_200_000, 0.05, 0),
)  # fmt: skip

#: Touches after the first, for people already on their way (retargeting, nurture).
FOLLOW_UP_TOUCHES: tuple[tuple[str, str, str, str, float], ...] = (
    ("(direct)", "(none)", "", "page_view", 0.35),
    ("newsletter", "email", "q3-nurture", "email_click", 0.20),
    ("google", "organic", "", "page_view", 0.15),
    ("linkedin", "cpc", "q3-linkedin-retargeting", "ad_click", 0.12),
    ("google", "cpc", "q3-search-brand", "ad_click", 0.10),
    ("zoom", "webinar", "q3-product-webinar", "webinar", 0.08),
)

COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark",
             "Wayne", "Tyrell", "Soylent", "Cyberdyne", "Wonka", "Oscorp", "Massive")  # fmt: skip
FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Elif", "Finn", "Gia", "Hugo", "Ines",
               "Jon", "Kai", "Lena", "Milo", "Nora", "Omar", "Pia", "Ravi", "Sara")  # fmt: skip
LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad",
              "Kowalski", "Fischer", "Iyer", "Costa", "Brennan", "Ruiz", "Sato")  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One call the driver makes: what, when (business time), and its arguments."""

    kind: str
    at: datetime
    args: dict[str, object] = field(default_factory=dict)


@dataclass
class PersonPlan:
    """Everything one visitor does in the quarter, in business-time order."""

    key: str
    channel: str
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class SpendPlan:
    channel: str
    campaign: str
    amount: int  # USD cents
    period_start: datetime
    period_end: datetime


@dataclass
class QuarterPlan:
    seed: int
    people: list[PersonPlan]
    spend: list[SpendPlan]

    @property
    def steps(self) -> int:
        return sum(len(p.steps) for p in self.people) + len(self.spend)


def plan_quarter(seed: int, visitors: int) -> QuarterPlan:
    rng = random.Random(seed)
    people = [_plan_person(rng, seed, i) for i in range(visitors)]
    _plan_duplicates(rng, people)
    _plan_erasures(rng, people)
    for person in people:
        # What would happen after the quarter is not part of it.
        person.steps = sorted(
            (s for s in person.steps if s.at < QUARTER_END), key=lambda s: s.at
        )
    return QuarterPlan(seed=seed, people=people, spend=_plan_spend(visitors))


def _pick_profile(rng: random.Random) -> ChannelProfile:
    return rng.choices(CHANNEL_PROFILES, weights=[p.share for p in CHANNEL_PROFILES])[0]


def _touch(at: datetime, source: str, medium: str, campaign: str, interaction: str,
           key: str) -> Step:  # fmt: skip
    return Step("touch", at, {"source": source, "medium": medium, "campaign": campaign,
                              "interaction": interaction, "key": key})  # fmt: skip


def _plan_person(rng: random.Random, seed: int, index: int) -> PersonPlan:
    profile = _pick_profile(rng)
    key = f"s{seed}-p{index}"
    person = PersonPlan(key=key, channel=profile.channel)
    first = QUARTER_START + timedelta(
        seconds=rng.uniform(0, (QUARTER_DAYS - 20) * 86400)
    )
    steps = person.steps
    steps.append(_touch(first, profile.source, profile.medium, profile.campaign,
                        profile.interaction, f"{key}-t0"))  # fmt: skip
    at = first
    for n in range(rng.choices((0, 1, 2, 3, 4), weights=(30, 30, 20, 12, 8))[0]):
        at += timedelta(hours=rng.uniform(2, 24 * 6))
        source, medium, campaign, interaction, _ = rng.choices(
            FOLLOW_UP_TOUCHES, weights=[t[4] for t in FOLLOW_UP_TOUCHES]
        )[0]
        steps.append(
            _touch(at, source, medium, campaign, interaction, f"{key}-t{n + 1}")
        )
    if rng.random() >= profile.capture:
        return person  # an anonymous visitor who never became a lead
    first_name, last_name = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company = rng.choice(COMPANIES)
    email = f"{first_name}.{last_name}.{index}@{company.lower()}.example".lower()
    at += timedelta(minutes=rng.uniform(1, 90))
    steps.append(Step("capture", at, {"email": email, "name": f"{first_name} {last_name}",
                                      "company": company}))  # fmt: skip
    consent_source = "preference_centre" if rng.random() < 0.2 else "web_form"
    if rng.random() < 0.8:
        steps.append(Step("grant", at, {"purpose": "marketing_email",
                                        "source": consent_source}))  # fmt: skip
    if rng.random() < 0.5:
        steps.append(Step("grant", at, {"purpose": "newsletter", "source": "web_form"}))
    if rng.random() < 0.06:
        steps.append(Step("withdraw", at + timedelta(days=rng.uniform(3, 40)),
                          {"purpose": "marketing_email", "source": "email_tool"}))  # fmt: skip
    if rng.random() < 0.03:
        steps.append(Step("withdraw", at + timedelta(days=rng.uniform(3, 40)),
                          {"purpose": "newsletter", "source": "preference_centre"}))  # fmt: skip
    for n in range(rng.choices((0, 1, 2), weights=(50, 35, 15))[0]):
        steps.append(_touch(at + timedelta(days=rng.uniform(1, 12)), "newsletter",
                            "email", "q3-nurture", "email_open", f"{key}-n{n}"))  # fmt: skip
    if rng.random() >= profile.mql:
        if rng.random() < 0.3:
            steps.append(Step("disqualify", at + timedelta(days=rng.uniform(2, 10)),
                              {"reason": rng.choice(("bad_fit", "no_budget", "spam"))}))  # fmt: skip
        return person
    at += timedelta(days=rng.uniform(1, 8))
    steps.append(Step("qualify", at, {"score": rng.randint(55, 99)}))
    if rng.random() >= profile.sal:
        return person
    at += timedelta(days=rng.uniform(1, 6))
    steps.append(
        Step("accept", at, {"owner": rng.choice(("sam", "kim", "alex", "jo"))})
    )
    steps.append(Step("grant", at, {"purpose": "sales_contact", "source": "crm"}))
    if rng.random() >= profile.opportunity:
        return person
    at += timedelta(days=rng.uniform(2, 10))
    amount = max(100_000, int(rng.gauss(profile.deal_size, profile.deal_size * 0.3)))
    amount -= amount % 100
    steps.append(Step("open_deal", at, {"amount": amount}))
    at += timedelta(days=rng.uniform(5, 30))
    if at >= QUARTER_END - timedelta(days=1):
        return person  # still open at the end of the quarter
    if rng.random() >= profile.win:
        steps.append(Step("lose", at, {"reason": rng.choice(("price", "competitor",
                                                             "no_decision", "timing"))}))  # fmt: skip
        return person
    steps.append(Step("win", at, {"amount": amount}))
    steps.append(Step("revenue", at, {"amount": amount, "kind": "new", "n": 0}))
    later = at + timedelta(days=rng.uniform(10, 45))
    if rng.random() < profile.expansion and later < QUARTER_END:
        extra = amount // 4 - (amount // 4) % 100
        steps.append(
            Step("revenue", later, {"amount": extra, "kind": "expansion", "n": 1})
        )
    elif rng.random() < 0.04 and later < QUARTER_END:
        cut = -(amount // 5 - (amount // 5) % 100)
        steps.append(
            Step("revenue", later, {"amount": cut, "kind": "contraction", "n": 1})
        )
    return person


def _plan_duplicates(rng: random.Random, people: list[PersonPlan]) -> None:
    """A few people fill a second form with another address; ops merges them."""
    leads = [p for p in people if any(s.kind == "capture" for s in p.steps)]
    for person in rng.sample(leads, k=min(len(leads), max(1, len(leads) // 60))):
        capture = next(s for s in person.steps if s.kind == "capture")
        at = capture.at + timedelta(days=rng.uniform(1, 5))
        email = "dup." + str(capture.args["email"])
        person.steps.append(Step("duplicate", at, {"email": email,
                                                   "name": capture.args["name"],
                                                   "company": capture.args["company"]}))  # fmt: skip
        person.steps.append(Step("merge", at + timedelta(hours=2)))


def _plan_erasures(rng: random.Random, people: list[PersonPlan]) -> None:
    """A few people ask to be forgotten, late in the quarter."""
    leads = [p for p in people if any(s.kind == "capture" for s in p.steps)]
    for person in rng.sample(leads, k=min(len(leads), max(1, len(leads) // 150))):
        last = max(s.at for s in person.steps)
        at = min(
            last + timedelta(days=rng.uniform(1, 10)), QUARTER_END - timedelta(hours=1)
        )
        person.steps.append(Step("erase", max(at, last)))


def _plan_spend(visitors: int) -> list[SpendPlan]:
    """Weekly spend per paid campaign, scaled to the size of the simulation."""
    scale = visitors / 3000
    spend = []
    for profile in CHANNEL_PROFILES:
        if not profile.daily_spend:
            continue
        start = QUARTER_START
        while start < QUARTER_END:
            end = min(start + timedelta(days=7), QUARTER_END)
            days = (end - start).days
            amount = int(profile.daily_spend * days * scale)
            spend.append(SpendPlan(profile.channel, profile.campaign or profile.channel,
                                   amount - amount % 100, start, end))  # fmt: skip
            start = end
    return spend
