"""Synthetic spike-timing tasks (seed 002): ISI, CCISI and coincidence, each in a *rate* and a *timing* variant.

Every sample is ``C`` channels of spikes over ``duration`` ms, binned at ``dt`` ms into ``T = round(duration/dt)``
bins with at most one spike per bin.  Spike times are generated in continuous ms; a spike at time ``t`` falls in bin
``floor(t/dt)`` (clipped to ``[0, T-1]``).  Labels are balanced (``n_samples // K`` or one more per class, shuffled).

Common quantities (``K = num_classes``)::

    s      = max(4 ms, 4*dt)                     grid step of the class code (>= 2*dt: class-adjacent codes never share a bin)
    m      = s                                   margin kept free at both ends of the trial
    L_k    = (k + 1) * s,  k = 0..K-1            the K interval / lag levels (4, 8, ..., 4K ms at dt = 1 ms)
    U[a,b] uniform on [a, b], drawn independently per sample (and per channel where stated)

Pattern spikes (class-dependent *timing*, class-independent *count*):

* ``isi`` -- every channel ``i`` emits one burst of 3 spikes ``o_i, o_i + d, o_i + 2d`` with the class- and
  channel-specific interval ``d = L_{(c + i) mod K}`` and onset ``o_i ~ U[m, duration - m - 2 L_{K-1}]``
  (independent per channel).  The class is in the inter-spike intervals inside a channel; pooled over channels the
  intervals are (for ``C`` a multiple of ``K``) the same multiset in every class, so a channel-blind interval
  histogram is not enough.
* ``ccisi`` -- channels are paired ``(2p, 2p+1)``, ``p = 0..C//2-1``.  The leader ``2p`` fires once at
  ``t_p ~ U[m, duration - m - L_{K-1}]``, the follower ``2p+1`` fires once at ``t_p + L_{(c + p) mod K}``.  Each
  channel alone emits one spike at a class-independent-looking time; only the *cross-channel* lag (up to ``4K`` ms,
  i.e. tens of ms) carries the class, so a network needs delays or long memory to read it.  With odd ``C`` the last
  channel fires one spike at ``U[m, duration - m]``.
* ``coincidence`` -- class ``c`` owns the group ``G_c = {(floor(c*C/K) + j) mod C : j < g}``, ``g = max(2, C//4)``
  (distinct groups; needs ``3 <= C`` and ``K <= C``).  Every channel emits 3 spikes.  Three volley times
  ``v_1..v_3 ~ U[m, duration - m]`` are drawn per sample; every channel in ``G_c`` fires at ``v_1..v_3`` (together),
  every other channel at its own 3 independent ``U[m, duration - m]`` times.  Each channel's marginal spike-time
  distribution is the same in every class; only *which channels fire together* carries the class.

``jitter`` adds independent ``N(0, jitter^2)`` ms to every pattern spike.  Pattern spikes that land in an already
occupied bin of the same channel (rare: only after jitter or for coincidental volleys) are moved to the nearest free
bin, so the number of pattern spikes per channel is *exact* (3, 1 or 3 as above) whatever the class.

Background and rate spikes, per channel, are placed uniformly at random in bins not holding a pattern spike:

* noise: ``Poisson(noise * duration / 1000)`` spikes per channel, identical law for every class and channel
  (a ``noise`` Hz Poisson process, at most one spike per bin);
* ``variant="timing"``: nothing else.  The per-channel spike count is ``n_pattern + min(Poisson, T - n_pattern)`` with
  ``n_pattern`` fixed, so its distribution is exactly the same in every class: a count classifier is at chance.
* ``variant="rate"``: additionally ``Poisson(R * (1 + cos(2*pi*(i/C - c/K))) / 2)`` spikes in channel ``i``,
  ``R = 6`` (a class-tuned bump of extra spikes over the channels), so counts carry the class as well as timing.

Defaults (:data:`DEFAULTS`): 16 channels, 150 ms at ``dt = 1`` ms, 5 classes, 5 Hz noise, 1 ms jitter.  Generation is
deterministic from ``seed`` (``numpy.random.default_rng(seed)``); the class code (intervals, lags, groups) depends
only on ``(task, channels, num_classes, dt)``, never on ``seed``, so splits generated with different seeds share it.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from torch import Tensor

TASKS = ("isi", "ccisi", "coincidence")
VARIANTS = ("rate", "timing")

DEFAULTS = dict(n_samples=1000, channels=16, duration=150.0, dt=1.0, num_classes=5, noise=5.0, jitter=1.0, seed=0)

ISI_SPIKES = 3  # spikes per ISI burst (2 intervals)
COINC_VOLLEYS = 3  # synchronous volleys per coincidence sample
RATE_PEAK = 6.0  # mean extra spikes at the preferred channel of a class (rate variant)
_CHUNK_ELEMENTS = 1 << 22  # bins per chunk when placing noise (bounds the temporary memory to ~70 MB)


def _step(dt: float) -> float:
    return max(4.0, 4.0 * dt)


def levels(num_classes: int, dt: float) -> np.ndarray:
    """The ``K`` interval/lag levels ``L_k = (k+1) * max(4, 4 dt)`` ms used by ``isi`` and ``ccisi``."""
    return _step(dt) * np.arange(1, num_classes + 1, dtype=np.float64)


def coincidence_groups(channels: int, num_classes: int) -> np.ndarray:
    """Bool ``[K, C]``: row ``c`` marks the channels that fire synchronously in class ``c``."""
    g = max(2, channels // 4)
    groups = np.zeros((num_classes, channels), dtype=bool)
    for c in range(num_classes):
        start = (c * channels) // num_classes
        groups[c, [(start + j) % channels for j in range(g)]] = True
    return groups


def codebook(task: str, *, channels: int, num_classes: int, dt: float = 1.0) -> np.ndarray:
    """The class code of ``task`` (independent of seed, noise, jitter and variant).

    ``isi``: ``[K, C]`` interval (ms) of each channel's burst; ``ccisi``: ``[K, C//2]`` lag (ms) of each channel pair;
    ``coincidence``: ``[K, C]`` bool synchronous-group membership.
    """
    if task == "isi":
        lv = levels(num_classes, dt)
        return lv[(np.arange(num_classes)[:, None] + np.arange(channels)[None, :]) % num_classes]
    if task == "ccisi":
        lv = levels(num_classes, dt)
        return lv[(np.arange(num_classes)[:, None] + np.arange(channels // 2)[None, :]) % num_classes]
    if task == "coincidence":
        return coincidence_groups(channels, num_classes)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def rate_tuning(channels: int, num_classes: int) -> np.ndarray:
    """``[K, C]`` mean number of extra (class-tuned) spikes per channel in the rate variant."""
    i = np.arange(channels)[None, :] / channels
    c = np.arange(num_classes)[:, None] / num_classes
    return RATE_PEAK * (1.0 + np.cos(2.0 * np.pi * (i - c))) / 2.0


def _check_int(name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _check_real(name: str, v: object, *, positive: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    v = float(v)
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if not positive and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _validate(
    task: str,
    variant: str,
    n_samples: int,
    channels: int,
    duration: float,
    dt: float,
    num_classes: int,
    noise: float,
    jitter: float,
    seed: int,
) -> tuple[int, int, float, float, int, float, float, int]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    n_samples = _check_int("n_samples", n_samples, 1)
    channels = _check_int("channels", channels, 1)
    num_classes = _check_int("num_classes", num_classes, 2)
    seed = _check_int("seed", seed, 0)
    duration = _check_real("duration", duration, positive=True)
    dt = _check_real("dt", dt, positive=True)
    noise = _check_real("noise", noise, positive=False)
    jitter = _check_real("jitter", jitter, positive=False)
    if noise * dt / 1000.0 > 0.5:
        raise ValueError(f"noise={noise} Hz is too high for dt={dt} ms (at most {500.0 / dt:g} Hz, <= 0.5 spike/bin)")
    s = _step(dt)
    L_max = s * num_classes
    if task == "isi":
        span, what = 2 * s + (ISI_SPIKES - 1) * L_max, f"{ISI_SPIKES - 1} intervals of up to {L_max:g} ms"
    elif task == "ccisi":
        if channels < 2:
            raise ValueError(f"channels must be >= 2 for task 'ccisi' (channel pairs), got {channels}")
        span, what = 2 * s + L_max, f"a lag of up to {L_max:g} ms"
    else:
        if channels < 3:
            raise ValueError(f"channels must be >= 3 for task 'coincidence', got {channels}")
        if num_classes > channels:
            raise ValueError(
                f"num_classes={num_classes} is too many for task 'coincidence' with channels={channels} "
                f"(at most one class per channel)"
            )
        span, what = 2 * s + COINC_VOLLEYS * s, f"{COINC_VOLLEYS} volleys"
    if span > duration:
        raise ValueError(
            f"num_classes={num_classes} is too many for duration={duration:g} ms with task {task!r} "
            f"({what} plus {s:g} ms margins need >= {span:g} ms)"
        )
    return n_samples, channels, duration, dt, num_classes, noise, jitter, seed


def _pattern_times(
    task: str, y: np.ndarray, channels: int, duration: float, dt: float, K: int, rng: np.random.Generator
) -> np.ndarray:
    """Pattern spike times (ms) before jitter, ``[N, C, n_pattern]``."""
    N, C = len(y), channels
    s = _step(dt)
    lv = levels(K, dt)
    if task == "isi":
        d = codebook("isi", channels=C, num_classes=K, dt=dt)[y]  # [N, C]
        onset = rng.uniform(s, duration - s - (ISI_SPIKES - 1) * lv[-1], size=(N, C))
        return onset[..., None] + d[..., None] * np.arange(ISI_SPIKES)
    if task == "ccisi":
        P = C // 2
        lag = codebook("ccisi", channels=C, num_classes=K, dt=dt)[y]  # [N, P]
        t = np.empty((N, C, 1))
        lead = rng.uniform(s, duration - s - lv[-1], size=(N, P))
        t[:, 0 : 2 * P : 2, 0] = lead
        t[:, 1 : 2 * P : 2, 0] = lead + lag
        if C % 2:
            t[:, -1, 0] = rng.uniform(s, duration - s, size=N)
        return t
    groups = coincidence_groups(C, K)[y]  # [N, C]
    volleys = rng.uniform(s, duration - s, size=(N, 1, COINC_VOLLEYS))
    own = rng.uniform(s, duration - s, size=(N, C, COINC_VOLLEYS))
    return np.where(groups[..., None], volleys, own)


def _place_pattern(spk: np.ndarray, bins: np.ndarray) -> None:
    """Set ``spk[n, c, bins[n, c, :]]`` (``spk`` [N, C, T] bool), moving same-channel collisions to the nearest free bin."""
    N, C, T = spk.shape
    bins = np.sort(bins, axis=-1)
    n_idx, c_idx = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    spk[n_idx[..., None], c_idx[..., None], bins] = True
    if bins.shape[-1] < 2:
        return
    clash = (np.diff(bins, axis=-1) == 0).any(-1)
    for n, c in zip(*np.nonzero(clash)):
        row = spk[n, c]
        row[:] = False
        for b in bins[n, c]:
            for dist in range(T):  # nearest free bin, later bin first on ties
                if b + dist < T and not row[b + dist]:
                    row[b + dist] = True
                    break
                if b - dist >= 0 and not row[b - dist]:
                    row[b - dist] = True
                    break


def _place_free(spk: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> None:
    """Add ``counts[n, c]`` spikes to uniformly random *empty* bins of ``spk[n, c]`` (capped at the free bins)."""
    N, C, T = spk.shape
    chunk = max(1, _CHUNK_ELEMENTS // (C * T))
    for a in range(0, N, chunk):
        occ = spk[a : a + chunk]
        keys = rng.random(occ.shape)
        keys[occ] = 2.0  # occupied bins sort last
        order = np.argsort(keys, axis=-1)
        k = np.minimum(counts[a : a + chunk], T - occ.sum(-1))
        new = np.zeros_like(occ)
        np.put_along_axis(new, order, np.arange(T) < k[..., None], axis=-1)
        occ |= new


def generate(
    task: str,
    variant: str,
    *,
    n_samples: int = DEFAULTS["n_samples"],
    channels: int = DEFAULTS["channels"],
    duration: float = DEFAULTS["duration"],
    dt: float = DEFAULTS["dt"],
    num_classes: int = DEFAULTS["num_classes"],
    noise: float = DEFAULTS["noise"],
    jitter: float = DEFAULTS["jitter"],
    seed: int = DEFAULTS["seed"],
) -> tuple[Tensor, Tensor]:
    """Generate a synthetic timing task (see the module docstring for the generative process).

    ``duration``, ``dt`` and ``jitter`` in ms, ``noise`` in Hz.  Returns ``x`` float32 ``[n_samples, T, channels]``
    of 0/1 spikes, ``T = round(duration/dt)``, and ``y`` int64 ``[n_samples]`` in ``[0, num_classes)``.
    Raises ``ValueError`` naming the offending argument.
    """
    n_samples, channels, duration, dt, K, noise, jitter, seed = _validate(
        task, variant, n_samples, channels, duration, dt, num_classes, noise, jitter, seed
    )
    T = int(round(duration / dt))
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples, dtype=np.int64) % K
    rng.shuffle(y)

    times = _pattern_times(task, y, channels, duration, dt, K, rng)
    if jitter > 0:
        times = times + rng.normal(0.0, jitter, size=times.shape)
    bins = np.clip(np.floor(times / dt), 0, T - 1).astype(np.int64)
    spk = np.zeros((n_samples, channels, T), dtype=bool)
    _place_pattern(spk, bins)

    counts = rng.poisson(noise * duration / 1000.0, size=(n_samples, channels))
    if variant == "rate":
        counts = counts + rng.poisson(rate_tuning(channels, K)[y])
    _place_free(spk, counts, rng)

    x = torch.from_numpy(np.ascontiguousarray(spk.transpose(0, 2, 1), dtype=np.float32))
    return x, torch.from_numpy(y)
