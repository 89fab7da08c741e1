"""The one place where consent domain events meet closedloop.consent.v1 messages."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from closedloop.consent.v1 import events_pb2, types_pb2
from closedloop.protobuf import enum_name, enum_number, timestamp
from services.consent.domain import (
    ChannelPreferences,
    Consent,
    ConsentChange,
    PreferenceChange,
)

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
    from google.protobuf.message import Message


SOURCE = "/closedloop/consent"

#: Each enum of types.proto with the prefix of its values.
PURPOSE = (types_pb2.Purpose, "PURPOSE_")
CHANNEL = (types_pb2.Channel, "CHANNEL_")
SOURCE_SYSTEM = (types_pb2.SourceSystem, "SOURCE_SYSTEM_")
LEGAL_BASIS = (types_pb2.LegalBasis, "LEGAL_BASIS_")
METHOD = (types_pb2.Method, "METHOD_")
STATE = (types_pb2.ConsentState, "CONSENT_STATE_")
FREQUENCY = (types_pb2.Frequency, "FREQUENCY_")
CHANGE_KIND = (types_pb2.ChangeKind, "CHANGE_KIND_")


def number(enum: tuple[EnumTypeWrapper, str], name: str) -> Any:
    """The enum value of a domain name ("" gives the zero value)."""
    return enum_number(enum[0], enum[1], name)


def name(enum: tuple[EnumTypeWrapper, str], value: int) -> str:
    return enum_name(enum[0], enum[1], value)


def _id(value: uuid.UUID | None) -> str:
    return str(value) if value is not None else ""


def preferences_message(
    preferences: ChannelPreferences,
) -> types_pb2.ChannelPreferences:
    return types_pb2.ChannelPreferences(
        channel=number(CHANNEL, preferences.channel),
        topics=preferences.topics,
        frequency=number(FREQUENCY, preferences.frequency),
    )


def change_message(change: ConsentChange) -> types_pb2.ConsentChange:
    return types_pb2.ConsentChange(
        change_id=str(change.change_id),
        kind=number(CHANGE_KIND, change.kind),
        subject_aggregate_id=str(change.subject_aggregate_id),
        lead_id=_id(change.lead_id),
        email=change.email,
        email_digest=change.email_digest,
        purpose=number(PURPOSE, change.purpose),
        channel=number(CHANNEL, change.channel),
        legal_basis=number(LEGAL_BASIS, change.legal_basis),
        source_system=number(SOURCE_SYSTEM, change.source_system),
        method=number(METHOD, change.method),
        evidence=types_pb2.Evidence(
            notice_version=change.evidence.notice_version,
            notice_hash=change.evidence.notice_hash,
            capture_method=change.evidence.capture_method,
            request_origin=change.evidence.request_origin,
            detail=change.evidence.detail,
        ),
        occurred_at=timestamp(change.occurred_at),
        recorded_at=timestamp(change.recorded_at),
    )


def preference_change_message(change: PreferenceChange) -> types_pb2.PreferenceChange:
    return types_pb2.PreferenceChange(
        change_id=str(change.change_id),
        subject_aggregate_id=str(change.subject_aggregate_id),
        lead_id=_id(change.lead_id),
        email=change.email,
        email_digest=change.email_digest,
        preferences=[preferences_message(p) for p in change.preferences],
        source_system=number(SOURCE_SYSTEM, change.source_system),
        occurred_at=timestamp(change.occurred_at),
        recorded_at=timestamp(change.recorded_at),
    )


# -- domain event -> message -----------------------------------------------------


def _change_fields(event: Any) -> dict[str, Any]:
    return {
        "subject_aggregate_id": str(event.originator_id),
        "change_id": str(event.change_id),
        "lead_id": _id(event.lead_id),
        "email": event.email,
        "email_digest": event.email_digest,
        "purpose": number(PURPOSE, event.purpose),
        "channel": number(CHANNEL, event.channel),
        "legal_basis": number(LEGAL_BASIS, event.legal_basis),
        "source_system": number(SOURCE_SYSTEM, event.source_system),
        "method": number(METHOD, event.method),
        "evidence": types_pb2.Evidence(
            notice_version=event.notice_version,
            notice_hash=event.notice_hash,
            capture_method=event.capture_method,
            request_origin=event.request_origin,
            detail=event.evidence_detail,
        ),
        "occurred_at": timestamp(event.occurred_at),
    }


def to_message(event: Any) -> Message | None:
    """The published form of a stored event; None for the service's own bookkeeping."""
    if isinstance(event, Consent.Granted):
        return events_pb2.ConsentGranted(**_change_fields(event))
    if isinstance(event, Consent.Withdrawn):
        return events_pb2.ConsentWithdrawn(**_change_fields(event))
    if isinstance(event, Consent.PreferencesChanged):
        return events_pb2.PreferencesChanged(
            subject_aggregate_id=str(event.originator_id),
            change_id=str(event.change_id),
            lead_id=_id(event.lead_id),
            email=event.email,
            email_digest=event.email_digest,
            preferences=[
                preferences_message(ChannelPreferences.from_dict(p))
                for p in event.preferences
            ],
            source_system=number(SOURCE_SYSTEM, event.source_system),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Consent.SubjectErased):
        return events_pb2.SubjectErased(
            subject_aggregate_id=str(event.originator_id),
            lead_id=_id(event.lead_id),
            email_digest=event.email_digest,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Consent.Opened):
        return None  # the record exists from its first change on
    msg = f"no wire mapping for {type(event).__qualname__}"
    raise TypeError(msg)
