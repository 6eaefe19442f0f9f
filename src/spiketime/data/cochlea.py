"""A cochlea-like encoder: mono audio (any sample rate) -> spikes on 700 auditory-nerve-like channels.

The stages, for a signal ``x(t)`` in full-scale units (``|x| <= 1``) resampled to ``fs`` (22050 Hz):

1. **Outer/middle ear**: a gentle first-order high-pass, ``|M(f)|^2 = (f/f_me)^2 / (1 + (f/f_me)^2)``
   (``f_me`` = 300 Hz), applied in the frequency domain (zero phase).
2. **Basilar membrane**: a gammatone-like filterbank of ``C`` channels whose centre frequencies
   ``f_c`` are equally spaced on the ERB-rate scale between ``f_min`` and ``f_max`` (Glasberg & Moore):
   ``ERB(f) = 24.7 (4.37 f / 1000 + 1)``, ``E(f) = 21.4 log10(4.37 f / 1000 + 1)``. Channel ``c`` has the
   frequency response of an order-``N`` (4) gammatone around its centre (the complex, all-pole form)
   ``G_c(f) = (1 + j (f - f_c) / b_c)^(-N)`` with ``b_c = 1.019 ERB(f_c)`` and ``G_c(f_c) = 1``, i.e. an
   impulse response ``g_c(t) ∝ t^(N-1) exp(-2π b_c t) cos(2π f_c t)``: a causal filter whose delay
   grows towards the apex (low ``f_c``). All channels are computed at once by FFT convolution:
   ``y_c = IFFT(X · M · G_c)``. Channel 0 is the lowest centre frequency.
3. **Inner hair cell**: half-wave rectification ``r_c = max(y_c, 0)``, then the membrane low-pass
   ``H(f) = (1 + j f / f_ihc)^(-2)`` (``f_ihc`` = 1 kHz), applied by FFT together with decimation to
   ``fs / D`` (``D`` = 4, ≈ 5.5 kHz): ``h_c = IFFT_{n/D}(FFT_n(r_c) · H)``. Below ~1 kHz the hair-cell
   signal keeps the waveform's fine structure (so spikes phase-lock there); above, only the envelope
   survives. (Low and middle channels are filtered and rectified at ``fs/4`` or ``fs/2`` where that
   is exact up to negligible aliasing, see :class:`Cochlea`.)
4. **Compression**: a power law relative to the fibres' resting threshold ``h_0`` (``θ_0`` dB re full
   scale, ``h_0 = 10^(θ_0 / 20)``): ``q_c(t) = (h_c(t) / h_0)^p`` (``p`` = 1/2); the drive above threshold is
   ``u_c = q_c - 1`` (``u_c > 0`` exactly when ``h_c > h_0``).
5. **Adaptation** (an adaptive threshold): ``a_c`` is a first-order low-pass of the positive drive,
   ``τ_a da/dt = max(u_c, 0) - a``; the effective drive is ``v_c = max(u_c - α a_c, 0)``, so onsets are
   emphasised and sustained sounds fire less.
6. **Rate**: a saturating (Naka-Rushton) rate-level function ``λ_c(t) = r_max v_c / (v_c + K)``
   (spikes/s; half the maximum rate at ``v = K``, i.e. about ``20 log10(1 + K) / p`` dB above threshold).
7. **Spikes**: each channel is a non-leaky integrate-and-fire unit ``dV/dt = λ_c(t)``, firing when ``V``
   reaches a threshold ``ϑ_k`` that is drawn afresh after every spike from a Gamma distribution with
   mean 1 and shape ``κ`` (CV ``1/sqrt(κ)``: the noise), with reset by subtraction ``V -> V - ϑ_k``;
   i.e. spike ``k`` falls where ``Λ_c(t) = ∫_0^t λ_c`` crosses ``ϑ_1 + ... + ϑ_k`` (an inhomogeneous gamma
   renewal process; ``λ`` is constant over each sample, so crossing times are exact within a sample).
   A spike closer than the refractory period ``t_ref`` to the previous one of its channel is dropped.

Silence gives no spikes (``λ = 0`` below ``h_0``); louder sounds drive more channels harder.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

from spiketime.errors import InputError

INSTALL_HINT = 'install the optional data dependencies: pip install "spiketime[data]"'
_BLOCK = 8  # samples per block for the adaptation low-pass and the spike search


def _fft() -> ModuleType:
    try:
        import scipy.fft
    except ImportError as e:  # pragma: no cover - scipy is in the [data] extra
        raise InputError(f"the cochlea encoder needs scipy; {INSTALL_HINT}") from e
    return scipy.fft


def _resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    try:
        from scipy.signal import resample_poly
    except ImportError as e:  # pragma: no cover
        raise InputError(f"the cochlea encoder needs scipy; {INSTALL_HINT}") from e
    return resample_poly(x, up, down)


def erb(f: np.ndarray | float) -> np.ndarray:
    """Equivalent rectangular bandwidth in Hz: ``ERB(f) = 24.7 (4.37 f / 1000 + 1)``."""
    return 24.7 * (4.37 * np.asarray(f, dtype=np.float64) / 1000.0 + 1.0)


def erb_rate(f: np.ndarray | float) -> np.ndarray:
    """ERB-rate (number of ERBs below ``f``): ``E(f) = 21.4 log10(4.37 f / 1000 + 1)``."""
    return 21.4 * np.log10(4.37 * np.asarray(f, dtype=np.float64) / 1000.0 + 1.0)


def erb_rate_inv(e: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`erb_rate`: ``f = (10^(E / 21.4) - 1) · 1000 / 4.37``."""
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) * 1000.0 / 4.37


