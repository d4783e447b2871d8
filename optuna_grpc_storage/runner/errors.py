"""What waiting for a batch raises.

Each derives from both the exception AIAuto's client raises in that case and the one this
package raised before, so existing `except` clauses of either kind keep working.
"""

from __future__ import annotations


class BatchFailedError(RuntimeError, ValueError):
    """A batch can no longer finish (its launch failed, or every worker exited with trials
    left): the message says why and where the workers' logs are. AIAuto raises ValueError
    here; `wait()` raised RuntimeError."""

    def __init__(self, trialbatch_name: str, reason: str) -> None:
        super().__init__(f"trial batch {trialbatch_name!r} failed: {reason}")
        self.trialbatch_name = trialbatch_name
        self.reason = reason


class WaitTimeoutError(TimeoutError, RuntimeError):
    """The wait's timeout passed; the batch goes on running. AIAuto raises RuntimeError here;
    `wait()` raised TimeoutError."""
