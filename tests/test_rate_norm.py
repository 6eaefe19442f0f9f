"""Whole / Part / Norm rate normalisation: only deletions, exact per-class count matching, count baseline at chance."""

import numpy as np
import pytest
import torch

from spiketime.data.rate_norm import delete_to_counts, rate_normalise, target_counts
from spiketime.learning.baseline import count_baseline


def _rate_coded(n, seed, classes=4, channels=12, steps=60):
    """Class k fires channels with index % classes == k at a 4x higher rate: counts alone give the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    rates = 0.02 + 0.06 * (np.arange(channels)[None, :] % classes == y[:, None])
    x = (rng.random((n, steps, channels)) < rates[:, None, :]).astype(np.uint8)
    return x, y


def test_norm_only_deletes_and_equalises_class_count_distributions():
    x, y = _rate_coded(800, 0)
    xn = rate_normalise(x, y, "norm", seed=1).numpy()
    assert xn.dtype == x.dtype and xn.shape == x.shape
    assert (xn <= x).all()  # spikes are only deleted, never moved or added
    counts = xn.sum(1)
    # every class now has the same sorted per-channel counts at matching quantiles
    for c in range(x.shape[2]):
        q = [np.quantile(counts[y == k, c], [0.25, 0.5, 0.75], method="lower") for k in range(4)]
        assert all(np.array_equal(q[0], qk) for qk in q[1:]), c
    # the kept spikes sit where spikes were (subset in every bin)
    assert np.all((xn > 0) <= (x > 0))


def test_part_lies_between_whole_and_norm():
    x, y = _rate_coded(400, 2)
    rng = np.random.default_rng(0)
    n = x.sum(1)
    whole = target_counts(n, y, "whole", rng)
    norm = target_counts(n, y, "norm", np.random.default_rng(0))
    part = target_counts(n, y, "part", np.random.default_rng(0))
    assert np.array_equal(whole, n)
    assert (norm <= part).all() and (part <= whole).all()
    assert norm.sum() < part.sum() < whole.sum()


def test_delete_to_counts_hits_the_targets_exactly():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (5, 20, 4)).astype(np.uint8)
    keep = (x.sum(1) * rng.random((5, 4))).astype(np.int64)
    out = delete_to_counts(x, keep, rng)
    assert np.array_equal(out.sum(1), keep) and (out <= x).all()


def test_count_baseline_falls_to_chance_on_norm():
    splits = [_rate_coded(n, s) for n, s in ((1500, 10), (300, 11), (600, 12))]
    acc = {}
    for level in ("whole", "norm"):
        sets = [(rate_normalise(x, y, level, seed=i), torch.as_tensor(y)) for i, (x, y) in enumerate(splits)]
        acc[level] = count_baseline(*sets)["test_accuracy"]
    assert acc["whole"] > 0.9
    assert acc["norm"] <= 0.25 + 0.05


def test_rate_norm_rejects_non_counts():
    with pytest.raises(ValueError, match="spike counts"):
        rate_normalise(np.full((2, 3, 1), 0.5), np.array([0, 1]), "norm")
    with pytest.raises(ValueError, match="rate_norm must be one of"):
        target_counts(np.ones((2, 1)), np.array([0, 1]), "half", np.random.default_rng(0))
