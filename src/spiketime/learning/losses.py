"""Losses on a readout trace ``y`` [T, B, C] and the matching class prediction.

* ``max``        cross-entropy on ``max_t y[t]`` (LI readout)
* ``mean``       cross-entropy on ``mean_t y[t]``
* ``last``       cross-entropy on ``y[T-1]``
* ``per_step``   mean over ``t`` of the cross-entropy of ``y[t]`` (the loss online rules need);
                 prediction from ``mean_t y[t]``
* ``spike_count`` cross-entropy on the output spike counts ``sum_t y[t]`` ("spikemax"; LIF readout)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

LOSSES = ("max", "mean", "last", "per_step", "spike_count")


def class_scores(y: Tensor, loss: str) -> Tensor:
    """Per-class scores [B, C] whose argmax is the prediction under ``loss``."""
    if loss == "max":
        return y.max(dim=0).values
    if loss in ("mean", "per_step"):
        return y.mean(dim=0)
    if loss == "last":
        return y[-1]
    if loss == "spike_count":
        return y.sum(dim=0)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def readout_loss(y: Tensor, target: Tensor, loss: str) -> Tensor:
    """Scalar training loss of readout ``y`` [T, B, C] against class indices ``target`` [B]."""
    if loss == "per_step":
        t, b, c = y.shape
        return F.cross_entropy(y.reshape(t * b, c), target.repeat(t))
    return F.cross_entropy(class_scores(y, loss), target)
