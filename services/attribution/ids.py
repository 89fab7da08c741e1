"""The ids of attribution's aggregates, derived from the ids of the facts they follow.

Each is a uuid5, so an event delivered twice finds the aggregate it made the first
time. Changing a name here would orphan every stored aggregate.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("0c6b9a51-5e7f-4d2a-8b3c-71a4e2f9d6b8")


def visitor_key(anonymous_id: str) -> uuid.UUID:
    """Stands for an anonymous id, which this context never stores itself."""
    return uuid.uuid5(NAMESPACE, f"anonymous:{anonymous_id}")


def lead_journey_id(lead_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"lead:{lead_id}")


def visitor_journey_id(key: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"visitor:{key}")


def deal_record_id(deal_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"deal:{deal_id}")


def conversion_id(deal_id: uuid.UUID, conversion: str) -> uuid.UUID:
    """One aggregate per conversion of a deal: the win, then each recognised revenue."""
    return uuid.uuid5(NAMESPACE, f"conversion:{deal_id}:{conversion}")


def channel_model_id(model: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"channel-model:{model}")


def spend_id_for(idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"spend:{idempotency_key}")


def spend_ledger_id(channel: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"spend-ledger:{channel}")
