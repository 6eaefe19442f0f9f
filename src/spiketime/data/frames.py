"""Binning event streams into fixed-step frames: spike counts ``x[N, T, C]`` (uint8) and a validity mask ``[N, T]``.

Bin ``k`` of a sample holds its events with ``k * dt <= t < (k + 1) * dt`` (``t`` in µs from the sample's start);
events at or after ``T * dt`` are cropped, samples shorter than ``T`` bins are zero-padded.  Counts saturate at 255.

Channels:

* 1-D sensors (``sensor_size == (n,)``, e.g. SHD's 700): channel ``x``, or with ``channels=c`` (``c`` dividing
  ``n``) the sum over ``n // c`` neighbouring channels, ``x // (n // c)``.
* 2-D sensors (``sensor_size == (width, height, polarities)``, e.g. ``(34, 34, 2)``): with ``pool=k`` each
  ``k x k`` block of pixels is summed (blocks at the right/bottom edge may be partial, so ``ceil(width / k)`` by
  ``ceil(height / k)`` blocks), and the channel of an event is ``(p * H' + y // k) * W' + x // k`` with
  ``W' = ceil(width / k)``, ``H' = ceil(height / k)``: channels are the flattened ``(p, y, x)`` image.

``mask[i, k]`` is True for the bins up to and including the one holding sample ``i``'s last event (at least one
bin), within ``T``: the span where the sample still had signal; padding is False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_BATCH_EVENTS = 1 << 22  # events whose bin/channel indices are computed in one vectorised go
_I32 = np.iinfo(np.int32).max


def frames_channels(sensor_size: Sequence[int], channels: int | None = None, pool: int = 1) -> int:
    """Number of channels :func:`bin_events` produces for ``sensor_size`` with ``channels`` / ``pool``."""
    sensor_size = tuple(int(s) for s in sensor_size)
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    if len(sensor_size) == 1:
        n = sensor_size[0]
        if pool != 1:
            raise ValueError(f"pool={pool} applies to 2-D sensors; a 1-D sensor of {n} channels takes channels=")
        if channels is None:
            return n
        if channels < 1 or n % channels:
            raise ValueError(f"channels={channels} must divide the sensor's {n} channels evenly")
        return channels
    if len(sensor_size) in (2, 3):
        if channels is not None:
            raise ValueError(f"channels={channels} applies to 1-D sensors; a {sensor_size} camera takes pool=")
        w, h = sensor_size[:2]
        pol = sensor_size[2] if len(sensor_size) == 3 else 1
        return pol * math.ceil(h / pool) * math.ceil(w / pool)
    raise ValueError(f"sensor_size must be (n,) or (width, height[, polarities]), got {sensor_size}")


def _field(events: Sequence[np.ndarray], i: int, j: int, name: str) -> np.ndarray:
    return np.concatenate([events[k][name] for k in range(i, j)]) if j - i > 1 else np.asarray(events[i][name])


def _channel_index(
    events: Sequence[np.ndarray], i: int, j: int, sensor_size: tuple[int, ...], channels: int | None, pool: int
) -> np.ndarray:
    """Channel of every event of samples ``i..j-1`` (int32), checked against the sensor."""
    if len(sensor_size) == 1:
        n = sensor_size[0]
        x = _field(events, i, j, "x")
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"event channel {lo if lo < 0 else hi} outside the sensor's {n} channels")
        x = x.astype(np.int32)
        return x if channels is None else x // np.int32(n // channels)
    w, h = sensor_size[:2]
    pol = sensor_size[2] if len(sensor_size) == 3 else 1
    x, y = _field(events, i, j, "x"), _field(events, i, j, "y")
    p = _field(events, i, j, "p") if pol > 1 else np.zeros(1, np.int32)
    if x.min() < 0 or x.max() >= w or y.min() < 0 or y.max() >= h or p.min() < 0 or p.max() >= pol:
        raise ValueError(f"event outside the {w}x{h}x{pol} sensor")
    wp, hp = math.ceil(w / pool), math.ceil(h / pool)
    x, y, p = x.astype(np.int32), y.astype(np.int32), p.astype(np.int32)
    if pool > 1:
        x, y = x // np.int32(pool), y // np.int32(pool)
    return (p * np.int32(hp) + y) * np.int32(wp) + x


def _bins(t: np.ndarray, dt_us: float) -> np.ndarray:
    """``floor(t / dt_us)``, in int32 where exact (integer ``dt_us``, ``t < 2**31``)."""
    if float(dt_us).is_integer():
        if len(t) and 0 <= t.min() and t.max() <= _I32:
            return t.astype(np.int32) // np.int32(int(dt_us))
        return t // int(dt_us)
    return np.floor(t / dt_us).astype(np.int64)


def bin_events(
    events: Sequence[np.ndarray],
    sensor_size: Sequence[int],
    *,
    dt_ms: float,
    duration_ms: float | None,
    channels: int | None = None,
    pool: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Bin ``events`` (structured arrays with ``t`` in µs and ``x`` [, ``y``, ``p``]) into ``x`` uint8
    ``[N, T, C]`` counts and ``mask`` bool ``[N, T]`` (see the module docstring).

    ``T = ceil(duration_ms / dt_ms)``; ``duration_ms=None`` takes the longest sample.  ``channels`` downsamples a
    1-D sensor (must divide it), ``pool`` sum-pools a 2-D one; :func:`frames_channels` gives ``C``.  Vectorised over
    batches of up to 4M events; only the final tally runs per sample."""
    sensor_size = tuple(int(s) for s in sensor_size)
    if not dt_ms > 0:
        raise ValueError(f"dt must be > 0 ms, got {dt_ms}")
    if duration_ms is not None and not duration_ms > 0:
        raise ValueError(f"duration must be > 0 ms, got {duration_ms}")
    c = frames_channels(sensor_size, channels, pool)
    dt_us = round(dt_ms * 1000.0, 6)  # 1.1 ms -> 1100 µs exactly, not 1100.0000000000002
    n = len(events)
    counts = np.fromiter((len(e) for e in events), dtype=np.int64, count=n)
    batches = _batches(counts)
    t_first, t_last = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i, j in batches:  # first pass: each sample's first and last event time
        full = np.flatnonzero(counts[i:j])
        if len(full):
            t = _field(events, i, j, "t")
            starts = (np.cumsum(counts[i:j]) - counts[i:j])[full]
            t_first[i + full] = np.minimum.reduceat(t, starts)
            t_last[i + full] = np.maximum.reduceat(t, starts)
    if n and t_first.min() < 0:
        raise ValueError(f"sample {int(np.argmin(t_first))} has an event before its start (t < 0)")
    last_bin = _bins(t_last, dt_us).astype(np.int64)
    if duration_ms is None:
        n_bins = int(last_bin.max()) + 1 if n else 1
    else:
        n_bins = max(1, math.ceil(duration_ms / dt_ms - 1e-9))
    x = np.zeros((n, n_bins, c), dtype=np.uint8)
    mask = np.arange(n_bins)[None, :] <= np.minimum(last_bin, n_bins - 1)[:, None]
    for i, j in batches:
        if counts[i:j].any():
            crop = bool(last_bin[i:j].max() >= n_bins)
            _count_batch(x, events, counts, i, j, sensor_size, channels, pool, dt_us, crop)
    return x, mask


