"""A DVS / event-camera emulator (in the spirit of v2e and ESIM, written here from the model equations).

Input: grey-level frames ``I_k`` (shape ``[H, W]``, linear intensity >= 0) at times ``t_k`` (µs), or a static image
plus a camera trajectory (:func:`render_trajectory`, :func:`record_static_image`).  Output: events in the
structured dtype :data:`~spiketime.data.formats.EVENTS_2D` (``t`` µs int64, ``x`` column, ``y`` row, ``p`` 1 = ON,
0 = OFF), sorted by time.

Model, per pixel ``(y, x)`` (all operations vectorised over pixels; the only Python loop is over frames)::

    L_k        = log(I_k + eps)                                  log intensity of frame k
    L(t)       = L_{k-1} + (L_k - L_{k-1}) (t - t_{k-1}) / (t_k - t_{k-1})      linear between frames
    C_on       = max(N(C0_on,  sigma_C^2), C_min)                per-pixel thresholds (mismatch), drawn once
    C_off      = max(N(C0_off, sigma_C^2), C_min)                  per camera, independently per pixel
    R                                                            reference level, R = L_0 at reset

    ON:  n = floor((L_k - R) / C_on)  if L_k - R >= C_on;  crossings at levels R + j C_on, j = 1..n,
         at times  t_j = t_{k-1} + (R + j C_on - L_{k-1}) / (L_k - L_{k-1}) (t_k - t_{k-1});  then R += n C_on
    OFF: the same with L_k - R <= -C_off, levels R - j C_off, R -= n C_off

After each frame ``R - C_off < L_k < R + C_on``, so every crossing of the next interval lies strictly inside it.

* Refractory period ``T_ref``: a crossing at ``t_j`` emits an event only if ``t_j - t_last >= T_ref``, where
  ``t_last`` is the pixel's last emitted event; the crossing still moves the reference (the change seen during
  the refractory period is lost, as when a real pixel is held in reset).  With the crossings of one interval
  equally spaced by ``s = C (t_k - t_{k-1}) / |L_k - L_{k-1}|`` the kept ones are ``j0, j0 + m, j0 + 2m, ...``
  with ``j0 = 1 + max(0, ceil((t_last + T_ref - t_1) / s))`` and ``m = max(1, ceil(T_ref / s))`` (closed form).
* Shot-noise background: each pixel fires extra events as a Poisson process of rate ``noise_rate`` (Hz, both
  polarities together; ON with probability ``noise_on_fraction``), uniform in time, independent of the signal
  (they neither move the reference nor obey the refractory period).
* Timestamp jitter: every event time gets ``N(0, jitter_us^2)``, is clipped to the recording ``[t_0, t_end]``,
  rounded to whole µs, and the stream is sorted again (stable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from spiketime.data.formats import EVENTS_2D


@dataclass
class CameraParams:
    """Emulator settings (see the module docstring for the equations)."""

    threshold_on: float = 0.2  # C0_on, log-intensity units
    threshold_off: float = 0.2  # C0_off
    threshold_sigma: float = 0.03  # sigma_C, per-pixel mismatch
    threshold_min: float = 0.01  # C_min, thresholds are clipped to at least this
    refractory_us: float = 500.0  # T_ref
    noise_rate: float = 0.0  # shot-noise events per pixel per second (both polarities)
    noise_on_fraction: float = 0.5
    jitter_us: float = 0.0  # standard deviation of the timestamp jitter
    eps: float = 0.05  # log(I + eps); I is linear intensity, 1 = full white

    def __post_init__(self) -> None:
        if min(self.threshold_on, self.threshold_off, self.threshold_min) <= 0:
            raise ValueError("contrast thresholds must be positive")
        if self.threshold_sigma < 0 or self.refractory_us < 0 or self.noise_rate < 0 or self.jitter_us < 0:
            raise ValueError("threshold_sigma, refractory_us, noise_rate and jitter_us must be >= 0")
        if not 0 <= self.noise_on_fraction <= 1:
            raise ValueError("noise_on_fraction must lie in [0, 1]")
        if self.eps <= 0:
            raise ValueError("eps must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


_EMPTY = (np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))


class EventCamera:
    """Stateful emulator for one ``height x width`` sensor: :meth:`reset` with the first frame, then
    :meth:`step` with every following frame.  Thresholds are drawn from ``rng`` at construction."""

    def __init__(
        self, height: int, width: int, params: CameraParams | None = None, rng: np.random.Generator | int | None = None
    ) -> None:
        self.shape = (int(height), int(width))
        self.params = params or CameraParams()
        self.rng = np.random.default_rng(rng)
        n = self.shape[0] * self.shape[1]
        pr = self.params
        self.c_on = np.maximum(self.rng.normal(pr.threshold_on, pr.threshold_sigma, n), pr.threshold_min)
        self.c_off = np.maximum(self.rng.normal(pr.threshold_off, pr.threshold_sigma, n), pr.threshold_min)
        self._ref: np.ndarray | None = None
        self._last_l: np.ndarray | None = None
        self._t: float = 0.0
        self._t_last = np.full(n, -np.inf)

    def log_intensity(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float64)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} != sensor shape {self.shape}")
        return np.log(np.maximum(frame, 0.0) + self.params.eps).ravel()

    def reset(self, frame: np.ndarray, t_us: float) -> None:
        """Start a recording: reference = log intensity of ``frame``, no events."""
        self._last_l = self.log_intensity(frame)
        self._ref = self._last_l.copy()
        self._t = float(t_us)
        self._t_last[:] = -np.inf

    def _crossings(self, l_new: np.ndarray, t_new: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Threshold crossings of both polarities in ``(t, t_new]``; updates the reference, ``t_last`` and the
        stored level/time.  Returns (times, pixel indices, polarities), unsorted."""
        d = l_new - self._ref
        pix = np.flatnonzero((d >= self.c_on) | (d <= -self.c_off))
        t_old, dt = self._t, t_new - self._t
        self._t = t_new
        if not len(pix):
            self._last_l = l_new
            return _EMPTY
        on = d[pix] > 0
        sign = np.where(on, 1.0, -1.0)
        c = np.where(on, self.c_on[pix], self.c_off[pix])
        ref, l_old = self._ref[pix], self._last_l[pix]
        self._last_l = l_new
        n = np.floor(sign * d[pix] / c)
        # first crossing time and spacing; clipped: guards the rounding corner where a crossing is found at an
        # unchanged level (l_new == l_old)
        adl = np.maximum(np.abs(l_new[pix] - l_old), 1e-12)
        t1 = t_old + np.minimum(np.maximum(sign * (ref - l_old) + c, 0.0) / adl, 1.0) * dt
        s = np.minimum(c / adl, 1.0) * dt
        self._ref[pix] = ref + sign * n * c
        tref = self.params.refractory_us
        if tref > 0:
            j0 = 1.0 + np.ceil(np.maximum((self._t_last[pix] + tref - t1) / s, 0.0) - 1e-9)
            m = np.maximum(1.0, np.ceil(tref / s - 1e-9))
            count = np.where(j0 <= n, 1.0 + (n - j0) // m, 0.0)
            keep = count > 0
            if not keep.all():
                pix, on, count, j0, m, t1, s = pix[keep], on[keep], count[keep], j0[keep], m[keep], t1[keep], s[keep]
                if not len(pix):
                    return _EMPTY
            self._t_last[pix] = t1 + (j0 + (count - 1) * m - 1) * s
        else:
            count = n
            j0 = m = np.ones(len(pix))
            self._t_last[pix] = t1 + (count - 1) * s
        if count.max() == 1:
            return t1 + (j0 - 1) * s, pix, on.astype(np.int64)
        count = count.astype(np.int64)
        rep = np.repeat(np.arange(len(pix)), count)
        start = np.cumsum(count) - count
        j = j0[rep] + (np.arange(len(rep)) - start[rep]) * m[rep]
        return t1[rep] + (j - 1) * s[rep], pix[rep], on[rep].astype(np.int64)

    def _noise(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shot-noise events in ``(t0, t1)``: independent Poisson counts per pixel, drawn as a Poisson total
        spread uniformly over pixels and time (the same law)."""
        pr = self.params
        n_pix = self.shape[0] * self.shape[1]
        k = self.rng.poisson(pr.noise_rate * (t1 - t0) * 1e-6 * n_pix) if pr.noise_rate > 0 else 0
        if not k:
            return _EMPTY
        return (
            self.rng.uniform(t0, t1, k),
            self.rng.integers(0, n_pix, k),
            (self.rng.random(k) < pr.noise_on_fraction).astype(np.int64),
        )

    def _advance(self, l_new: np.ndarray, t_us: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._ref is None:
            raise RuntimeError("call reset() with the first frame before step()")
        if t_us <= self._t:
            raise ValueError("frame times must increase strictly")
        return self._crossings(l_new, t_us)

    def step(self, frame: np.ndarray, t_us: float) -> np.ndarray:
        """Advance to ``frame`` at ``t_us``; returns the events of ``(t_prev, t_us]`` sorted by time, with float
        times (not jittered or rounded: :func:`frames_to_events` makes finished streams)."""
        t_us, t_old = float(t_us), self._t
        parts = [self._advance(self.log_intensity(frame), t_us), self._noise(t_old, t_us)]
        t, idx, p = (np.concatenate(z) for z in zip(*parts))
        order = np.argsort(t, kind="stable")
        ev = np.empty(len(t), dtype=[("t", "<f8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")])
        ev["t"], ev["x"], ev["y"], ev["p"] = t[order], idx[order] % self.shape[1], idx[order] // self.shape[1], p[order]
        return ev


def frames_to_events(
    frames: np.ndarray | Sequence[np.ndarray],
    times_us: Sequence[float],
    params: CameraParams | None = None,
    rng: np.random.Generator | int | None = None,
    t_offset_us: float = 0.0,
) -> np.ndarray:
    """Events of a frame sequence (``frames[k]`` shown at ``times_us[k]``), as :data:`EVENTS_2D` sorted by time,
    with ``t = round(time + jitter - t_offset_us)``, the jittered time clipped to ``[times_us[0], times_us[-1]]``."""
    frames = np.asarray(frames, dtype=np.float64)
    times = np.asarray(times_us, dtype=np.float64)
    if frames.ndim != 3 or len(frames) != len(times) or len(times) < 1:
        raise ValueError("frames must be [K, H, W] with one time per frame")
    params = params or CameraParams()
    cam = EventCamera(frames.shape[1], frames.shape[2], params, rng)
    cam.reset(frames[0], times[0])
    logs = np.log(np.maximum(frames, 0.0) + params.eps).reshape(len(frames), -1)
    parts = [cam._advance(logs[k], float(times[k])) for k in range(1, len(times))]
    parts.append(cam._noise(times[0], times[-1]))
    t, idx, p = (np.concatenate(z) for z in zip(*parts))
    if params.jitter_us > 0:
        t = np.clip(t + cam.rng.normal(0.0, params.jitter_us, len(t)), times[0], times[-1])
    t = np.rint(t - t_offset_us).astype(np.int64)
    order = np.argsort(t, kind="stable")
    out = np.empty(len(t), dtype=EVENTS_2D)
    idx = idx[order]
    out["t"], out["x"], out["y"], out["p"] = t[order], idx % frames.shape[2], idx // frames.shape[2], p[order]
    return out


def render_trajectory(
    image: np.ndarray, offsets_xy: np.ndarray, sensor_shape: tuple[int, int], background: float = 0.0
) -> np.ndarray:
    """Frames ``[K, H, W]`` of a static ``image`` seen by a moving camera: frame ``k`` shows the image with its
    top-left corner at sensor position ``offsets_xy[k] = (x, y)`` (sub-pixel, in pixels), i.e.
    ``frame[k, r, c] = image(r - y_k, c - x_k)`` sampled bilinearly; outside the image: ``background``."""
    img = np.asarray(image, dtype=np.float64)
    off = np.asarray(offsets_xy, dtype=np.float64).reshape(-1, 2)
    h, w = sensor_shape
    # the shift is the same for every pixel: bilinear = per-frame integer shift + fractional weights, separable
    m = 2 + int(np.ceil(max(h, w) + np.abs(off).max()))  # enough padding for every shift
    pad = np.pad(img, m, constant_values=background)  # image pixel (i, j) -> pad (i + m, j + m)
    ry, rx = m - off[:, 1], m - off[:, 0]  # pad coordinate of sensor pixel (0, 0)
    y0, x0 = np.floor(ry).astype(np.int64), np.floor(rx).astype(np.int64)
    fy, fx = (ry - y0)[:, None, None], (rx - x0)[:, None, None]
    rows = y0[:, None] + np.arange(h + 1)[None, :]  # [K, h+1]
    cols = x0[:, None] + np.arange(w + 1)[None, :]  # [K, w+1]
    patch = pad[rows[:, :, None], cols[:, None, :]]  # [K, h+1, w+1]
    horiz = patch[:, :, :-1] * (1 - fx) + patch[:, :, 1:] * fx
    return horiz[:, :-1] * (1 - fy) + horiz[:, 1:] * fy


def record_static_image(
    image: np.ndarray,
    offsets_xy: np.ndarray,
    times_us: Sequence[float],
    sensor_shape: tuple[int, int],
    params: CameraParams | None = None,
    rng: np.random.Generator | int | None = None,
    background: float = 0.0,
    t_offset_us: float = 0.0,
) -> np.ndarray:
    """Events of a static image under a camera trajectory (:func:`render_trajectory` + :func:`frames_to_events`)."""
    frames = render_trajectory(image, offsets_xy, sensor_shape, background)
    return frames_to_events(frames, times_us, params, rng, t_offset_us)
