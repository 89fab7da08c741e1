"""Events as the relays publish them, without the write services.

For tests, demos and benchmarks of the read side.

`EventLog` builds protobuf events with the CloudEvents envelope a relay would give
them (event id, aggregate id and version, recorded time); `publish` puts them on the
context subjects, from where CLOSEDLOOP_LOG sources them. `scripted_quarter()` is a
small, hand-checkable quarter of marketing: the tests work its figures out by hand.
`apply_events` runs a projection over them without NATS; `wait_caught_up` waits
for a live projector to apply the whole log.
"""

from closedloop.testing.readside.eventlog import (
    NAMESPACE,
    EventLog,
    Published,
    log_messages,
    publish,
    wait_for_log,
)
from closedloop.testing.readside.projections import (
    apply_events,
    snapshot,
    wait_caught_up,
)
from closedloop.testing.readside.quarter import scripted_quarter
from closedloop.testing.readside.scenario import (
    SECRET_KEY,
    Scenario,
    at,
    ident,
    subject_of_email,
    subject_of_lead,
    usd,
)

__all__ = [
    "NAMESPACE",
    "SECRET_KEY",
    "EventLog",
    "Published",
    "Scenario",
    "apply_events",
    "at",
    "ident",
    "log_messages",
    "publish",
    "scripted_quarter",
    "snapshot",
    "subject_of_email",
    "subject_of_lead",
    "usd",
    "wait_caught_up",
    "wait_for_log",
]
