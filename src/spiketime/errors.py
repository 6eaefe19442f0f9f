"""The library's two errors: bad input (one line naming the tensor, argument or file) and a diverged loss.

The application (:mod:`spiketime.app`) reports both as one line and exit status 2; its
:class:`~spiketime.app.config.ConfigError` is the same class as :class:`InputError`, so a library error and a
bad config key are caught alike.
"""

from __future__ import annotations

__all__ = ["InputError", "TrainingDiverged", "first_line"]


class InputError(ValueError):
    """Bad input to a library call: a value, shape, file or combination the call cannot use (message: one
    line naming the argument, tensor or file and what was expected)."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message ("" for none): what a one-line error report shows of it."""
    return (str(error).strip().splitlines() or [""])[0]


class TrainingDiverged(FloatingPointError):
    """A training loss became nan or inf: ``value``, in 1-based ``epoch`` and (when known) ``batch`` of
    ``batches``. Every learner raises it before the optimiser steps with that batch's gradient."""

    def __init__(
        self,
        value: float,
        epoch: int,
        batch: int | None = None,
        batches: int | None = None,
        hint: str = "lower the learning rate",
    ) -> None:
        where = f"epoch {epoch}" if batch is None else f"epoch {epoch}, batch {batch} of {batches}"
        super().__init__(f"training loss became {value} in {where}; {hint}")
        self.value, self.epoch, self.batch, self.batches, self.hint = value, epoch, batch, batches, hint

    def with_hint(self, hint: str) -> TrainingDiverged:
        """The same error with another advice (the application names its config key: ``lower train.lr``)."""
        return TrainingDiverged(self.value, self.epoch, self.batch, self.batches, hint)

    def __reduce__(self) -> tuple:  # picklable (sweep workers, torchrun ranks) with its attributes
        return type(self), (self.value, self.epoch, self.batch, self.batches, self.hint)
