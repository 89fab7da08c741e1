"""Tests for the default channel grouping of touchpoints."""

from __future__ import annotations

import random
import string

import pytest

from services.lead.channels import (
    DEFAULT_CHANNEL_RULES,
    SEARCH_SOURCES,
    SOCIAL_SOURCES,
    VIDEO_SOURCES,
    Channel,
    ChannelRule,
    default_channel,
)

# One block per row of the table: (source, medium, expected channel).
ROW_CASES: list[tuple[str, str, Channel]] = [
    # 1 direct
    ("(direct)", "(none)", Channel.DIRECT),
    ("direct", "none", Channel.DIRECT),
    ("", "", Channel.DIRECT),
    ("  (DIRECT) ", " (Not Set)\t", Channel.DIRECT),
    ("Direct", "", Channel.DIRECT),
    ("", "(none)", Channel.DIRECT),
    # 2 paid_search
    ("google", "cpc", Channel.PAID_SEARCH),
    ("www.google.com", "ppc", Channel.PAID_SEARCH),
    ("Bing", " CPC ", Channel.PAID_SEARCH),
    ("google.co.uk", "paidsearch", Channel.PAID_SEARCH),
    ("duckduckgo", "retargeting", Channel.PAID_SEARCH),
    ("yahoo.co.jp", "cpa", Channel.PAID_SEARCH),
    ("https://www.bing.com/search?q=x", "paid", Channel.PAID_SEARCH),
    # 3 paid_social
    ("facebook", "cpc", Channel.PAID_SOCIAL),
    ("m.facebook.com", "paid_social", Channel.PAID_SOCIAL),
    ("lnkd.in", "ppc", Channel.PAID_SOCIAL),
    ("LinkedIn.com", "Paid", Channel.PAID_SOCIAL),
    ("t.co", "retargeting", Channel.PAID_SOCIAL),
    ("x.com", "cpc", Channel.PAID_SOCIAL),
    ("l.instagram.com", "cpv", Channel.PAID_SOCIAL),
    # 4 paid_video
    ("youtube", "cpv", Channel.PAID_VIDEO),
    ("www.youtube.com", "paid-video", Channel.PAID_VIDEO),
    ("Vimeo", "CPC", Channel.PAID_VIDEO),
    ("m.youtube.com", "retargeting", Channel.PAID_VIDEO),
    # 5 display
    ("doubleclick", "display", Channel.DISPLAY),
    ("example.com", "banner", Channel.DISPLAY),
    ("", "expandable", Channel.DISPLAY),
    ("adnetwork", " Interstitial ", Channel.DISPLAY),
    ("adnetwork", "cpm", Channel.DISPLAY),
    ("google", "display", Channel.DISPLAY),
    # 6 paid_other
    ("adnetwork", "cpc", Channel.PAID_OTHER),
    ("", "ppc", Channel.PAID_OTHER),
    ("partner.example", "paid", Channel.PAID_OTHER),
    ("capterra", "paid_listing", Channel.PAID_OTHER),
    ("newsletter-sponsor", "CPA", Channel.PAID_OTHER),
    ("(direct)", "retargeting", Channel.PAID_OTHER),
    # 7 organic_search
    ("google", "organic", Channel.ORGANIC_SEARCH),
    ("www.google.com", "referral", Channel.ORGANIC_SEARCH),
    ("Bing", "", Channel.ORGANIC_SEARCH),
    ("search.yahoo.com", "referral", Channel.ORGANIC_SEARCH),
    ("duckduckgo.com", "(none)", Channel.ORGANIC_SEARCH),
    ("ecosia.org", "referral", Channel.ORGANIC_SEARCH),
    ("unknown-engine", " ORGANIC ", Channel.ORGANIC_SEARCH),
    # 8 organic_social
    ("facebook", "referral", Channel.ORGANIC_SOCIAL),
    ("m.facebook.com", "", Channel.ORGANIC_SOCIAL),
    ("lnkd.in", "referral", Channel.ORGANIC_SOCIAL),
    ("t.co", "(none)", Channel.ORGANIC_SOCIAL),
    ("www.reddit.com", "referral", Channel.ORGANIC_SOCIAL),
    ("community", "social", Channel.ORGANIC_SOCIAL),
    ("partner", "Social-Network", Channel.ORGANIC_SOCIAL),
    ("partner", "social-media", Channel.ORGANIC_SOCIAL),
    ("partner", "sm", Channel.ORGANIC_SOCIAL),
    # 9 organic_video
    ("youtube", "referral", Channel.ORGANIC_VIDEO),
    ("www.youtube.com", "", Channel.ORGANIC_VIDEO),
    ("youtu.be", "(none)", Channel.ORGANIC_VIDEO),
    ("twitch.tv", "referral", Channel.ORGANIC_VIDEO),
    ("partner", "video", Channel.ORGANIC_VIDEO),
    ("partner", "Explainer-Video", Channel.ORGANIC_VIDEO),
    # 10 email
    ("newsletter", "", Channel.EMAIL),
    ("mailchimp", "email", Channel.EMAIL),
    ("crm", " E-Mail ", Channel.EMAIL),
    ("crm", "e_mail", Channel.EMAIL),
    ("EMAIL", "referral", Channel.EMAIL),
    ("hubspot", "newsletter", Channel.EMAIL),
    # 11 affiliate
    ("partnerize", "affiliate", Channel.AFFILIATE),
    ("", "AFFILIATE", Channel.AFFILIATE),
    ("partner.example.com", " affiliate ", Channel.AFFILIATE),
    # 12 events
    ("saastr", "event", Channel.EVENTS),
    ("", "events", Channel.EVENTS),
    ("zoom", "Webinar", Channel.EVENTS),
    ("web-summit", "conference", Channel.EVENTS),
    ("cebit", "tradeshow", Channel.EVENTS),
    ("meetup.com", " meetup ", Channel.EVENTS),
    # 13 sms
    ("sms", "", Channel.SMS),
    ("SMS", "text", Channel.SMS),
    ("twilio", "sms", Channel.SMS),
    ("twilio", " Sms ", Channel.SMS),
    # 14 referral
    ("example.com", "referral", Channel.REFERRAL),
    ("news.ycombinator.com", "Referral", Channel.REFERRAL),
    ("partner-app", "app", Channel.REFERRAL),
    ("blog.example.org", "link", Channel.REFERRAL),
    ("(direct)", "referral", Channel.REFERRAL),
    # 15 word_of_mouth
    ("customer", "word-of-mouth", Channel.WORD_OF_MOUTH),
    ("", "WOM", Channel.WORD_OF_MOUTH),
    ("acme-corp", "customer-referral", Channel.WORD_OF_MOUTH),
    ("friend", " referral-program ", Channel.WORD_OF_MOUTH),
    # 16 unassigned
    ("example.com", "", Channel.UNASSIGNED),
    ("partner", "print", Channel.UNASSIGNED),
    ("", "qr-code", Channel.UNASSIGNED),
    ("(direct)", "offline", Channel.UNASSIGNED),
    ("billboard", "outdoor", Channel.UNASSIGNED),
    ("googleplex", "", Channel.UNASSIGNED),
]