def _batches(counts: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive sample ranges ``[i, j)`` of at most ``_BATCH_EVENTS`` events (or one sample)."""
    out = []
    i, n = 0, len(counts)
    while i < n:
        j, total = i + 1, counts[i]
        while j < n and total + counts[j] <= _BATCH_EVENTS:
            total += counts[j]
            j += 1
        out.append((i, j))
        i = j
    return out


def _count_batch(
    x: np.ndarray,
    events: Sequence[np.ndarray],
    counts: np.ndarray,
    i: int,
    j: int,
    sensor_size: tuple[int, ...],
    channels: int | None,
    pool: int,
    dt_us: float,
    crop: bool,
) -> None:
    """Tally the events of samples ``i..j-1`` into ``x[i:j]``.  Cropped events (bin >= T) go to a dump row ``T``."""
    _, n_bins, c = x.shape
    cells = n_bins * c
    b = _bins(_field(events, i, j, "t"), dt_us)
    if crop:
        b = np.minimum(b, n_bins, out=b)
    ch = _channel_index(events, i, j, sensor_size, channels, pool)
    if (n_bins + 1) * c > _I32:
        b, ch = b.astype(np.int64), ch.astype(np.int64)
    cell = b * b.dtype.type(c) + ch
    ends = np.cumsum(counts[i:j])
    size = cells + c if crop else cells
    for r in range(j - i):
        seg = cell[ends[r] - counts[i + r] : ends[r]]
        if not len(seg):
            continue
        dst = x[i + r].reshape(-1)
        if len(seg) * 8 < cells:  # sparse sample: sorting its few events beats sweeping all cells
            srt = np.sort(seg)
            first = np.empty(len(srt), dtype=bool)
            first[0] = True
            np.not_equal(srt[1:], srt[:-1], out=first[1:])
            idx = np.flatnonzero(first)
            u, k = srt[idx], np.diff(idx, append=len(srt))
            if crop:
                u, k = u[u < cells], k[u < cells]
            dst[u] = np.minimum(k, 255)
        else:
            tally = np.bincount(seg, minlength=size)[:cells]
            if len(seg) > 255 and tally.max() > 255:  # saturate (needs more than 255 events in one cell)
                np.minimum(tally, np.int64(255), out=tally)
            dst[:] = tally
