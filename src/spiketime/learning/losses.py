"""Losses on a readout trace ``y`` [T, B, C] and the matching class prediction.

* ``max``        cross-entropy on ``max_t y[t]`` (LI readout)
* ``mean``       cross-entropy on ``mean_t y[t]``
* ``last``       cross-entropy on ``y[T-1]``
* ``per_step``   mean over ``t`` of the cross-entropy of ``y[t]`` (the loss online rules need);
                 prediction from ``mean_t y[t]``
* ``spike_count`` cross-entropy on the output spike counts ``sum_t y[t]`` ("spikemax"; LIF readout)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spiketime.errors import TrainingDiverged  # noqa: F401  (raised by every learner; importable from here too)

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


REDUCTIONS = ("mean", "sum", "none")


def readout_loss(y: Tensor, target: Tensor, loss: str, reduction: str = "mean") -> Tensor:
    """Training loss of readout ``y`` [T, B, C] against class indices ``target`` [B].

    ``reduction``: ``mean`` (scalar, the mean over the batch), ``sum`` (scalar, the sum over the batch of the
    per-sample losses; 0 for an empty batch) or ``none`` (the per-sample losses [B]). For ``per_step`` a
    sample's loss is its cross-entropy averaged over ``t``, so ``mean`` equals ``sum / B``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if loss == "per_step":
        t, b, c = y.shape
        if reduction == "mean":
            return F.cross_entropy(y.reshape(t * b, c), target.repeat(t))
        per_sample = F.cross_entropy(y.reshape(t * b, c), target.repeat(t), reduction="none").reshape(t, b).mean(0)
        return per_sample.sum() if reduction == "sum" else per_sample
    return F.cross_entropy(class_scores(y, loss), target, reduction=reduction)


def spike_rate(spikes: list[Tensor], reduction: str = "mean") -> Tensor:
    """The gain loss before its weight: ``sum_l mean_{t, n} s_l[t, b, n]`` per sample ``b`` over the hidden spike
    trains ``s_l`` [T, B, N_l], then ``mean`` / ``sum`` over the batch (``none``: [B]); 0 without spikes.

    ``train.gain_weight * spike_rate(spikes)`` is added to the training loss of ``model.type: gamma``; its
    gradient is that of the spikes (straight-through for :class:`~spiketime.nn.gamma.GammaNetwork`)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    per_sample = sum(s.mean(dim=(0, *range(2, s.dim()))) for s in spikes if s.numel())
    if not torch.is_tensor(per_sample):  # no hidden spikes at all
        return torch.zeros(())
    if reduction == "none":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()
