"""The lead context as attribution sees it: a lead's creation time and its journey."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc

from closedloop.errors import Unavailable
from closedloop.grpckit.client import ServiceClient, on_behalf_of
from closedloop.grpckit.paging import MAX_PAGE_SIZE, every_page
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc, types_pb2
from closedloop.protobuf import enum_name, to_datetime
from services.attribution.models import Touch

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from datetime import datetime

    from closedloop.eventstore.metadata import EventMeta

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one call to the lead service may take before the event is redelivered.
LEAD_DEADLINE_SECONDS = 5.0
#: The channel of a touch recorded without one the lead context knows.
UNASSIGNED = "unassigned"
#: Touchpoints per GetJourney call: the most a page holds, so most journeys take one.
JOURNEY_PAGE_SIZE = MAX_PAGE_SIZE


@dataclass(frozen=True)
class LeadJourney:
    """A lead's creation (business) time and its touches in journey order.

    The touches are the person's: the lead's own, its visitors' (before and after
    identification) and those of every lead merged into it.
    """

    lead_id: uuid.UUID
    created_at: datetime
    touches: tuple[Touch, ...]


class LeadJourneys:
    """Port to the lead context; tests subclass it with a fake of `journey`."""

    async def journey(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadJourney | None:
        """The lead's journey, None if the lead context knows no such lead.

        Raises `Unavailable` when the lead context gave no answer in time, so the
        event that asked is delivered again later.
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Releases what the port holds; a fake holds nothing."""


def touch_from_message(message: types_pb2.Touchpoint, order: int) -> Touch:
    channel = enum_name(types_pb2.Channel, "CHANNEL_", message.channel)
    return Touch(
        touchpoint_id=message.touchpoint_id,
        channel=channel or UNASSIGNED,
        campaign=message.campaign or None,
        occurred_at=to_datetime(message.occurred_at),
        recorded_order=order,
    )


class GrpcLeadJourneys(LeadJourneys):
    """Asks `closedloop.lead.v1.LeadService` for GetLead, then every GetJourney page."""

    def __init__(
        self, address: str, *, deadline: float = LEAD_DEADLINE_SECONDS
    ) -> None:
        self.address = address
        self.deadline = deadline
        self._lead = ServiceClient(
            address, lead_service_pb2_grpc.LeadServiceStub, default_timeout=deadline
        )

    async def _bounded(self, call: Awaitable[T]) -> T:
        """One call, its gRPC deadline and a backstop for what precedes it.

        The backstop (name resolution, a stuck channel) is per call, so a journey of
        many pages gets as long as its pages need.
        """
        async with asyncio.timeout(self.deadline + 0.5):
            return await call

    async def journey(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadJourney | None:
        stub = self._lead.stub()
        try:
            async with on_behalf_of(meta):
                lead = await self._bounded(
                    stub.GetLead(lead_pb.GetLeadRequest(lead_id=str(lead_id)))
                )
                touchpoints = [
                    touchpoint
                    async for page in every_page(
                        lambda token: self._bounded(
                            stub.GetJourney(
                                lead_pb.GetJourneyRequest(
                                    lead_id=str(lead_id),
                                    page_size=JOURNEY_PAGE_SIZE,
                                    page_token=token,
                                )
                            )
                        )
                    )
                    for touchpoint in page.touchpoints
                ]
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.warning(
                "lead service at %s: journey of %s failed: %s %s",
                self.address,
                lead_id,
                error.code(),
                error.details(),
            )
            raise Unavailable(
                "the lead service did not give the lead's journey; retry"
            ) from None
        except TimeoutError:
            log.warning(
                "lead service at %s: journey of %s timed out", self.address, lead_id
            )
            raise Unavailable(
                "the lead service did not give the lead's journey in time; retry"
            ) from None
        return LeadJourney(
            lead_id=lead_id,
            created_at=to_datetime(lead.lead.created_at),
            touches=tuple(
                touch_from_message(tp, order) for order, tp in enumerate(touchpoints)
            ),
        )

    async def close(self) -> None:
        await self._lead.close()
