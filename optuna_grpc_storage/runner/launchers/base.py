"""What a launcher is: something that starts the workers of a batch somewhere."""

from __future__ import annotations

import abc

from optuna_grpc_storage.runner.batch import Batch


class Launch(abc.ABC):
    """The workers started for one batch, as far as the launcher can tell."""

    @abc.abstractmethod
    def alive(self) -> bool | None:
        """True while a worker may still run, False when all have exited, None if unknown."""

    def explain(self) -> str:
        """Where to look when the workers misbehave (logs, the Job's name)."""
        return ""

    def stop(self) -> None:  # noqa: B027  (optional: not every launcher can stop its workers)
        """Stop the workers, if the launcher can."""


class Launcher(abc.ABC):
    """Starts `python -m optuna_grpc_storage.runner.worker` for a batch: `batch.workers` at once,
    until the batch's trials are done."""

    def check(self, batch: Batch) -> None:  # noqa: B027  (most launchers accept any batch)
        """Raise ValueError if this launcher cannot run the batch: called before the trials
        are created, so a refused batch leaves nothing behind."""

    @abc.abstractmethod
    def launch(self, batch: Batch) -> Launch:
        """Start the workers and return at once."""