def erb_space(f_min: float, f_max: float, n: int) -> np.ndarray:
    """``n`` centre frequencies equally spaced on the ERB-rate scale from ``f_min`` to ``f_max`` (ascending)."""
    return erb_rate_inv(np.linspace(erb_rate(f_min), erb_rate(f_max), n))


def channel_of(f: float, config: CochleaConfig | None = None) -> float:
    """The (fractional) channel index whose centre frequency is ``f`` (inverse of the ERB spacing)."""
    c = config or CochleaConfig()
    e0, e1 = erb_rate(c.f_min), erb_rate(c.f_max)
    return float((erb_rate(f) - e0) / (e1 - e0) * (c.n_channels - 1))


@dataclass(frozen=True)
class CochleaConfig:
    """Parameters of :class:`Cochlea` (symbols as in the module docstring)."""

    n_channels: int = 700  # C
    f_min: float = 50.0  # Hz, lowest centre frequency
    f_max: float = 8000.0  # Hz, highest centre frequency
    fs: float = 22050.0  # Hz, internal sample rate (input is resampled to it)
    order: int = 4  # N, gammatone order
    bandwidth: float = 1.019  # b_c / ERB(f_c)
    middle_ear_hz: float = 300.0  # f_me
    decimate: int = 4  # D, hair-cell signal rate fs / D
    ihc_cutoff: float = 1000.0  # f_ihc, Hz
    threshold_db: float = -60.0  # θ_0, dB re full scale
    compression: float = 0.5  # p
    adapt_tau: float = 0.05  # τ_a, s
    adapt_strength: float = 0.4  # α
    half_rate: float = 3.0  # K
    max_rate: float = 250.0  # r_max, spikes/s
    gamma_shape: float = 3.0  # κ
    refractory: float = 1e-3  # t_ref, s
    pad: float = 0.05  # s of zeros appended before the FFT (filter ring-out)
    block: int = 4096  # FFT sizes are multiples of this (so the filter cache is reused)


