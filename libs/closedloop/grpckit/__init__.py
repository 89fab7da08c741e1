"""gRPC helpers shared by every service: server bootstrap, errors, request metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop.eventstore.metadata import EventMeta

if TYPE_CHECKING:
    import grpc

CORRELATION_ID_KEY = "x-correlation-id"
CAUSATION_ID_KEY = "x-causation-id"
TRACEPARENT_KEY = "traceparent"


def request_meta(context: grpc.aio.ServicerContext) -> EventMeta:
    """Correlation, causation and trace ids of a call, new ones where it sent none."""
    metadata = {
        k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
    }
    return EventMeta.new(
        correlation_id=metadata.get(CORRELATION_ID_KEY, ""),
        causation_id=metadata.get(CAUSATION_ID_KEY, ""),
        traceparent=metadata.get(TRACEPARENT_KEY, ""),
    )
