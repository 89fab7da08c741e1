"""Point-in-time answers folded from a subject's history: may we, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.consent.domain import ConsentChange, history_order
from services.consent.vocabulary import ChangeKind, Method, Purpose, State

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from services.consent.domain import ChannelPreferences, Consent, PreferenceChange


@dataclass(frozen=True)
class Decision:
    """The answer for one (purpose, channel) pair at a time, and what decided it."""

    purpose: str
    channel: str
    at: datetime
    believed_at: datetime | None
    state: State
    reason: str
    decided_by: ConsentChange | None

    @property
    def allowed(self) -> bool:
        return self.state is State.OPTED_IN


def all_changes(records: Iterable[Consent]) -> list[ConsentChange]:
    """Grants, withdrawals and erasures of the records, in history order."""
    changes = [c for r in records for c in (*r.changes, *r.erasures)]
    return sorted(changes, key=history_order)


def decide(
    changes: Iterable[ConsentChange],
    purpose: str,
    channel: str,
    at: datetime,
    believed_at: datetime | None = None,
) -> Decision:
    """Folds the changes that cover the pair and occurred at or before `at`.

    With `believed_at`, only the changes recorded by then count: the answer closedloop
    would have given at that time. In business-time order, ties in recording order: a
    grant opts in, a double opt-in request makes the pair pending unless it is opted
    in already, a withdrawal or an erasure opts out. Nothing at all is "never asked".
    """
    state, deciding = State.NOT_OPTED, None
    relevant = sorted(
        (
            c
            for c in changes
            if c.covers(purpose, channel)
            and c.occurred_at <= at
            and (believed_at is None or c.recorded_at <= believed_at)
        ),
        key=history_order,
    )
    for change in relevant:
        if change.kind is not ChangeKind.GRANTED:
            state, deciding = State.OPTED_OUT, change
        elif change.method != Method.DOUBLE_OPT_IN_REQUESTED:
            state, deciding = State.OPTED_IN, change
        elif state is not State.OPTED_IN:
            state, deciding = State.PENDING_CONFIRMATION, change
    return Decision(
        purpose=purpose,
        channel=channel,
        at=at,
        believed_at=believed_at,
        state=state,
        reason=_reason(state, deciding, purpose, channel, at, believed_at),
        decided_by=deciding,
    )


def preferences_at(
    changes: Iterable[PreferenceChange],
    channel: str,
    at: datetime,
    believed_at: datetime | None = None,
) -> ChannelPreferences | None:
    """The latest preferences set for the channel at or before `at`."""
    found = None
    for change in sorted(changes, key=history_order):
        if change.occurred_at > at or (
            believed_at is not None and change.recorded_at > believed_at
        ):
            continue
        for preferences in change.preferences:
            if preferences.channel == channel:
                found = preferences
    return found


def _reason(  # noqa: PLR0911 - one sentence per way a pair can be decided
    state: State,
    change: ConsentChange | None,
    purpose: str,
    channel: str,
    at: datetime,
    believed_at: datetime | None,
) -> str:
    if change is None:
        known = f", as recorded by {believed_at.isoformat()}" if believed_at else ""
        return (
            f"never asked: no consent to {purpose} by {channel} occurred at or "
            f"before {at.isoformat()}{known}; contact needs an opt-in"
        )
    when = change.occurred_at.isoformat()
    how = f"{change.method} via {change.source_system}"
    if change.kind is ChangeKind.ERASED:
        return f"the subject was erased on {when}; nothing may be sent"
    if state is State.OPTED_IN:
        return (
            f"opted in to {change.purpose} by {change.channel} on {when} ({how}, "
            f"legal basis {change.legal_basis})"
        )
    if state is State.PENDING_CONFIRMATION:
        return (
            f"double opt-in to {change.purpose} by {change.channel} requested on "
            f"{when} and not confirmed"
        )
    where = f"by {change.channel}" if change.channel else "on every channel"
    if change.purpose == Purpose.DIRECT_MARKETING_OBJECTION:
        return (
            f"objected to direct marketing (GDPR art. 21) on {when} ({how}): every "
            "marketing purpose on every channel"
        )
    if change.method == Method.GPC:
        return (
            f"Global Privacy Control signal on {when}: opted out of {change.purpose} "
            f"{where}"
        )
    if change.purpose == Purpose.ALL:
        return f"opted out of every purpose {where} on {when} ({how})"
    return f"withdrew {change.purpose} {where} on {when} ({how})"