@pytest.mark.parametrize(("source", "medium", "expected"), ROW_CASES)
def test_default_channel_per_rule(source: str, medium: str, expected: Channel) -> None:
    assert default_channel(source, medium) is expected


def test_every_row_of_the_table_has_cases() -> None:
    assert {expected for _, _, expected in ROW_CASES} == set(Channel)


@pytest.mark.parametrize(
    ("source", "medium", "expected"),
    [
        # "cpm" contains "cp", so it is paid: rule 2 wins over rule 5.
        ("google", "cpm", Channel.PAID_SEARCH),
        ("www.google.com", "CPM", Channel.PAID_SEARCH),
        # ...but with an unknown source, display (5) comes before paid_other (6).
        ("adnetwork", "cpm", Channel.DISPLAY),
        ("", "cpm", Channel.DISPLAY),
        # The medium's name does not pick the channel: a search source wins.
        ("google", "paid_social", Channel.PAID_SEARCH),
        ("facebook", "paid_search", Channel.PAID_SOCIAL),
        ("unknown", "organic", Channel.ORGANIC_SEARCH),
        ("newsletter", "", Channel.EMAIL),
        ("(direct)", "referral", Channel.REFERRAL),
        # Search before social before video before email.
        ("google", "social", Channel.ORGANIC_SEARCH),
        ("facebook", "video", Channel.ORGANIC_SOCIAL),
        ("youtube", "email", Channel.ORGANIC_VIDEO),
        # Email (10) before sms (13); referral (14) before word of mouth (15).
        ("sms", "email", Channel.EMAIL),
        ("newsletter", "affiliate", Channel.EMAIL),
        ("sms", "referral", Channel.SMS),
        # A medium of "direct" is not the direct channel.
        ("google", "direct", Channel.ORGANIC_SEARCH),
    ],
)
def test_ordering_first_match_wins(source: str, medium: str, expected: Channel) -> None:
    assert default_channel(source, medium) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("google", Channel.ORGANIC_SEARCH),
        ("google.com", Channel.ORGANIC_SEARCH),
        ("www.google.com", Channel.ORGANIC_SEARCH),
        ("google.co.uk", Channel.ORGANIC_SEARCH),
        ("google.com.au", Channel.ORGANIC_SEARCH),
        ("news.google.com", Channel.ORGANIC_SEARCH),
        ("https://www.google.de/", Channel.ORGANIC_SEARCH),
        ("m.facebook.com", Channel.ORGANIC_SOCIAL),
        ("l.facebook.com", Channel.ORGANIC_SOCIAL),
        ("linkedin.com", Channel.ORGANIC_SOCIAL),
        ("www.linkedin.com", Channel.ORGANIC_SOCIAL),
        ("lnkd.in", Channel.ORGANIC_SOCIAL),
        ("t.co", Channel.ORGANIC_SOCIAL),
        ("x.com", Channel.ORGANIC_SOCIAL),
        ("m.youtube.com", Channel.ORGANIC_VIDEO),
        ("youtu.be", Channel.ORGANIC_VIDEO),
        ("player.vimeo.com", Channel.ORGANIC_VIDEO),
    ],
)
def test_domain_style_sources_are_recognised(source: str, expected: Channel) -> None:
    assert default_channel(source, "referral") is expected


