"""How long stopping may take: from its first stop signal, `storage-proxy serve` and every
process of its group are gone within --drain-seconds + --grace-seconds + STOP_MARGIN, whether
Redis answers, hangs (a stopped or partitioned server) or is dead.

The orderly path fits well inside: serve.drain() bounds each of its waits, then the Redis
clients get CLOSE_SECONDS. If something hangs anyway (the event loop, gRPC's core, a thread),
a watchdog ends the process at its share of the margin: faulthandler's, a C thread that needs
neither the event loop nor the GIL, which writes every thread's stack to stderr (the log) and
exits with status 1. Shares, in seconds after drain + grace:

- SERVER_SHARE: a server process of a group ends itself;
- SUPERVISOR_KILLS: the supervisor SIGKILLs a server process still there (a hung one);
- REDIS_SHARE: the embedded Redis has until then to shut down cleanly, then gets SIGKILL;
- LAST_SHARE: the supervisor, or a lone server process, ends itself.
"""

from __future__ import annotations

import faulthandler
import signal
import time
from dataclasses import dataclass

STOP_MARGIN = 5.0
SERVER_SHARE = 3.8
SUPERVISOR_KILLS = 4.0
REDIS_SHARE = 4.6
LAST_SHARE = 4.9
CLOSE_SECONDS = 0.5  # to close a Redis client, or to let background tasks end, at the stop

CUT_SHORT = signal.SIGUSR2  # from a group's supervisor: a second stop signal arrived


@dataclass
class StopSignals:
    """What stops a process, and when the first stop signal came.

    A server process stops on SIGTERM, then `second` cuts the drain short (SIGINT alone;
    CUT_SHORT in a group, whose supervisor forwards every signal, since two of one number
    close together can arrive as one). `early`: a stop signal came before serve() listened
    for them. `share`: when, after drain + grace, the watchdog ends this process."""

    second: int = signal.SIGINT
    early: bool = False
    share: float = LAST_SHARE
    received_at: float | None = None  # time.monotonic() of the first stop signal
    budget: float = 0.0  # drain + grace, once a stop signal came

    def received(self, drain_seconds: float, grace_seconds: float) -> None:
        """The first stop signal: start the clock and arm the watchdog (once)."""
        if self.received_at is not None:
            return
        self.received_at = time.monotonic()
        self.budget = drain_seconds + grace_seconds
        # Armed until the process ends: the interpreter's own exit can hang too (a thread
        # that never ends, gRPC's core shutting down).
        faulthandler.dump_traceback_later(self.budget + self.share, exit=True)

    def left(self, share: float) -> float:
        """Seconds until drain + grace + `share` after the first stop signal (none yet: the
        whole budget)."""
        start = self.received_at if self.received_at is not None else time.monotonic()
        return max(start + self.budget + share - time.monotonic(), 0.0)
