"""Synthetic timing tasks (ISI / CCISI / coincidence) and the spike-count baseline that checks their honesty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spiketime.data.timing import DEFAULTS, TASKS, VARIANTS, codebook, generate
from spiketime.learning.baseline import count_baseline, count_features

PATTERN_SPIKES = {"isi": 3, "ccisi": 1, "coincidence": 3}


def _gen(task, variant, **kw):
    args = dict(DEFAULTS)
    args.update(kw)
    return generate(task, variant, **args)


# ----------------------------------------------------------------------------------------------------------------------
# shapes, determinism, balance


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("duration,dt,T", [(150.0, 1.0, 150), (120.0, 0.5, 240), (101.0, 2.0, 50)])
def test_shapes_dtypes_values(task, variant, duration, dt, T):
    x, y = _gen(task, variant, n_samples=37, channels=9, duration=duration, dt=dt, num_classes=4, seed=3)
    assert x.shape == (37, T, 9) and x.dtype == torch.float32
    assert y.shape == (37,) and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    assert int(y.min()) >= 0 and int(y.max()) < 4
    # every channel carries at least its pattern spikes
    assert int(count_features(x).min()) >= PATTERN_SPIKES[task]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_from_seed(task, variant):
    x1, y1 = _gen(task, variant, n_samples=50, seed=11)
    x2, y2 = _gen(task, variant, n_samples=50, seed=11)
    x3, y3 = _gen(task, variant, n_samples=50, seed=12)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert not torch.equal(y1, y3)


@pytest.mark.parametrize("task", TASKS)
def test_balanced_shuffled_labels(task):
    _, y = _gen(task, "timing", n_samples=100, num_classes=5, seed=0)
    assert torch.bincount(y, minlength=5).tolist() == [20] * 5
    assert not torch.equal(y, torch.arange(100) % 5)  # shuffled
    _, y = _gen(task, "timing", n_samples=103, num_classes=5, seed=0)
    counts = torch.bincount(y, minlength=5)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 103


# ----------------------------------------------------------------------------------------------------------------------
# the timing code is there, and counts are class-independent in the timing variant


@pytest.mark.parametrize("task", TASKS)
def test_timing_variant_pattern_counts_exact(task):
    """Without noise every channel of every sample has exactly the task's number of pattern spikes (even with jitter)."""
    x, y = _gen(task, "timing", n_samples=400, noise=0.0, jitter=2.0, seed=5)
    counts = count_features(x)
    assert torch.equal(counts, torch.full_like(counts, PATTERN_SPIKES[task]))
    # ...whereas the rate variant's counts depend on the class (per-class mean counts differ by spikes, not decimals)
    xr, yr = _gen(task, "rate", n_samples=400, noise=0.0, jitter=2.0, seed=5)
    cr = count_features(xr)
    means = torch.stack([cr[yr == c].mean(0) for c in range(DEFAULTS["num_classes"])])
    assert float((means.max(0).values - means.min(0).values).max()) > 3.0


def _max_class_z(x, y, num_classes):
    """Largest |z| of a per-class mean count per channel against the pooled mean (sampling-error units)."""
    f = count_features(x).double()
    mu, sd = f.mean(0), f.std(0)
    z = [((f[y == c].mean(0) - mu) / (sd / (y == c).sum().sqrt())).abs().max() for c in range(num_classes)]
    return float(torch.stack(z).max())


@pytest.mark.parametrize("task", TASKS)
def test_timing_variant_count_distribution_class_independent(task):
    """With noise, per-class mean counts per channel agree within sampling error (80 z-scores, all < 4.5)."""
    kw = dict(n_samples=3000, noise=20.0, seed=8)
    x, y = _gen(task, "timing", **kw)
    f = count_features(x)
    assert float(f.std(0).min()) > 0.5  # the noise really varies the counts
    assert _max_class_z(x, y, DEFAULTS["num_classes"]) < 4.5
    xr, yr = _gen(task, "rate", **kw)
    assert _max_class_z(xr, yr, DEFAULTS["num_classes"]) > 10.0