@pytest.mark.parametrize(
    "source",
    ["example.com", "googleusercontent", "notfacebook.com", "tco", "lnkd", "xing-"],
)
def test_lookalike_sources_are_not_recognised(source: str) -> None:
    assert default_channel(source, "referral") is Channel.REFERRAL


def test_known_source_sets() -> None:
    for name in ("google", "bing", "yahoo", "duckduckgo", "baidu", "yandex"):
        assert name in SEARCH_SOURCES
    for name in ("facebook", "instagram", "linkedin", "lnkd.in", "t.co", "x"):
        assert name in SOCIAL_SOURCES
    for name in ("youtube", "vimeo", "twitch", "dailymotion", "wistia"):
        assert name in VIDEO_SOURCES
    assert not SEARCH_SOURCES & SOCIAL_SOURCES
    assert not SEARCH_SOURCES & VIDEO_SOURCES
    assert not SOCIAL_SOURCES & VIDEO_SOURCES
    assert all(name == name.strip().lower() for name in SEARCH_SOURCES)


def test_rule_orders_are_consecutive_from_one() -> None:
    orders = [rule.order for rule in DEFAULT_CHANNEL_RULES]
    assert orders == list(range(1, len(DEFAULT_CHANNEL_RULES) + 1))


def test_every_channel_but_unassigned_has_exactly_one_rule() -> None:
    channels = [rule.channel for rule in DEFAULT_CHANNEL_RULES]
    assert len(channels) == len(set(channels))
    assert set(channels) == set(Channel) - {Channel.UNASSIGNED}


def test_rules_are_described_frozen_data() -> None:
    for rule in DEFAULT_CHANNEL_RULES:
        assert isinstance(rule, ChannelRule)
        assert rule.description.strip()
        assert callable(rule.matches)
    rule = DEFAULT_CHANNEL_RULES[0]
    with pytest.raises(AttributeError):
        rule.order = 99  # type: ignore[misc]


def test_rules_match_normalised_values() -> None:
    by_channel = {rule.channel: rule for rule in DEFAULT_CHANNEL_RULES}
    assert by_channel[Channel.DIRECT].matches("(direct)", "(none)")
    assert by_channel[Channel.PAID_SEARCH].matches("google", "cpc")
    assert not by_channel[Channel.PAID_SEARCH].matches("google", "organic")
    assert by_channel[Channel.DISPLAY].matches("anything", "cpm")


def test_channel_values_are_lower_snake_case_strings() -> None:
    for channel in Channel:
        assert isinstance(channel, str)
        assert channel.value == channel.name.lower()
        assert str(channel) == channel.value
    assert Channel("paid_search") is Channel.PAID_SEARCH


ODD_STRINGS = [
    "null",
    "None",
    "undefined",
    "NaN",
    "(not set)",
    "()",
    ".",
    "..",
    "...",
    "://",
    "https://",
    "http:///",
    "www.",
    "m.",
    ".com",
    "co.uk",
    "a" * 100_000,
    "google." * 5_000,
    "\x00",
    "\u200b",
    "\ufeff",
    " \t\n\r\x0b\x0c ",
    "İstanbul",
    "ß",
    "ﬁ",
    "Ⅻ",
    "googl\u0435.com",  # a Cyrillic "e"
    "グーグル",
    "😀.com",
    "\ud800",  # lone surrogate
    "%00%ff",
    "cp" * 1_000,
    "paid" + "\u0301",
]


@pytest.mark.parametrize("value", ODD_STRINGS)
def test_odd_strings_never_raise(value: str) -> None:
    for source, medium in ((value, ""), ("", value), (value, value), (value, "cpc")):
        assert isinstance(default_channel(source, medium), Channel)


def test_random_strings_never_raise() -> None:
    rng = random.Random(20240601)
    alphabet = (
        string.printable
        + "().:/-_ "
        + "äöüßçéñøåİıΣσςЖж中文日本語한국어😀\u200b\u0301\x00\ufeff"
    )
    fragments = [
        "google",
        "facebook",
        "youtube",
        "www.",
        "m.",
        ".com",
        ".co.uk",
        "cpc",
        "cpm",
        "paid",
        "(direct)",
        "(none)",
        "email",
        "sms",
        "referral",
        "video",
    ]
    for _ in range(2_000):
        parts = [
            rng.choice(fragments)
            if rng.random() < 0.3
            else "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
            for _ in range(rng.randint(0, 4))
        ]
        source = "".join(parts)
        medium = "".join(rng.sample(parts, len(parts)))
        result = default_channel(source, medium)
        assert isinstance(result, Channel)
        if source.isascii():  # lower() of upper() is the identity only for ASCII
            assert result is default_channel(f" {source.upper()} ", f"  {medium}\t")