class Cochlea:
    """The encoder of the module docstring. Filter responses are cached per FFT size (a few sizes).

    Multi-rate evaluation, exact up to negligible aliasing. Let ``e_c^± = f_c ± 4 b_c`` be the edges of
    channel c's pass band (``|G_c| < -49 dB`` beyond them) and ``F = fs / (2D)`` the top of the hair-cell
    band. Channel c is filtered and rectified at the rate ``fs / d`` with the largest ``d`` in
    ``{D, D/2, ..., 1}`` for which the band and the second harmonic that rectification creates stay
    clear of aliasing into the hair-cell band: ``e_c^+ < fs / (2d)`` and ``2 e_c^+ < fs / d - F``.
    Channels whose whole band lies above the hair-cell band (``f_c - 3 b_c > F``) are high enough that
    rectification followed by the low-pass keeps only the envelope: ``LP(max(y, 0)) = LP(|z| / π)``,
    where ``z`` is the analytic signal of ``y`` (``y = |z| cos φ`` and ``max(cos φ, 0)`` has mean ``1/π``;
    its other harmonics lie at multiples of ``f_c``, above ``F``). For them ``|z|`` is computed directly
    at ``fs / D`` from the complex band around ``f_c`` (bins within ``F`` of it, ``|G_c| > -40 dB``).
    Low channels thus run at ``fs / 4``, middle ones at ``fs / 2``, then ~80 at ``fs`` and the top ~130
    as envelopes.
    """

    def __init__(self, config: CochleaConfig | None = None, cache_size: int = 8) -> None:
        self.config = c = config or CochleaConfig()
        if c.f_max >= c.fs / 2:
            raise InputError(f"cochlea f_max {c.f_max} Hz must be below half the sample rate {c.fs} Hz")
        if c.decimate < 1 or c.decimate & (c.decimate - 1):
            raise InputError(f"cochlea decimate must be a power of two, got {c.decimate}")
        if c.block % (16 * c.decimate):
            raise InputError("cochlea block must be a multiple of 16 * decimate")
        self.cf = erb_space(c.f_min, c.f_max, c.n_channels)
        bw = c.bandwidth * erb(self.cf)
        edge = self.cf + 4.0 * bw
        nyq_out = c.fs / (2 * c.decimate)
        self.divisor = np.ones(c.n_channels, dtype=np.int64)  # 0: envelope path
        self.divisor[self.cf - 3.0 * bw > nyq_out] = 0
        d = c.decimate
        while d > 1:
            ok = (edge < c.fs / (2 * d)) & (2 * edge < c.fs / d - nyq_out) & (self.divisor == 1)
            self.divisor[ok] = d
            d //= 2
        # contiguous channel groups sharing a path: (first, last + 1, divisor)
        cut = np.flatnonzero(np.diff(self.divisor)) + 1
        bounds = np.concatenate([[0], cut, [c.n_channels]])
        self.groups = [(int(a), int(b), int(self.divisor[a])) for a, b in zip(bounds[:-1], bounds[1:])]
        self._cache: OrderedDict[int, tuple[list[Any], np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    @property
    def fs_out(self) -> float:
        """Sample rate of the hair-cell signal and rates (``fs / D``)."""
        return self.config.fs / self.config.decimate

    def _gain(self, f: np.ndarray, a: int, b: int) -> np.ndarray:
        """``M(f) G_c(f)`` for channels ``a..b-1`` (complex64, (b-a, len(f)) or broadcast)."""
        c = self.config
        cf = self.cf[a:b, None]
        w = (1.0 / (1.0 + 1j * (f - cf) / (c.bandwidth * erb(cf)))).astype(np.complex64)
        g = w.copy()
        for _ in range(c.order - 1):
            g *= w
        fm = np.abs(f) / c.middle_ear_hz
        g *= np.sqrt(fm**2 / (1.0 + fm**2)).astype(np.float32)
        return g

    def _filters(self, n: int) -> tuple[list[Any], np.ndarray]:
        """Per channel group, what it multiplies the input spectrum (rfft of size ``n``) with; and the
        hair-cell low-pass ``H`` on the first ``n/(2D)+1`` bins, scaled by ``1 / h_0``."""
        hit = self._cache.get(n)
        if hit is not None:
            self._cache.move_to_end(n)
            return hit
        c = self.config
        D = c.decimate
        m = n // D
        df = c.fs / n
        f_all = np.fft.rfftfreq(n, 1.0 / c.fs)
        gs: list[Any] = []
        for a, b, d in self.groups:
            if d:  # rfft bins below fs / (2d); 1/d: the irfft has size n/d
                g = self._gain(f_all[None, : n // (2 * d) + 1], a, b) / np.float32(d)
                g[:, 0] = 0.0
                gs.append(g)
            else:  # bins k = s_c + k', k' in fft order of size m, s_c the bin of f_c
                s = np.rint(self.cf[a:b] / df).astype(np.int64)
                kk = s[:, None] + np.fft.fftfreq(m, 1.0 / m).astype(np.int64)[None, :]
                g = self._gain(kk * df, a, b)
                g[(kk < 1) | (kk > n // 2)] = 0.0
                g *= np.float32(2.0 / (D * np.pi))  # |z| / π at fs / D
                gs.append((np.clip(kk, 0, n // 2).astype(np.intp), g))
        fh = f_all[: m // 2 + 1]
        h = ((1.0 + 1j * fh / c.ihc_cutoff) ** -2 * 10 ** (-c.threshold_db / 20)).astype(np.complex64)
        hit = (gs, h)
        self._cache[n] = hit
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return hit

    def resample(self, audio: np.ndarray, fs: float) -> np.ndarray:
        """Mono float32 ``audio`` at ``fs`` Hz resampled to the internal rate (polyphase)."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise InputError(f"cochlea input must be mono (1-D), got shape {x.shape}")
        if not fs > 0:
            raise InputError(f"sample rate must be positive, got {fs}")
        if abs(fs - self.config.fs) < 1e-6:
            return x
        r = Fraction(self.config.fs / fs).limit_denominator(1000)
        return _resample_poly(x, r.numerator, r.denominator).astype(np.float32)

    def _hair_cell(self, audio: np.ndarray, fs: float, block: int = 1) -> np.ndarray:
        """``h / h_0`` (C, T) at ``fs / D``; ``T = ceil(duration fs / D)`` rounded up to ``block`` (a view)."""
        fft = _fft()
        c = self.config
        x = self.resample(audio, fs)
        n = int(np.ceil((len(x) + c.pad * c.fs) / c.block)) * c.block
        m = n // c.decimate
        gs, h = self._filters(n)
        X = fft.rfft(x, n)
        out = np.empty((c.n_channels, m), dtype=np.float32)
        for (a, b, d), g in zip(self.groups, gs):
            if d:
                nd = n // d
                y = fft.irfft(g * X[None, : nd // 2 + 1], nd, axis=1)
                np.maximum(y, 0.0, out=y)  # half-wave rectification
                R = fft.rfft(y, axis=1)[:, : m // 2 + 1]
                del y
                R *= h * np.float32(d / c.decimate)  # hair-cell low-pass, decimation to fs / D
            else:
                idx, g = g
                z = fft.ifft(X[idx] * g, axis=1)
                R = fft.rfft(np.abs(z), axis=1)  # envelope |z| / π
                R *= h
            out[a:b] = fft.irfft(R, m, axis=1)
        t = min(m, -(-int(np.ceil(len(x) / c.decimate)) // block) * block)
        return out[:, :t]

    def hair_cell(self, audio: np.ndarray, fs: float) -> np.ndarray:
        """Stages 1-3: the hair-cell signal ``h`` (C, T) at ``fs / D``, ``T = ceil(duration · fs / D)``."""
        c = self.config
        return self._hair_cell(audio, fs)[:, : int(np.ceil(len(audio) * c.fs / fs / c.decimate))] * np.float32(
            10 ** (c.threshold_db / 20)
        )

    def rates(self, audio: np.ndarray, fs: float) -> np.ndarray:
        """Stages 1-6: instantaneous firing rates ``λ`` (C, T) in spikes/s at ``fs / D``.

        ``T`` is ``ceil(duration fs / D)`` rounded up to a multiple of ``B = 8`` (the extra samples belong
        to the filters' ring-out). The adaptation low-pass runs on blocks of ``B`` samples (1.45 ms):
        ``a_j = a_{j-1} + k (mean_j(u^+) - a_{j-1})`` with ``k = 1 - exp(-B / (τ_a fs_out))``, and block
        ``j`` is driven with ``a_{j-1}`` (only past activity raises the threshold).
        """
        return self._drive(audio, fs) * np.float32(self.config.max_rate)

    def _drive(self, audio: np.ndarray, fs: float) -> np.ndarray:
        """``λ / r_max`` (see :meth:`rates`)."""
        c = self.config
        hc = self._hair_cell(audio, fs, block=_BLOCK)
        C, T = hc.shape
        u = np.maximum(hc, np.float32(1.0), out=np.empty((C, T), np.float32))  # max(h / h_0, 1)
        if c.compression == 0.5:
            np.sqrt(u, out=u)
        else:
            np.power(u, np.float32(c.compression), out=u)
        u -= np.float32(1.0)  # u^+ = max(q - 1, 0)
        nb = T // _BLOCK
        if c.adapt_strength > 0 and nb > 1:
            from scipy.signal import lfilter

            ub = u.reshape(C, nb, _BLOCK)
            mean = np.einsum("cbk->cb", ub)
            k = 1.0 - np.exp(-_BLOCK / (c.adapt_tau * self.fs_out))
            # a_j = (1 - k) a_{j-1} + k mean_j, scaled by α (mean is a block sum: / B)
            a = lfilter([k * c.adapt_strength / _BLOCK], [1.0, k - 1.0], mean[:, :-1], axis=1)
            ub[:, 1:] -= a.astype(np.float32)[:, :, None]
            np.maximum(u, np.float32(0.0), out=u)  # v
        den = u + np.float32(c.half_rate)
        u /= den  # v / (v + K)
        return u

    def encode(
        self, audio: np.ndarray, fs: float, *, seed: int | np.random.Generator | None = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Spikes for ``audio`` at ``fs`` Hz: ``(times, units)``, times in seconds (float64, ascending,
        within the input's duration), units in ``0..C-1`` (int64). ``seed`` drives the threshold noise."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        drive = self._drive(audio, fs)  # λ / r_max: r_max goes into the time step
        c = self.config
        t, u = spikes_from_rates(
            drive, c.max_rate / self.fs_out, rng, shape=c.gamma_shape, refractory=c.refractory * c.max_rate
        )  # times in units of 1 / r_max
        t /= c.max_rate
        dur = len(audio) / fs
        keep = t <= dur
        return t[keep], u[keep]


def spikes_from_rates(
    lam: np.ndarray,
    dt: float,
    rng: np.random.Generator,
    *,
    shape: float = 3.0,
    refractory: float = 1e-3,
    block: int = _BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 7 for rates ``lam`` (C, T) held constant over samples of ``dt`` s: integrate-and-fire with
    Gamma thresholds.

    ``Λ_c(t) = ∫_0^t λ_c``; the k-th spike of channel c is at the ``t`` where ``Λ_c(t) = sum_{i<=k} ϑ_i``
    (``ϑ ~ Gamma(κ, 1/κ)``), exact for the piecewise-constant rate. Search is two-level: first the block
    of ``block`` samples in which the crossing lies (one sorted search over all channels, channel c's
    block integrals and thresholds being offset by ``O_c = sum_{c'<c} (Λ_{c'}(end) + 1)``), then the sample
    within it. Then spikes within ``refractory`` of their channel's previous spike are dropped.
    Returns times (s, ascending) and units.
    """
    C, T = lam.shape
    empty = (np.zeros(0), np.zeros(0, np.int64))
    if T == 0 or C == 0:
        return empty
    if T % block:
        lam = np.concatenate([lam, np.zeros((C, block - T % block), lam.dtype)], axis=1)
        T = lam.shape[1]
    nb = T // block
    lb = lam.reshape(C, nb, block)
    cum = np.cumsum(np.einsum("cbk->cb", lb), axis=1, dtype=np.float64)
    cum *= dt  # Λ at block ends
    total = cum[:, -1].copy()
    # enough thresholds per channel to pass Λ(end) with overwhelming probability
    need = np.ceil(total + 6.0 * np.sqrt(total / shape + 1.0) + 2.0).astype(np.int64)
    need[total <= 0] = 0
    nt = int(need.sum())
    if nt == 0:
        return empty
    theta = rng.gamma(shape, 1.0 / shape, nt)
    chan = np.repeat(np.arange(C), need)
    cs = np.cumsum(theta)
    active = need > 0
    start = (np.cumsum(need) - need)[active]
    cs -= np.repeat(cs[start] - theta[start], need[active])  # per-channel cumulative thresholds
    keep = cs < total[chan]
    cs, chan = cs[keep], chan[keep]
    if not len(cs):
        return empty
    offset = np.concatenate([[0.0], np.cumsum(total + 1.0)[:-1]])
    cum += offset[:, None]
    idx = np.searchsorted(cum.ravel(), cs + offset[chan], side="left")
    b = idx - chan * nb  # block of the crossing
    before = np.where(b > 0, cum.ravel()[np.maximum(idx - 1, 0)] - offset[chan], 0.0)
    rem = cs - before  # still to integrate inside block b
    vals = lb[chan, b].astype(np.float64) * dt  # (spikes, block)
    inner = np.cumsum(vals, axis=1)
    j = np.minimum((inner < rem[:, None]).sum(axis=1), block - 1)
    prev = np.where(j > 0, inner[np.arange(len(j)), np.maximum(j - 1, 0)], 0.0)
    step = vals[np.arange(len(j)), j]
    frac = np.clip(np.where(step > 0, (rem - prev) / np.where(step > 0, step, 1.0), 1.0), 0.0, 1.0)
    times = (b * block + j + frac) * dt
    if refractory > 0 and len(times) > 1:
        # times ascend within a channel (chan is sorted): drop intervals shorter than refractory
        short = (np.diff(times) < refractory) & (chan[1:] == chan[:-1])
        keep = np.concatenate([[True], ~short])
        times, chan = times[keep], chan[keep]
    order = np.argsort(times, kind="stable")
    return times[order], chan[order].astype(np.int64)


def encode(
    audio: np.ndarray, fs: float, *, seed: int | np.random.Generator | None = 0, config: CochleaConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of ``audio`` (mono, ``fs`` Hz) with a new :class:`Cochlea` of ``config`` (see
    :meth:`Cochlea.encode`); to encode many signals, make one :class:`Cochlea` and reuse it."""
    return Cochlea(config).encode(audio, fs, seed=seed)