def test_timing_code_exact_without_noise():
    """noise = jitter = 0: the intervals / lags / synchronous groups are exactly the documented class code."""
    C, K = 10, 4
    for dt in (1.0, 0.5):
        x, y = generate(
            "isi",
            "timing",
            n_samples=60,
            channels=C,
            duration=150.0,
            dt=dt,
            num_classes=K,
            noise=0.0,
            jitter=0.0,
            seed=1,
        )
        cb = codebook("isi", channels=C, num_classes=K, dt=dt)
        for n in range(60):
            for i in range(C):
                t = torch.nonzero(x[n, :, i])[:, 0].double() * dt
                assert torch.allclose(torch.diff(t), torch.full((2,), float(cb[y[n], i]), dtype=torch.float64))

    x, y = generate(
        "ccisi",
        "timing",
        n_samples=60,
        channels=C + 1,
        duration=150.0,
        dt=1.0,
        num_classes=K,
        noise=0.0,
        jitter=0.0,
        seed=1,
    )
    cb = codebook("ccisi", channels=C + 1, num_classes=K)
    assert cb.shape == (K, C // 2) and cb.max() >= 16.0  # lags of tens of ms at K = 4
    t = x.argmax(1).double()  # one spike per channel
    assert torch.equal(t[:, 1:C:2] - t[:, 0:C:2], torch.as_tensor(cb)[y])

    x, y = generate(
        "coincidence",
        "timing",
        n_samples=60,
        channels=C,
        duration=150.0,
        dt=1.0,
        num_classes=K,
        noise=0.0,
        jitter=0.0,
        seed=1,
    )
    groups = codebook("coincidence", channels=C, num_classes=K)
    assert len({tuple(g) for g in groups}) == K and (groups.sum(1) == max(2, C // 4)).all()
    for n in range(60):
        g = np.nonzero(groups[y[n]])[0]
        trains = x[n][:, g].T
        assert torch.equal(trains, trains[:1].expand_as(trains))  # the group fires together


def _window(a, tol=1):
    out = a.clone()
    for e in range(1, tol + 1):
        out[:, e:] += a[:, :-e]
        out[:, :-e] += a[:, e:]
    return out


def _lag_matches(a, b, lag):
    """Per sample: number of spikes of ``a`` [N, T] followed by a spike of ``b`` ``lag`` bins later (+-1 bin)."""
    bw = _window(b)
    return (a[:, : a.shape[1] - lag] * bw[:, lag:]).sum(1)


def _oracle_predict(task, x, num_classes, channels, dt):
    """Matched filter that knows the class code: reads timing only (counts are class-independent)."""
    cb = codebook(task, channels=channels, num_classes=num_classes, dt=dt)
    score = torch.zeros(len(x), num_classes)
    for c in range(num_classes):
        if task == "isi":
            for i in range(channels):
                score[:, c] += _lag_matches(x[:, :, i], x[:, :, i], int(round(cb[c, i] / dt)))
        elif task == "ccisi":
            for p in range(channels // 2):
                score[:, c] += _lag_matches(x[:, :, 2 * p], x[:, :, 2 * p + 1], int(round(cb[c, p] / dt)))
        else:
            g = np.nonzero(cb[c])[0]
            for j, a in enumerate(g):
                for b in g[j + 1 :]:
                    score[:, c] += _lag_matches(x[:, :, a], x[:, :, b], 0)
    return score.argmax(1)


@pytest.mark.parametrize("task", TASKS)
def test_timing_variant_is_learnable(task):
    """A timing-only matched filter reads the default timing variant with >= 90% accuracy (signal above noise)."""
    x, y = _gen(task, "timing", n_samples=500, seed=21)
    acc = float(
        (_oracle_predict(task, x, DEFAULTS["num_classes"], DEFAULTS["channels"], DEFAULTS["dt"]) == y).double().mean()
    )
    assert acc >= 0.9, acc


# ----------------------------------------------------------------------------------------------------------------------
# honesty: a spike-count classifier is at chance on the timing variant and far above it on the rate variant

CONFIGS = {
    "default": dict(DEFAULTS),
    # odd channel count, more classes, longer trials, more noise and jitter
    "other": dict(DEFAULTS, channels=11, num_classes=8, duration=200.0, noise=10.0, jitter=2.0),
}


def _splits(task, variant, cfg):
    return tuple(
        generate(task, variant, **dict(cfg, n_samples=n, seed=s)) for n, s in ((2000, 101), (1000, 202), (2000, 303))
    )


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("task", TASKS)
def test_count_baseline_honesty(task, config):
    cfg = CONFIGS[config]
    chance = 1.0 / cfg["num_classes"]
    timing = count_baseline(*_splits(task, "timing", cfg))
    rate = count_baseline(*_splits(task, "rate", cfg))
    assert timing["test_accuracy"] <= chance + 0.05, timing
    assert rate["test_accuracy"] >= chance + 0.30, rate


# ----------------------------------------------------------------------------------------------------------------------
# baseline mechanics


def test_count_features():
    x = torch.zeros(2, 5, 3)
    x[0, [0, 2, 4], 1] = 1
    x[1, :, 2] = 1
    assert torch.equal(count_features(x), torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 5.0]]))
    with pytest.raises(ValueError, match="x"):
        count_features(torch.zeros(5, 3))


def test_count_baseline_reads_counts_and_never_selects_on_test():
    g = torch.Generator().manual_seed(0)

    def split(n):  # class c raises the rate of channel c
        y = torch.arange(n) % 3
        p = torch.full((n, 50, 4), 0.1)
        p[torch.arange(n), :, y] = 0.3
        return torch.bernoulli(p, generator=g), y

    train, val, test = split(300), split(300), split(600)
    r = count_baseline(train, val, test)
    assert set(r) == {"train_accuracy", "val_accuracy", "test_accuracy", "l2"}
    assert r["test_accuracy"] > 0.9 and r["val_accuracy"] > 0.9
    # scrambling the test labels changes only the test accuracy: no selection uses the test split
    r2 = count_baseline(train, val, (test[0], test[1][torch.randperm(600, generator=g)]))
    assert r2["l2"] == r["l2"] and r2["val_accuracy"] == r["val_accuracy"]
    assert r2["train_accuracy"] == r["train_accuracy"]
    assert r2["test_accuracy"] < 0.5


# ----------------------------------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "task,variant,kw,name",
    [
        ("bogus", "timing", {}, "task"),
        ("isi", "bogus", {}, "variant"),
        ("isi", "timing", dict(n_samples=0), "n_samples"),
        ("isi", "timing", dict(n_samples=2.5), "n_samples"),
        ("isi", "timing", dict(channels=0), "channels"),
        ("ccisi", "timing", dict(channels=1), "channels"),
        ("coincidence", "timing", dict(channels=2), "channels"),
        ("isi", "timing", dict(duration=0.0), "duration"),
        ("isi", "timing", dict(duration=-5.0), "duration"),
        ("isi", "timing", dict(duration=float("nan")), "duration"),
        ("isi", "timing", dict(dt=0.0), "dt"),
        ("isi", "timing", dict(dt=-1.0), "dt"),
        ("isi", "timing", dict(num_classes=1), "num_classes"),
        ("isi", "timing", dict(num_classes=20), "num_classes"),  # 2 intervals of 80 ms do not fit in 150 ms
        ("ccisi", "timing", dict(num_classes=40), "num_classes"),  # lags of 160 ms do not fit
        ("coincidence", "timing", dict(channels=6, num_classes=7), "num_classes"),  # more classes than channels
        ("isi", "timing", dict(duration=10.0), "duration"),
        ("isi", "timing", dict(noise=-1.0), "noise"),
        ("isi", "timing", dict(noise=1000.0), "noise"),  # > 0.5 spike per 1 ms bin
        ("isi", "timing", dict(jitter=-0.1), "jitter"),
        ("isi", "timing", dict(seed=-1), "seed"),
        ("isi", "timing", dict(seed=1.5), "seed"),
    ],
)
def test_bad_arguments(task, variant, kw, name):
    with pytest.raises(ValueError, match=name) as e:
        _gen(task, variant, **kw)
    assert "\n" not in str(e.value)
