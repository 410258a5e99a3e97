"""Run as a process by the crash test: records events from several threads with sync durability, forever.

Prints ``acked <request id>`` (flushed) only after the event's ``record()`` future has
resolved, i.e. after its commit; the test kills this process with SIGKILL at some point.
Arguments: DATABASE_URL STREAM FIRST_NUMBER [PRESENCE_DIR] (where live writers mark themselves).
"""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path

from tests.audit.conftest import KEYS, request_event
from warden.audit import AuditLog
from warden.storage import Database


def main() -> None:
    """Write until killed."""
    url, stream, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    presence = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    log = AuditLog(Database(url), KEYS, stream=stream, checkpoint_every=7, presence_dir=presence)
    numbers = itertools.count(first)
    lock = threading.Lock()

    def serve() -> None:
        while True:
            with lock:
                number = next(numbers)
            log.record(request_event(number)).result()
            with lock:
                sys.stdout.write(f"acked req-{number}\n")
                sys.stdout.flush()

    for _ in range(8):
        threading.Thread(target=serve, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
