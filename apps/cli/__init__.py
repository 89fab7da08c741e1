"""`closedloop`: the operator's command line for projections, the log and reports.

    closedloop projections list | status | add NAME | rebuild NAME | retry-parked
    closedloop events tail [--subject closedloop.deal.v1.>] | stats
    closedloop report revenue | funnel | journey | consent | value [--json] [--chart F]

Projection commands work on the read store (CLOSEDLOOP_PROJECTOR_STORE_URL) and the
log (CLOSEDLOOP_NATS_URL) directly; reports ask the insights service
(CLOSEDLOOP_INSIGHTS_ADDRESS, default 127.0.0.1:50055).
"""

from apps.cli.app import main

__all__ = ["main"]
