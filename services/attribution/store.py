"""The attribution context's event store, and how values are stored inside its events.

Each transcoding is registered by its `name`, which stored events carry: a name never
changes.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from closedloop.eventstore.unit_of_work import ServiceStore
from closedloop.money import Money
from services.attribution.domain import ChannelWeight
from services.attribution.models import Credit, Touch


class MoneyAsDict(Transcoding):
    type = Money
    name = "money"

    def encode(self, obj: Money) -> dict[str, Any]:
        return {"minor_units": obj.minor_units, "currency": obj.currency}

    def decode(self, data: dict[str, Any]) -> Money:
        return Money(int(data["minor_units"]), str(data["currency"]))


class TouchAsDict(Transcoding):
    type = Touch
    name = "touch"

    def encode(self, obj: Touch) -> dict[str, Any]:
        return {
            "touchpoint_id": obj.touchpoint_id,
            "channel": obj.channel,
            "campaign": obj.campaign,
            "occurred_at": obj.occurred_at,
            "recorded_order": obj.recorded_order,
        }

    def decode(self, data: dict[str, Any]) -> Touch:
        return Touch(
            touchpoint_id=str(data["touchpoint_id"]),
            channel=str(data["channel"]),
            campaign=data["campaign"],
            occurred_at=data["occurred_at"],
            recorded_order=int(data["recorded_order"]),
        )


class CreditAsDict(Transcoding):
    type = Credit
    name = "credit"

    def encode(self, obj: Credit) -> dict[str, Any]:
        return {
            "touchpoint_id": obj.touchpoint_id,
            "channel": obj.channel,
            "campaign": obj.campaign,
            "occurred_at": obj.occurred_at,
            "amount_minor": obj.amount_minor,
        }

    def decode(self, data: dict[str, Any]) -> Credit:
        return Credit(
            touchpoint_id=data["touchpoint_id"],
            channel=str(data["channel"]),
            campaign=data["campaign"],
            occurred_at=data["occurred_at"],
            amount_minor=int(data["amount_minor"]),
        )


class ChannelWeightAsDict(Transcoding):
    type = ChannelWeight
    name = "channel_weight"

    def encode(self, obj: ChannelWeight) -> dict[str, Any]:
        return {
            "channel": obj.channel,
            "weight": obj.weight,
            "share": obj.share,
            "conversions": obj.conversions,
            "value": obj.value,
            "standard_error": obj.standard_error,
        }

    def decode(self, data: dict[str, Any]) -> ChannelWeight:
        return ChannelWeight(
            channel=str(data["channel"]),
            weight=float(data["weight"]),
            share=float(data["share"]),
            conversions=float(data["conversions"]),
            value=float(data["value"]),
            standard_error=float(data["standard_error"]),
        )


class AttributionStore(ServiceStore):
    """The attribution context's event store and repository (eventsourcing).

    It holds no personal data: ids, channels, campaign names, times and money.
    Anonymous ids are kept only as one-way `visitor_key` hashes.
    """

    name = "Attributions"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in (
            MoneyAsDict(),
            TouchAsDict(),
            CreditAsDict(),
            ChannelWeightAsDict(),
        ):
            transcoder.register(transcoding)
