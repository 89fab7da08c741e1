"""Default channel grouping: map a touchpoint's source and medium to a channel."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_CHANNEL_RULES",
    "SEARCH_SOURCES",
    "SOCIAL_SOURCES",
    "VIDEO_SOURCES",
    "Channel",
    "ChannelRule",
    "default_channel",
]


class Channel(enum.StrEnum):
    """Where a touchpoint came from, as reported and grouped in attribution."""

    DIRECT = "direct"
    PAID_SEARCH = "paid_search"
    PAID_SOCIAL = "paid_social"
    PAID_VIDEO = "paid_video"
    DISPLAY = "display"
    PAID_OTHER = "paid_other"
    ORGANIC_SEARCH = "organic_search"
    ORGANIC_SOCIAL = "organic_social"
    ORGANIC_VIDEO = "organic_video"
    EMAIL = "email"
    AFFILIATE = "affiliate"
    EVENTS = "events"
    SMS = "sms"
    REFERRAL = "referral"
    WORD_OF_MOUTH = "word_of_mouth"
    UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class ChannelRule:
    """One row of the channel table; `matches` gets normalised source and medium."""

    order: int
    channel: Channel
    description: str
    matches: Callable[[str, str], bool]


SEARCH_SOURCES: frozenset[str] = frozenset(
    {
        "google",
        "bing",
        "yahoo",
        "duckduckgo",
        "baidu",
        "yandex",
        "ecosia",
        "naver",
        "ask",
        "aol",
        "startpage",
        "qwant",
        "brave",
        "seznam",
        "sogou",
        "daum",
        "so.com",
        "search.brave.com",
    },
)

SOCIAL_SOURCES: frozenset[str] = frozenset(
    {
        "facebook",
        "fb",
        "instagram",
        "ig",
        "linkedin",
        "lnkd.in",
        "twitter",
        "x",
        "t.co",
        "tiktok",
        "reddit",
        "pinterest",
        "snapchat",
        "threads",
        "mastodon",
        "quora",
        "tumblr",
        "whatsapp",
        "wechat",
        "weibo",
        "vk",
        "xing",
        "bsky",
        "bluesky",
        "discord",
        "telegram",
        "messenger",
        "fb.me",
        "pin.it",
    },
)

VIDEO_SOURCES: frozenset[str] = frozenset(
    {
        "youtube",
        "youtu.be",
        "vimeo",
        "twitch",
        "dailymotion",
        "wistia",
    },
)

# Host prefixes that say nothing about the site: "www.google.com" is "google.com".
_HOST_PREFIXES = frozenset({"www", "www2", "m", "l", "lm", "mobile", "web"})
# Second-level labels of country-code domains: "google.co.uk" is "google".
_SECOND_LEVEL_LABELS = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne"})

_DIRECT_SOURCES = frozenset({"(direct)", "direct", ""})
_NONE_MEDIUMS = frozenset({"(none)", "(not set)", "none", ""})
_PAID_MEDIUMS = frozenset({"cpc", "ppc", "retargeting"})
_DISPLAY_MEDIUMS = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIUMS = frozenset({"social", "social-network", "social-media", "sm"})
_EMAIL_VALUES = frozenset({"email", "e-mail", "e_mail", "newsletter"})
_EVENT_MEDIUMS = frozenset(
    {"event", "events", "webinar", "conference", "tradeshow", "meetup"},
)
_REFERRAL_MEDIUMS = frozenset({"referral", "app", "link"})
_WORD_OF_MOUTH_MEDIUMS = frozenset(
    {"word-of-mouth", "wom", "customer-referral", "referral-program"},
)


def _host(source: str) -> str:
    """Reduce a source that may be a URL ("https://m.facebook.com/x") to its host."""
    _, sep, rest = source.partition("://")
    host = rest if sep else source
    for stop in "/?#:":
        host = host.split(stop, 1)[0]
    return host.strip(".")


def _source_in(source: str, names: frozenset[str]) -> bool:
    """Whether a normalised source names one of `names`, bare or as a domain."""
    if not source:
        return False
    if source in names:
        return True
    host = _host(source)
    if host in names:
        return True
    labels = host.split(".")
    while len(labels) > 1 and labels[0] in _HOST_PREFIXES:
        labels = labels[1:]
    if ".".join(labels) in names:
        return True
    if len(labels) == 1:  # a bare name that is not in `names`
        return False
    labels = labels[:-1]  # the top-level domain: ".com", ".de", ".uk"
    if len(labels) > 1 and labels[-1] in _SECOND_LEVEL_LABELS:
        labels = labels[:-1]  # ".co" of ".co.uk", ".com" of ".com.au"
    return labels[-1] in names


def _is_search(source: str) -> bool:
    return _source_in(source, SEARCH_SOURCES)


def _is_social(source: str) -> bool:
    return _source_in(source, SOCIAL_SOURCES)


def _is_video(source: str) -> bool:
    return _source_in(source, VIDEO_SOURCES)


def _is_paid(medium: str) -> bool:
    return medium in _PAID_MEDIUMS or "cp" in medium or medium.startswith("paid")


def _direct(source: str, medium: str) -> bool:
    return source in _DIRECT_SOURCES and medium in _NONE_MEDIUMS


def _paid_search(source: str, medium: str) -> bool:
    return _is_paid(medium) and _is_search(source)


def _paid_social(source: str, medium: str) -> bool:
    return _is_paid(medium) and _is_social(source)


def _paid_video(source: str, medium: str) -> bool:
    return _is_paid(medium) and _is_video(source)


def _display(_source: str, medium: str) -> bool:
    return medium in _DISPLAY_MEDIUMS


def _paid_other(_source: str, medium: str) -> bool:
    return _is_paid(medium)


def _organic_search(source: str, medium: str) -> bool:
    return medium == "organic" or _is_search(source)


def _organic_social(source: str, medium: str) -> bool:
    return medium in _SOCIAL_MEDIUMS or _is_social(source)


def _organic_video(source: str, medium: str) -> bool:
    return "video" in medium or _is_video(source)


def _email(source: str, medium: str) -> bool:
    return source in _EMAIL_VALUES or medium in _EMAIL_VALUES


def _affiliate(_source: str, medium: str) -> bool:
    return medium == "affiliate"


def _events(_source: str, medium: str) -> bool:
    return medium in _EVENT_MEDIUMS


def _sms(source: str, medium: str) -> bool:
    return "sms" in (source, medium)


def _referral(_source: str, medium: str) -> bool:
    return medium in _REFERRAL_MEDIUMS


def _word_of_mouth(_source: str, medium: str) -> bool:
    return medium in _WORD_OF_MOUTH_MEDIUMS


# The table in order; the first matching rule wins. `Channel.UNASSIGNED` (row 16
# of the table) is not a rule but the fallback of `default_channel`.
DEFAULT_CHANNEL_RULES: tuple[ChannelRule, ...] = (
    ChannelRule(
        order=1,
        channel=Channel.DIRECT,
        description=(
            "source is (direct), direct or empty, and medium is "
            "(none), (not set), none or empty"
        ),
        matches=_direct,
    ),
    ChannelRule(
        order=2,
        channel=Channel.PAID_SEARCH,
        description=(
            "paid medium (cpc, ppc, retargeting, containing cp, "
            "starting with paid) and a search-engine source"
        ),
        matches=_paid_search,
    ),
    ChannelRule(
        order=3,
        channel=Channel.PAID_SOCIAL,
        description="paid medium and a social source",
        matches=_paid_social,
    ),
    ChannelRule(
        order=4,
        channel=Channel.PAID_VIDEO,
        description="paid medium and a video source",
        matches=_paid_video,
    ),
    ChannelRule(
        order=5,
        channel=Channel.DISPLAY,
        description="medium is display, banner, expandable, interstitial or cpm",
        matches=_display,
    ),
    ChannelRule(
        order=6,
        channel=Channel.PAID_OTHER,
        description="any other paid medium",
        matches=_paid_other,
    ),
    ChannelRule(
        order=7,
        channel=Channel.ORGANIC_SEARCH,
        description="search-engine source, or medium organic",
        matches=_organic_search,
    ),
    ChannelRule(
        order=8,
        channel=Channel.ORGANIC_SOCIAL,
        description=(
            "social source, or medium social, social-network, social-media or sm"
        ),
        matches=_organic_social,
    ),
    ChannelRule(
        order=9,
        channel=Channel.ORGANIC_VIDEO,
        description="video source, or medium containing video",
        matches=_organic_video,
    ),
    ChannelRule(
        order=10,
        channel=Channel.EMAIL,
        description="source or medium email, e-mail, e_mail or newsletter",
        matches=_email,
    ),
    ChannelRule(
        order=11,
        channel=Channel.AFFILIATE,
        description="medium affiliate",
        matches=_affiliate,
    ),
    ChannelRule(
        order=12,
        channel=Channel.EVENTS,
        description="medium event, events, webinar, conference, tradeshow or meetup",
        matches=_events,
    ),
    ChannelRule(
        order=13,
        channel=Channel.SMS,
        description="source or medium sms",
        matches=_sms,
    ),
    ChannelRule(
        order=14,
        channel=Channel.REFERRAL,
        description="medium referral, app or link (a link on another website)",
        matches=_referral,
    ),
    ChannelRule(
        order=15,
        channel=Channel.WORD_OF_MOUTH,
        description="medium word-of-mouth, wom, customer-referral or referral-program",
        matches=_word_of_mouth,
    ),
)


@functools.lru_cache(maxsize=4096)
def default_channel(source: str, medium: str) -> Channel:
    """Return the channel of a touchpoint's source and medium.

    The rules follow GA4's default channel group, plus `events`: both values are
    trimmed and lowercased, the first matching rule of `DEFAULT_CHANNEL_RULES`
    wins, and anything no rule matches is `Channel.UNASSIGNED`, never an error.
    Cached: a marketing team uses a few hundred pairs, and every touchpoint that
    names no channel asks.
    """
    normalised_source = source.strip().lower()
    normalised_medium = medium.strip().lower()
    for rule in DEFAULT_CHANNEL_RULES:
        if rule.matches(normalised_source, normalised_medium):
            return rule.channel
    return Channel.UNASSIGNED
