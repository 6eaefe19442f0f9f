"""Progress on stderr: tqdm bars, one-line stage messages and the batch loop of a training epoch.

Everything here takes ``enabled``: when it is False nothing is printed (a disabled tqdm bar is a no-op that
still counts), so callers never branch on it. :func:`progress_bar` is the one place bars are made; the inner bars
(batches of an epoch, of an evaluation) are made with ``leave=False`` and vanish when done, under the
epoch bar that stays.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from spiketime.errors import TrainingDiverged

__all__ = ["EpochMonitor", "progress_bar", "n_batches", "status"]

T = TypeVar("T")
REFRESH_S = 1.0  # the longest a running bar stays still while a long batch or sequence is being processed


def progress_bar(
    enabled: bool,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    *,
    leave: bool = True,
    iterable: Iterable[Any] | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr (``desc``, ``total`` steps of ``unit``), or a silent no-op bar when not ``enabled``.
    ``iterable`` is wrapped like ``tqdm(iterable)``; other keyword arguments go to tqdm."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        **kwargs,
    )


def status(enabled: bool, message: str) -> None:
    """One line ``message`` on stderr (through tqdm, so that a running bar is redrawn below it)."""
    if enabled:
        tqdm.write(message, file=sys.stderr)


def n_batches(n: int, batch_size: int) -> int:
    """How many batches of at most ``batch_size`` cover ``n`` samples."""
    return math.ceil(n / batch_size)


class EpochMonitor:
    """The batch loop of one training epoch, for every learner: the inner bar (batches done / total, rate, ETA,
    running mean loss) and the divergence check.

    ``over(batches)`` yields the batches and numbers them (:attr:`batch`, 1-based); a learner calls
    :meth:`check` with a batch's loss before the optimiser steps with its gradient (raises
    :class:`~spiketime.errors.TrainingDiverged` when it is nan or inf), :meth:`step` inside a long
    batch (the bar shows ``step k/T`` at most every ``REFRESH_S`` seconds) and :meth:`done` when the batch
    is learnt."""

    def __init__(self, enabled: bool, epoch: int, batches: int, desc: str = "train") -> None:
        """``epoch``: the 1-based epoch number; ``batches``: how many batches it has."""
        self.epoch, self.batches, self.batch = epoch, batches, 0
        self.bar = progress_bar(enabled, desc, batches, "batch", leave=False)
        self._loss, self._samples, self._shown = 0.0, 0, time.monotonic()

    def over(self, batches: Iterable[T]) -> Iterator[T]:
        """Yield ``batches``, counting them; the bar is closed at the end, or when the loop is left early
        (once this generator is closed)."""
        try:
            for self.batch, item in enumerate(batches, 1):
                yield item
        finally:
            self.bar.close()

    def check(self, value: Any) -> float:
        """``value`` (a number or a 0-d tensor: the current batch's loss) as a float; raises
        :class:`~spiketime.errors.TrainingDiverged` naming this epoch and batch when it is not finite."""
        value = float(value)
        if not math.isfinite(value):
            raise TrainingDiverged(value, self.epoch, self.batch, self.batches)
        return value

    def step(self, done: int, steps: int) -> None:
        """Inside the current batch: ``done`` of its ``steps`` time steps are through (redraws now and then)."""
        if self.bar.disable:
            return
        now = time.monotonic()
        if now - self._shown >= REFRESH_S:
            self._shown = now
            self.bar.set_postfix_str(f"{self._postfix()}step {done}/{steps}")

    def done(self, loss_sum: float, samples: int) -> None:
        """The current batch is learnt: ``loss_sum`` (summed over its ``samples``) enters the running loss."""
        self._loss += loss_sum
        self._samples += samples
        self.bar.set_postfix_str(self._postfix().rstrip(", "), refresh=False)
        self.bar.update(1)
        self._shown = time.monotonic()

    def _postfix(self) -> str:
        return f"loss={self._loss / self._samples:.3f}, " if self._samples else ""
