"""Rate normalisation of a labelled spike dataset: Whole, Part, Norm (METHODS.md section 2).

Spikes are only ever *deleted*, never added or moved, so the timing of what is left is real.

For every channel ``c`` and class ``k`` let ``Q_k(u)`` be the empirical quantile function of the per-sample spike
count ``n_ic`` over the samples of class ``k``. A sample of class ``k`` whose count has within-class rank ``r``
(ties broken at random) sits at ``u = (r + 1/2) / N_k`` and is given the target count

    m_ic = min_k' Q_k'(u)          (Norm)        <= Q_k(u) = n_ic,

i.e. every class is mapped onto the pointwise lowest quantile function, so after deletion the count distribution
of every channel is *the same for every class*: a classifier on per-channel counts is at chance. ``Part`` deletes
half of what Norm deletes, ``m = n - floor((n - m_norm) / 2)``; ``Whole`` leaves the data unchanged. The spikes
removed from a channel are drawn uniformly at random among that channel's spikes in the sample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

RATE_NORMS = ("whole", "part", "norm")


def target_counts(
    counts: np.ndarray, labels: np.ndarray, level: Literal["whole", "part", "norm"], rng: np.random.Generator
) -> np.ndarray:
    """Per-sample, per-channel spike counts to keep, ``[N, C]`` (see the module docstring)."""
    if level not in RATE_NORMS:
        raise ValueError(f"rate_norm must be one of {', '.join(RATE_NORMS)}, got {level!r}")
    counts = np.asarray(counts, dtype=np.int64)
    if level == "whole":
        return counts.copy()
    n, c = counts.shape
    classes = np.unique(labels)
    u = np.empty((n, c))
    sorted_by_class = {}
    for k in classes:
        idx = np.flatnonzero(labels == k)
        ck = counts[idx]
        # Within-class rank per channel, ties broken at random: sort by (count, random key).
        order = np.lexsort((rng.random(ck.shape), ck), axis=0)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(len(idx))[:, None].repeat(c, 1), axis=0)
        u[idx] = (ranks + 0.5) / len(idx)
        sorted_by_class[k] = np.sort(ck, axis=0)
    lowest = np.full((n, c), np.iinfo(np.int64).max)
    cols = np.arange(c)[None, :]
    for s in sorted_by_class.values():
        pos = np.minimum((u * len(s)).astype(np.int64), len(s) - 1)
        lowest = np.minimum(lowest, s[pos, cols])
    if level == "norm":
        return lowest
    return counts - (counts - lowest) // 2


def delete_to_counts(x: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Delete spikes from binned counts ``x`` ``[N, T, C]`` so that channel ``c`` of sample ``i`` keeps
    ``keep[i, c]`` of its spikes, chosen uniformly at random among them."""
    out = np.zeros_like(x)
    for i in range(len(x)):
        t_idx, c_idx = np.nonzero(x[i])
        if len(t_idx) == 0:
            continue
        reps = x[i, t_idx, c_idx].astype(np.int64)
        t_s, c_s = np.repeat(t_idx, reps), np.repeat(c_idx, reps)
        order = np.lexsort((rng.random(len(c_s)), c_s))  # grouped by channel, random order inside
        c_sorted = c_s[order]
        start = np.searchsorted(c_sorted, c_sorted, side="left")
        rank = np.arange(len(c_sorted)) - start
        kept = order[rank < keep[i, c_sorted]]
        np.add.at(out[i], (t_s[kept], c_s[kept]), 1)
    return out


def rate_normalise(
    x: Tensor | np.ndarray, y: Tensor | np.ndarray, level: Literal["whole", "part", "norm"], seed: int = 0
) -> Tensor:
    """Whole / Part / Norm version of binned spike counts ``x`` ``[N, T, C]`` with labels ``y`` ``[N]``."""
    xa = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    ya = y.numpy() if isinstance(y, Tensor) else np.asarray(y)
    if xa.ndim != 3 or ya.shape != (len(xa),):
        raise ValueError(f"expected x [N, T, C] and y [N], got {xa.shape} and {ya.shape}")
    if level == "whole":
        return torch.as_tensor(xa)
    if np.any(xa < 0) or np.any(xa != np.round(xa)):
        raise ValueError("rate normalisation needs spike counts (non-negative integers) in x")
    rng = np.random.default_rng(seed)
    keep = target_counts(xa.sum(axis=1), ya, level, rng)
    return torch.as_tensor(delete_to_counts(xa, keep, rng))
