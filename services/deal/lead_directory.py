"""The lead context as the deal service sees it: may a lead have a deal opened."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

import grpc

from closedloop.errors import Unavailable
from closedloop.grpckit.client import ServiceClient, on_behalf_of
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc, types_pb2
from closedloop.protobuf import enum_name
from services.deal.domain import LeadStanding, check_convertible

if TYPE_CHECKING:
    from closedloop.eventstore.metadata import EventMeta

log = logging.getLogger(__name__)

#: How long OpenDeal waits for the lead service before it answers UNAVAILABLE, at
#: most: less when OpenDeal's own caller has less time left.
LEAD_DEADLINE_SECONDS = 2.0


class LeadDirectory:
    """Port to the lead context; tests subclass it with a fake of `find_lead`."""

    async def find_lead(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadStanding | None:
        """The lead's standing, None if there is no such lead.

        Raises `Unavailable` when the lead context gave no answer in time.
        """
        raise NotImplementedError

    async def check_convertible(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> None:
        """NOT_FOUND, FAILED_PRECONDITION or UNAVAILABLE unless a deal may be opened."""
        check_convertible(lead_id, await self.find_lead(lead_id, meta))

    async def close(self) -> None:
        """Releases what the directory holds; a fake holds nothing."""


class GrpcLeadDirectory(LeadDirectory):
    """Asks `closedloop.lead.v1.LeadService/GetLead`, with a deadline of two seconds."""

    def __init__(
        self, address: str, *, deadline: float = LEAD_DEADLINE_SECONDS
    ) -> None:
        self.address = address
        self.deadline = deadline
        self._lead = ServiceClient(
            address, lead_service_pb2_grpc.LeadServiceStub, default_timeout=deadline
        )

    async def find_lead(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadStanding | None:
        request = lead_pb.GetLeadRequest(lead_id=str(lead_id))
        try:
            # The gRPC deadline bounds the call; the outer timeout is a backstop for
            # anything before it starts (name resolution, a stuck channel).
            async with asyncio.timeout(self.deadline + 0.5), on_behalf_of(meta):
                reply = await self._lead.stub().GetLead(request)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.warning(
                "lead service at %s: GetLead %s failed: %s %s",
                self.address,
                lead_id,
                error.code(),
                error.details(),
            )
            raise Unavailable(
                "the lead service did not answer whether the lead may have a deal; "
                "retry"
            ) from None
        except TimeoutError:
            log.warning(
                "lead service at %s: GetLead %s timed out", self.address, lead_id
            )
            raise Unavailable(
                "the lead service did not answer in time whether the lead may have "
                "a deal; retry"
            ) from None
        lead = reply.lead
        return LeadStanding(
            lead_id=uuid.UUID(lead.lead_id) if lead.lead_id else lead_id,
            stage=enum_name(types_pb2.LeadStage, "LEAD_STAGE_", lead.stage),
            merged_into=(
                uuid.UUID(lead.merged_into_lead_id)
                if lead.merged_into_lead_id
                else None
            ),
        )

    async def close(self) -> None:
        await self._lead.close()
