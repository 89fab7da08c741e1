"""The event id the relay computes for every message is exactly a UUIDv5."""

from __future__ import annotations

import uuid

import pytest

from closedloop.relay import event_id
from closedloop.relay.outbox import EVENT_ID_NAMESPACE


@pytest.mark.parametrize("seed", range(200))
def test_event_id_is_the_uuid5_of_aggregate_and_version(seed: int) -> None:
    originator = uuid.UUID(int=seed * 0x9E3779B97F4A7C15 % (1 << 128))
    version = seed * 7 + 1
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{originator}:{version}")
    got = event_id(originator, version)
    assert got == str(expected)
    assert uuid.UUID(got).version == 5
    assert event_id(str(originator), version) == got
