"""The relay's outbox worker process: `python -m closedloop.relay.outbox_worker FD`.

Started by `closedloop.relay.outbox.WorkerOutbox`, never by hand: FD is its end of the
pipe to the relay.
"""

from __future__ import annotations

import sys

from closedloop.relay.outbox import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]))
