"""The services of closedloop, one package per bounded context.

Events stored before the services became a top-level package name their classes
`closedloop.services.<context>.…`; registering that prefix keeps those topics resolving.
"""

import sys

from eventsourcing.utils import register_topic

#: The package name that events stored before the move carry in their topics.
LEGACY_TOPIC_PREFIX = "closedloop.services"

register_topic(LEGACY_TOPIC_PREFIX, sys.modules[__name__])


def legacy_topic(topic: str) -> str:
    """The topic an event class had when the services lived in `closedloop.services`."""
    return f"{LEGACY_TOPIC_PREFIX}.{topic.removeprefix(__name__ + '.')}"
