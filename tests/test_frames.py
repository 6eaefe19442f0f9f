"""Binning events into [N, T, C] counts + [N, T] mask, checked against a plain per-event loop."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest

from spiketime.data import frames
from spiketime.data.formats import EVENTS_1D, EVENTS_2D
from spiketime.data.frames import bin_events, frames_channels


def naive(events, sensor_size, dt_ms, duration_ms, channels=None, pool=1):
    """One event at a time, exact rational bin edges."""
    dt_us = Fraction(str(dt_ms)) * 1000
    if duration_ms is None:
        t_bins = max((int(Fraction(int(e["t"].max())) / dt_us) + 1 for e in events if len(e)), default=1)
    else:
        t_bins = math.ceil(Fraction(str(duration_ms)) / Fraction(str(dt_ms)))
    if len(sensor_size) == 1:
        n_ch = channels or sensor_size[0]
        group = sensor_size[0] // n_ch
    else:
        w, h, pol = sensor_size
        wp, hp = -(-w // pool), -(-h // pool)
        n_ch = pol * wp * hp
    x = np.zeros((len(events), t_bins, n_ch), dtype=np.int64)
    mask = np.zeros((len(events), t_bins), dtype=bool)
    for i, ev in enumerate(events):
        last = 0
        for e in ev:
            b = int(Fraction(int(e["t"])) / dt_us)  # floor (t >= 0)
            last = max(last, b)
            if b >= t_bins:
                continue
            if len(sensor_size) == 1:
                c = int(e["x"]) // group
            else:
                c = (int(e["p"]) * hp + int(e["y"]) // pool) * wp + int(e["x"]) // pool
            x[i, b, c] += 1
        mask[i, : min(last, t_bins - 1) + 1] = True
    return np.minimum(x, 255).astype(np.uint8), mask


def events_1d(rng, n, n_ch=700, t_max=1_000_000, k=(0, 300)):
    out = []
    for _ in range(n):
        m = int(rng.integers(*k))
        e = np.empty(m, dtype=EVENTS_1D)
        e["t"] = np.sort(rng.integers(0, t_max, m))
        e["x"] = rng.integers(0, n_ch, m)
        e["p"] = 1
        out.append(e)
    return out


def events_2d(rng, n, w=34, h=34, t_max=300_000, k=(0, 300)):
    out = []
    for _ in range(n):
        m = int(rng.integers(*k))
        e = np.empty(m, dtype=EVENTS_2D)
        e["t"] = rng.integers(0, t_max, m)  # unsorted on purpose
        e["x"] = rng.integers(0, w, m)
        e["y"] = rng.integers(0, h, m)
        e["p"] = rng.integers(0, 2, m)
        out.append(e)
    return out


@pytest.mark.parametrize(
    "dt,duration,channels",
    [
        (10.0, 1000.0, None),
        (5.0, 300.0, 140),
        (1.0, 50.0, 700),
        (20.0, None, 35),
        (7.0, 1000.0, 1),
        (0.5, 20.0, 100),
        (1.1, 30.0, 140),
        (33.3, 400.0, 70),
    ],
)
def test_1d_matches_loop(dt, duration, channels) -> None:
    rng = np.random.default_rng(int(dt * 10))
    evs = events_1d(rng, 25)
    evs.append(np.zeros(0, dtype=EVENTS_1D))  # an empty sample
    x, mask = bin_events(evs, (700,), dt_ms=dt, duration_ms=duration, channels=channels)
    ref_x, ref_mask = naive(evs, (700,), dt, duration, channels)
    assert x.dtype == np.uint8 and mask.dtype == bool
    assert x.shape == ref_x.shape and x.shape[2] == frames_channels((700,), channels)
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask[-1].tolist() == [True] + [False] * (x.shape[1] - 1)  # empty sample: one bin


@pytest.mark.parametrize("pool", [1, 2, 4, 5, 34])
def test_2d_pool_matches_loop(pool) -> None:
    rng = np.random.default_rng(pool)
    evs = events_2d(rng, 20)
    x, mask = bin_events(evs, (34, 34, 2), dt_ms=10.0, duration_ms=200.0, pool=pool)
    ref_x, ref_mask = naive(evs, (34, 34, 2), 10.0, 200.0, pool=pool)
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(mask, ref_mask)
    assert x.shape[2] == frames_channels((34, 34, 2), None, pool) == 2 * math.ceil(34 / pool) ** 2


def test_2d_channel_order_is_p_y_x() -> None:
    e = np.zeros(1, dtype=EVENTS_2D)
    e["t"], e["x"], e["y"], e["p"] = 2500, 3, 5, 1
    x, mask = bin_events([e], (34, 34, 2), dt_ms=1.0, duration_ms=5.0)
    assert np.flatnonzero(x[0, 2]).tolist() == [(1 * 34 + 5) * 34 + 3] and x.sum() == 1
    assert mask.tolist() == [[True, True, True, False, False]]
    x, _ = bin_events([e], (128, 128, 2), dt_ms=1.0, duration_ms=5.0, pool=4)
    assert np.flatnonzero(x[0, 2]).tolist() == [(1 * 32 + 1) * 32 + 0]


def test_sparse_and_dense_paths_agree_with_loop() -> None:
    """Few events over many cells (sort path) and many events over few cells (bincount path)."""
    rng = np.random.default_rng(7)
    sparse = events_2d(rng, 6, 128, 128, 2_000_000, k=(1, 400))
    x, mask = bin_events(sparse, (128, 128, 2), dt_ms=50.0, duration_ms=1500.0)
    ref = naive(sparse, (128, 128, 2), 50.0, 1500.0)
    np.testing.assert_array_equal(x, ref[0])
    np.testing.assert_array_equal(mask, ref[1])
    dense = events_1d(rng, 6, 700, 100_000, k=(5000, 6000))
    x, mask = bin_events(dense, (700,), dt_ms=25.0, duration_ms=80.0, channels=7)
    ref = naive(dense, (700,), 25.0, 80.0, 7)
    np.testing.assert_array_equal(x, ref[0])
    np.testing.assert_array_equal(mask, ref[1])


def test_counts_saturate_at_255() -> None:
    e = np.zeros(300, dtype=EVENTS_1D)
    e["t"] = np.arange(300)  # all in bin 0
    e["x"] = 4
    sparse_e = e[:10]
    x, _ = bin_events([e, sparse_e], (700,), dt_ms=1.0, duration_ms=3.0)
    assert x[0, 0, 4] == 255 and x[0].sum() == 255 and x[1, 0, 4] == 10
    x, _ = bin_events([e], (700,), dt_ms=1.0, duration_ms=1000.0)  # sort path too
    assert x[0, 0, 4] == 255


def test_duration_none_is_longest_sample_and_crop() -> None:
    a = np.zeros(2, dtype=EVENTS_1D)
    a["t"] = [0, 95_000]
    b = np.zeros(1, dtype=EVENTS_1D)
    b["t"] = [30_000]
    x, mask = bin_events([a, b], (700,), dt_ms=10.0, duration_ms=None)
    assert x.shape == (2, 10, 700)
    assert mask.sum(axis=1).tolist() == [10, 4]
    x, mask = bin_events([a, b], (700,), dt_ms=10.0, duration_ms=50.0)  # a's last event cropped
    assert x.shape == (2, 5, 700) and x[0].sum() == 1 and mask.sum(axis=1).tolist() == [5, 4]


def test_many_batches_match_one(monkeypatch) -> None:
    rng = np.random.default_rng(11)
    evs = events_1d(rng, 40, k=(0, 200))
    one = bin_events(evs, (700,), dt_ms=4.0, duration_ms=900.0, channels=140)
    monkeypatch.setattr(frames, "_BATCH_EVENTS", 150)
    many = bin_events(evs, (700,), dt_ms=4.0, duration_ms=900.0, channels=140)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])
    np.testing.assert_array_equal(one[0], naive(evs, (700,), 4.0, 900.0, 140)[0])


def test_bad_arguments() -> None:
    e = np.zeros(1, dtype=EVENTS_1D)
    with pytest.raises(ValueError, match="channels=3 must divide the sensor's 700 channels"):
        bin_events([e], (700,), dt_ms=1.0, duration_ms=10.0, channels=3)
    with pytest.raises(ValueError, match="pool=2 applies to 2-D sensors"):
        frames_channels((700,), None, 2)
    with pytest.raises(ValueError, match="applies to 1-D sensors"):
        frames_channels((34, 34, 2), 10, 1)
    with pytest.raises(ValueError, match="dt must be > 0"):
        bin_events([e], (700,), dt_ms=0.0, duration_ms=10.0)
    bad = np.zeros(1, dtype=EVENTS_1D)
    bad["x"] = 700
    with pytest.raises(ValueError, match="outside the sensor"):
        bin_events([bad], (700,), dt_ms=1.0, duration_ms=10.0)
    bad = np.zeros(1, dtype=EVENTS_1D)
    bad["t"] = -1
    with pytest.raises(ValueError, match="before its start"):
        bin_events([bad], (700,), dt_ms=1.0, duration_ms=10.0)
    cam = np.zeros(1, dtype=EVENTS_2D)
    cam["y"] = 34
    with pytest.raises(ValueError, match="outside the 34x34x2 sensor"):
        bin_events([cam], (34, 34, 2), dt_ms=1.0, duration_ms=10.0)


def test_frames_channels() -> None:
    assert frames_channels((700,)) == 700 and frames_channels((700,), 140) == 140
    assert frames_channels((34, 34, 2)) == 2312 and frames_channels((34, 34, 2), pool=4) == 2 * 9 * 9
    assert frames_channels((128, 128, 2), pool=2) == 2 * 64 * 64


def test_speed_shd_like() -> None:
    """3000 SHD-like samples (~3M events) in well under the time a loop would need (full size: see report)."""
    rng = np.random.default_rng(0)
    evs = events_1d(rng, 3000, k=(500, 1500))
    t0 = time.perf_counter()
    x, mask = bin_events(evs, (700,), dt_ms=4.0, duration_ms=1000.0, channels=140)
    assert time.perf_counter() - t0 < 5.0
    assert int(x.sum(dtype=np.int64)) == sum(len(e) for e in evs) and mask.any()
