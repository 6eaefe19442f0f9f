r"""Learnable continuous transmission delays.

A delay shifts a spike train in time,

.. math::  y_i[t] = x_i(t - D_i),

with ``D`` in milliseconds and continuous, so that it can be learned by gradient
descent.  On the time grid ``t = 0, dt, 2 dt, ...`` the shift is written as a causal
convolution with a per-delay kernel over ``taps`` integer shifts ``k = 0 .. taps-1``,

.. math::  y[t] = \sum_{k=0}^{taps-1} w_k(D)\, x[t - k],\qquad d = D / dt \ \text{(steps)},

so a single code path serves whole sequences and streaming (the last ``taps-1`` input
steps are carried in :class:`DelayState`).  Two kernels ``w(D)`` are provided:

``"interp"`` (SLAYER-style linear interpolation)
    ``n = floor(d)`` (no gradient), ``f = d - n``,
    ``w_k = (1-f) [k = n] + f [k = n+1]``, hence
    ``y[t] = (1-f) x[t-n] + f x[t-n-1]`` and
    ``dy/dD = (x[t-n-1] - x[t-n]) / dt``, defined at integer ``d`` too (the right-hand
    derivative).  A fractional delay blends two bins, so binary spikes become graded.

``"gaussian"`` (seed 003, straight-through)
    The forward is the *hard* integer shift ``w_k = [k = r]`` with
    ``r = floor(d + 1/2)`` (round half up; monotone in ``d``, unlike round-half-to-even),
    so binary spikes stay binary and ``dy/dx`` is the exact hard shift.  The gradient with
    respect to the delay is that of the Gaussian-smoothed train,
    ``g_k = exp(-(k-d)^2 / (2 s^2)) / (sqrt(2 pi) s)``, ``s = sigma / dt``:
    the kernel is ``w = hard + g - g.detach()``, whose value is exactly ``hard`` and whose
    derivative in ``D`` is ``dg/dD``.  ``smooth=True`` returns ``g`` itself (the "smooth
    primitive", a differentiable function whose true gradient is the one used above).
    ``g`` is not renormalised over the truncated window: near ``d = 0`` and
    ``d = taps-1`` part of the Gaussian falls outside the causal window of ``taps`` shifts
    and is dropped.

Clamping: delays are clamped to ``[0, (taps-1) dt]`` inside the kernel (a negative delay
would be acausal; a longer one does not fit in the buffer).  Outside that interval the
gradient with respect to the delay is zero (``torch.clamp``), on its boundary it flows.
The modules project delays into ``[0, delay_max]`` after each optimiser step, and
:func:`delay_taps` sizes the window so that every delay in ``[0, delay_max]`` is represented
without clamping (including the ``n+1`` bin of ``interp`` and the ``3 sigma`` tail of
``gaussian``).

Gradients through the carried buffer are kept (the returned buffer is part of the graph);
detaching it for truncated BPTT is the caller's choice.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from spiketime.kernels import check_backend, cpu, select

__all__ = [
    "DelayState",
    "MODES",
    "axonal_delay",
    "delay_kernel",
    "delay_taps",
    "init_delay_state",
    "synaptic_delay_linear",
]

MODES = ("interp", "gaussian")

# tolerance on ``delay_max / dt`` so that e.g. 0.3 / 0.1 = 2.9999999999999996 counts as 3
_EPS = 1e-9


class DelayState(NamedTuple):
    """Streaming state of a delay line.

    ``buffer``: ``[taps-1, B, N]``, the last ``taps-1`` input steps, oldest first
    (zeros at the start of a sequence).
    """

    buffer: Tensor


def _check_mode(mode: str, sigma: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "gaussian" and not sigma > 0:
        raise ValueError(f"sigma must be > 0 (ms) in mode 'gaussian', got {sigma!r}")


def _check_dt(dt: float) -> None:
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (ms), got {dt!r}")


def _check_taps(taps: int, mode: str) -> None:
    if isinstance(taps, bool) or not isinstance(taps, int) or taps < 1:
        raise ValueError(f"taps must be a positive int, got {taps!r}")
    if mode == "interp" and taps < 2:
        raise ValueError(f"taps must be >= 2 in mode 'interp', got {taps}")


def delay_taps(delay_max: float, dt: float, mode: str, sigma: float = 0.0) -> int:
    """Number of integer shifts needed to represent delays in ``[0, delay_max]`` ms.

    * ``interp``:   ``floor(delay_max/dt) + 2`` (bins ``n`` and ``n+1``);
    * ``gaussian``: ``floor(delay_max/dt) + 1 + ceil(3 sigma/dt)`` (the hard bin plus the
      ``3 sigma`` right tail of the smoothing Gaussian).

    The ratios are taken with a ``1e-9`` tolerance, so that ``0.3/0.1`` counts as 3 steps.
    """
    _check_mode(mode, sigma)
    _check_dt(dt)
    if not delay_max >= 0:
        raise ValueError(f"delay_max must be >= 0 (ms), got {delay_max!r}")
    steps = math.floor(delay_max / dt + _EPS)
    if mode == "interp":
        return steps + 2
    return steps + 1 + math.ceil(3.0 * sigma / dt - _EPS)


def delay_kernel(
    delays: Tensor,
    dt: float,
    taps: int,
    mode: str,
    sigma: float = 0.0,
    smooth: bool = False,
) -> Tensor:
    """Weights ``w_k(D)`` of the integer shifts ``k = 0 .. taps-1``: ``[*delays.shape, taps]``.

    ``y[t] = sum_k w_k x[t-k]`` with ``d = clamp(D/dt, 0, taps-1)`` (see the module
    docstring for both modes).  ``smooth=True`` (mode ``gaussian``) returns the Gaussian
    ``g_k`` instead of the straight-through hard shift; in mode ``interp`` the kernel is
    already continuous and piecewise linear in ``D`` and ``smooth`` has no effect.
    The kernel has the dtype and device of ``delays``.
    """
    _check_mode(mode, sigma)
    _check_dt(dt)
    _check_taps(taps, mode)
    if not torch.is_tensor(delays) or not delays.is_floating_point():
        raise ValueError("delays must be a floating-point tensor")
    d = (delays / dt).clamp(0.0, float(taps - 1))
    k = torch.arange(taps, device=delays.device, dtype=delays.dtype)
    if mode == "interp":
        n = torch.floor(d).clamp(max=float(taps - 2)).detach()
        f = (d - n).unsqueeze(-1)
        n = n.unsqueeze(-1)
        lo = (k == n).to(delays.dtype)
        hi = (k == n + 1).to(delays.dtype)
        return (1.0 - f) * lo + f * hi
    # gaussian
    s = sigma / dt
    g = None
    if smooth or torch.is_grad_enabled():
        g = torch.exp(-0.5 * ((k - d.unsqueeze(-1)) / s) ** 2) / (math.sqrt(2.0 * math.pi) * s)
        if smooth:
            return g
    r = torch.floor(d.detach() + 0.5).unsqueeze(-1)
    hard = (k == r).to(delays.dtype)
    if g is None or not g.requires_grad:
        return hard
    return hard + (g - g.detach())


def init_delay_state(batch: int, n: int, taps: int, like: Tensor) -> DelayState:
    """Zero buffer ``[taps-1, batch, n]`` with the dtype and device of ``like``."""
    if taps < 1:
        raise ValueError(f"taps must be a positive int, got {taps!r}")
    return DelayState(like.new_zeros((taps - 1, batch, n)))


def _check_x_state(x_seq: Tensor, taps: int, state: DelayState | None) -> DelayState:
    if not torch.is_tensor(x_seq) or x_seq.dim() != 3:
        shape = tuple(x_seq.shape) if torch.is_tensor(x_seq) else type(x_seq).__name__
        raise ValueError(f"x_seq must have shape [T, B, N], got {shape}")
    _, b, n = x_seq.shape
    if state is None:
        return init_delay_state(b, n, taps, x_seq)
    if tuple(state.buffer.shape) != (taps - 1, b, n):
        raise ValueError(
            f"state.buffer must have shape {(taps - 1, b, n)} = [taps-1, B, N], got {tuple(state.buffer.shape)}"
        )
    return state


def _causal_conv(
    x_seq: Tensor, buffer: Tensor, kernel: Tensor, groups: int, bias: Tensor | None
) -> tuple[Tensor, DelayState]:
    """``y[t] = sum_k kernel[..., k] x[t-k] (+ bias)`` over ``cat(buffer, x_seq)``.

    ``kernel``: ``[C_out, C_in/groups, taps]``, indexed by shift ``k``; conv1d is a
    cross-correlation, so the kernel is flipped along time.
    """
    taps = kernel.shape[-1]
    xp = torch.cat([buffer.to(x_seq.dtype), x_seq], dim=0)  # [taps-1+T, B, N]
    inp = xp.permute(1, 2, 0)  # [B, N, L]
    y = F.conv1d(inp, kernel.flip(-1).to(x_seq.dtype), bias=bias, groups=groups)  # [B, C, T]
    new_buffer = xp[xp.shape[0] - (taps - 1) :]
    return y.permute(2, 0, 1), DelayState(new_buffer)


def axonal_delay(
    x_seq: Tensor,
    delays: Tensor,
    dt: float,
    taps: int,
    mode: str,
    sigma: float = 0.0,
    state: DelayState | None = None,
    smooth: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, DelayState]:
    """Axonal delays, one per presynaptic neuron: ``y_i[t] = x_i(t - D_i)``.

    ``x_seq``: ``[T, B, N]``; ``delays``: ``[N]`` in ms (floating point).  Returns ``y`` ``[T, B, N]`` and the
    new state (the last ``taps-1`` steps of ``cat(state.buffer, x_seq)``).  The reference is a depthwise
    causal ``conv1d`` (``groups=N``) with the kernel of :func:`delay_kernel`; ``backend`` (op
    ``"axonal_delay"`` of :func:`spiketime.kernels.select`): ``"auto"`` runs mode ``interp`` as the compiled
    CPU kernel (:func:`spiketime.kernels.cpu.axonal_interp_c`) or, without it, as the two gathers of its
    nonzero taps, and on CUDA with Triton (``smooth=False``) the gather kernels of
    :mod:`spiketime.kernels.triton_delay`; ``"fused"`` demands one of the two kernels (else a one-line
    ``ValueError``); ``"reference"`` the convolution. All compute the same values and gradients.
    """
    check_backend(backend)
    _check_mode(mode, sigma)
    _check_taps(taps, mode)
    _check_dt(dt)
    state = _check_x_state(x_seq, taps, state)
    n = x_seq.shape[2]
    if not torch.is_tensor(delays) or tuple(delays.shape) != (n,) or not delays.is_floating_point():
        shape = tuple(delays.shape) if torch.is_tensor(delays) else type(delays).__name__
        raise ValueError(f"delays must be a floating-point tensor of shape [N] = ({n},), got {shape}")
    impl = select("axonal_delay", backend, x_seq.device, x_seq.dtype, mode=mode, smooth=smooth)
    if impl == "triton":  # fused gather kernel, same values and gradients
        from spiketime.kernels.triton_delay import axonal_delay_triton

        y, buffer = axonal_delay_triton(x_seq, delays, dt, taps, mode, sigma, state.buffer)
        return y, DelayState(buffer)
    if impl in ("c", "gather"):
        return _interp_shift(x_seq, state.buffer, delays, dt, taps, compiled=impl == "c")
    kernel = delay_kernel(delays, dt, taps, mode, sigma, smooth)  # [N, taps]
    return _causal_conv(x_seq, state.buffer, kernel.unsqueeze(1), groups=n, bias=None)


def _interp_shift(
    x_seq: Tensor, buffer: Tensor, delays: Tensor, dt: float, taps: int, compiled: bool | None = None
) -> tuple[Tensor, DelayState]:
    """Mode ``interp`` as ``y[t] = (1-f) xp[t-n] + f xp[t-n-1]`` over ``xp = cat(buffer, x_seq)``: the same
    values and gradients as the two nonzero taps of :func:`delay_kernel` in :func:`_causal_conv`, without
    the ``taps``-wide convolution. ``compiled``: by the compiled CPU kernel
    (:func:`spiketime.kernels.cpu.axonal_interp_c`, as :func:`spiketime.kernels.select` chose it), else two
    gathers; None: the compiled kernel where :func:`spiketime.kernels.cpu.supports` ``x_seq``."""
    T, B, N = x_seq.shape
    buffer = buffer.to(x_seq.dtype)
    d = (delays / dt).clamp(0.0, float(taps - 1))
    n = torch.floor(d).clamp(max=float(taps - 2)).detach()
    f = (d - n).to(x_seq.dtype)
    start = (taps - 1) - n.long()  # xp row of x[t - n] at t = 0
    new_buffer = x_seq[T - (taps - 1) :] if T >= taps - 1 else torch.cat([buffer[T:], x_seq], dim=0)
    if compiled is None:
        compiled = x_seq.device.type == "cpu" and cpu.supports(x_seq)
    if compiled:
        return cpu.axonal_interp_c(x_seq, buffer, start, f), DelayState(new_buffer)
    xp = torch.cat([buffer, x_seq], dim=0)  # [taps-1+T, B, N]
    index = (torch.arange(T, device=x_seq.device).unsqueeze(1) + start).unsqueeze(1).expand(T, B, N)
    y = (1.0 - f) * torch.gather(xp, 0, index) + f * torch.gather(xp, 0, index - 1)
    return y, DelayState(new_buffer)


def synaptic_delay_linear(
    x_seq: Tensor,
    weight: Tensor,
    delays: Tensor,
    dt: float,
    taps: int,
    mode: str,
    sigma: float = 0.0,
    bias: Tensor | None = None,
    state: DelayState | None = None,
    smooth: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, DelayState]:
    """Linear map with one delay per connection: ``I_j[t] = sum_i W_ji x_i(t - D_ji) + b_j``.

    ``x_seq``: ``[T, B, N]``; ``weight``, ``delays``: ``[M, N]`` (ms); ``bias``: ``[M]``.
    Returns ``I`` ``[T, B, M]`` and the new state (buffer of the *input*, ``[taps-1, B, N]``).
    One ``conv1d`` with kernel ``W[:, :, None] * delay_kernel(D)`` (``[M, N, taps]``): memory
    ``O(M N taps)`` for the kernel, no ``[T, B, M, N]`` intermediate. That is the only implementation (op
    ``"synaptic_delay"`` of :func:`spiketime.kernels.select`): ``backend="auto"``/``"reference"`` run it,
    ``"fused"`` raises a one-line ``ValueError`` (no fused kernel).
    """
    check_backend(backend)
    _check_mode(mode, sigma)
    _check_taps(taps, mode)
    state = _check_x_state(x_seq, taps, state)
    n = x_seq.shape[2]
    if not torch.is_tensor(weight) or weight.dim() != 2 or weight.shape[1] != n:
        shape = tuple(weight.shape) if torch.is_tensor(weight) else type(weight).__name__
        raise ValueError(f"weight must have shape [M, N] with N = {n}, got {shape}")
    m = weight.shape[0]
    if not torch.is_tensor(delays) or tuple(delays.shape) != (m, n):
        shape = tuple(delays.shape) if torch.is_tensor(delays) else type(delays).__name__
        raise ValueError(f"delays must have shape [M, N] = ({m}, {n}), got {shape}")
    if bias is not None and (not torch.is_tensor(bias) or tuple(bias.shape) != (m,)):
        shape = tuple(bias.shape) if torch.is_tensor(bias) else type(bias).__name__
        raise ValueError(f"bias must have shape [M] = ({m},), got {shape}")
    select("synaptic_delay", backend, x_seq.device, x_seq.dtype, mode=mode, smooth=smooth)  # "reference" or raises
    kernel = weight.unsqueeze(-1) * delay_kernel(delays, dt, taps, mode, sigma, smooth).to(weight.dtype)
    if bias is not None:
        bias = bias.to(x_seq.dtype)
    return _causal_conv(x_seq, state.buffer, kernel, groups=1, bias=bias)
