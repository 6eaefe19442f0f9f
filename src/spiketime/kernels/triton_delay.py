r"""Triton kernels of the axonal delay (:func:`spiketime.functional.delay.axonal_delay`), with gradients.

The delay line ``y[t, b, n] = sum_k w_k(D_n) xp[t - k, b, n]`` runs over ``xp = cat(buffer, x)`` (the
buffer holds the previous ``taps - 1`` input steps, oldest first) without building ``xp``: a source
time ``t - k < 0`` reads row ``taps - 1 + t - k`` of the buffer. Per neuron only one or two taps are
nonzero in the forward pass, so it is a gather, not a convolution:

* ``"interp"``: ``y[t] = (1 - f) xp[t - n] + f xp[t - n - 1]``, ``n = min(floor(d), taps - 2)``,
  ``f = d - n``, ``d = clamp(D / dt, 0, taps - 1)``;
* ``"gaussian"`` (straight-through): ``y[t] = xp[t - r]``, ``r = floor(d + 1/2)``.

Backward (one kernel each, every output written once, no atomics):

* ``dL/dxp[p] = sum_k w_k g_y[p - (taps - 1) + k]``, the shift in reverse, written to ``g_x`` for
  ``p >= taps - 1`` and to ``g_buffer`` below;
* ``dL/dD[n] = [D/dt in [0, taps-1]] / dt * sum_{t,b} g_y[t,b,n] * sum_k c_k[n] xp[t - k, b, n]`` with
  ``c = 1[k = n+1] - 1[k = n]`` (``interp``: ``xp[t-n-1] - xp[t-n]``) or ``c_k = dg_k/dd`` of the
  Gaussian ``g_k = exp(-(k-d)^2 / 2s^2) / (sqrt(2 pi) s)`` over all taps (``gaussian``). Each program
  reduces a ``[TT, BLOCK]`` tile over its ``TT`` time steps into a ``[T/TT, B*N]`` buffer that PyTorch
  sums over tiles and ``B`` (deterministic).

The per-neuron quantities (shifts, weights, ``c``) are computed in PyTorch exactly as
:func:`~spiketime.functional.delay.delay_kernel` does (in the delays' dtype, weights rounded to the
input's dtype as the reference convolution does); the kernels compute in float32 (float64 for float64
inputs) and store ``y`` in the input's dtype. ``smooth=True`` (the Gaussian itself in the forward) is
not covered: use the reference path for it.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

_MODES = {"interp": 0, "gaussian": 1}


@triton.jit
def _load_xp(x_ptr, buf_ptr, src, j, mask, BN, TB):
    """``xp[src, j]`` for a tile of source times ``src`` (``>= -TB``): ``x`` for ``src >= 0``, else the
    buffer's row ``TB + src``."""
    in_x = src >= 0
    src64 = src.to(tl.int64)
    vx = tl.load(x_ptr + (src64 * BN + j), mask=mask & in_x, other=0.0)
    vb = tl.load(buf_ptr + ((src64 + TB) * BN + j), mask=mask & (src < 0), other=0.0)
    return tl.where(in_x, vx, vb)


@triton.jit
def _delay_fwd_kernel(
    x_ptr,
    buf_ptr,
    y_ptr,
    sh_ptr,
    w0_ptr,
    w1_ptr,
    T,
    BN,
    N,
    TB,
    INTERP: tl.constexpr,
    CT: tl.constexpr,
    TT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t = tl.program_id(0) * TT + tl.arange(0, TT)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = j % N
    jm = j < BN
    sh = tl.load(sh_ptr + n, mask=jm, other=0)
    mask = (t < T)[:, None] & jm[None, :]
    src = t[:, None] - sh[None, :]
    j2 = j[None, :]
    lo = _load_xp(x_ptr, buf_ptr, src, j2, mask, BN, TB).to(CT)
    if INTERP:
        w0 = tl.load(w0_ptr + n, mask=jm, other=0.0).to(CT)
        w1 = tl.load(w1_ptr + n, mask=jm, other=0.0).to(CT)
        hi = _load_xp(x_ptr, buf_ptr, src - 1, j2, mask, BN, TB).to(CT)
        y = w0[None, :] * lo + w1[None, :] * hi
    else:
        y = lo
    tl.store(y_ptr + (t[:, None].to(tl.int64) * BN + j2), y, mask=mask)


@triton.jit
def _delay_bwd_x_kernel(
    gy_ptr,
    gx_ptr,
    gbuf_ptr,
    sh_ptr,
    w0_ptr,
    w1_ptr,
    T,
    BN,
    N,
    TB,
    INTERP: tl.constexpr,
    CT: tl.constexpr,
    TT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``g_xp[p] = sum_k w_k g_y[p - TB + k]`` for rows ``p`` of ``xp`` (``0 <= p < TB + T``)."""
    p = tl.program_id(0) * TT + tl.arange(0, TT)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = j % N
    jm = j < BN
    sh = tl.load(sh_ptr + n, mask=jm, other=0)
    mask = (p < TB + T)[:, None] & jm[None, :]
    j2 = j[None, :]
    t = (p - TB)[:, None] + sh[None, :]  # the output step that reads xp[p] through tap sh
    g = tl.load(gy_ptr + (t.to(tl.int64) * BN + j2), mask=mask & (t >= 0) & (t < T), other=0.0).to(CT)
    if INTERP:
        w0 = tl.load(w0_ptr + n, mask=jm, other=0.0).to(CT)
        w1 = tl.load(w1_ptr + n, mask=jm, other=0.0).to(CT)
        g1 = tl.load(gy_ptr + ((t + 1).to(tl.int64) * BN + j2), mask=mask & (t + 1 >= 0) & (t + 1 < T), other=0.0).to(
            CT
        )
        g = w0[None, :] * g + w1[None, :] * g1
    p2 = p[:, None].to(tl.int64)
    tl.store(gx_ptr + ((p2 - TB) * BN + j2), g, mask=mask & (p2 >= TB))
    tl.store(gbuf_ptr + (p2 * BN + j2), g, mask=mask & (p2 < TB))


@triton.jit
def _delay_bwd_d_kernel(
    gy_ptr,
    x_ptr,
    buf_ptr,
    part_ptr,
    sh_ptr,
    c_ptr,
    T,
    BN,
    N,
    TB,
    TAPS,
    INTERP: tl.constexpr,
    CT: tl.constexpr,
    TT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``part[tile, j] = sum_{t in tile} g_y[t, j] * sum_k c_k[n] xp[t - k, j]``."""
    t = tl.program_id(0) * TT + tl.arange(0, TT)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = j % N
    jm = j < BN
    mask = (t < T)[:, None] & jm[None, :]
    j2 = j[None, :]
    t2 = t[:, None]
    gy = tl.load(gy_ptr + (t2.to(tl.int64) * BN + j2), mask=mask, other=0.0).to(CT)
    if INTERP:
        sh = tl.load(sh_ptr + n, mask=jm, other=0)
        src = t2 - sh[None, :]
        lo = _load_xp(x_ptr, buf_ptr, src, j2, mask, BN, TB).to(CT)
        hi = _load_xp(x_ptr, buf_ptr, src - 1, j2, mask, BN, TB).to(CT)
        acc = hi - lo
    else:
        acc = tl.zeros([TT, BLOCK], CT)
        for k in range(TAPS):
            ck = tl.load(c_ptr + k * N + n, mask=jm, other=0.0).to(CT)
            acc += ck[None, :] * _load_xp(x_ptr, buf_ptr, t2 - k, j2, mask, BN, TB).to(CT)
    part = tl.sum(gy * acc, axis=0)
    tl.store(part_ptr + (tl.program_id(0).to(tl.int64) * BN + j), part, mask=jm)


def _device_guard(t: Tensor):
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


# (TT, BLOCK, num_warps); overridable for tuning and for the interpreter tests.
LAUNCH = {"tt": 16, "block": 128, "warps": 4}


def _params(delays: Tensor, dt: float, taps: int, mode: str, sigma: float, x_dtype: torch.dtype, need_c: bool):
    """Per-neuron shift ``sh`` (int32), weights ``w0, w1`` (x's dtype), the Gaussian's ``c [taps, N]``
    and the clamp's gradient mask, computed like :func:`~spiketime.functional.delay.delay_kernel`."""
    with torch.no_grad():
        q = delays / dt
        d = q.clamp(0.0, float(taps - 1))
        inside = (q >= 0.0) & (q <= float(taps - 1))
        c = None
        if mode == "interp":
            nf = torch.floor(d).clamp(max=float(taps - 2))
            f = d - nf
            w0 = ((1.0 - f) * 1.0 + f * 0.0).to(x_dtype)
            w1 = ((1.0 - f) * 0.0 + f * 1.0).to(x_dtype)
            sh = nf.to(torch.int32)
        else:
            sh = torch.floor(d + 0.5).to(torch.int32)
            w0 = w1 = None
            if need_c:
                s = sigma / dt
                k = torch.arange(taps, device=delays.device, dtype=delays.dtype)
                u = (k[:, None] - d[None, :]) / s  # [taps, N]
                g = torch.exp(-0.5 * u**2) / (math.sqrt(2.0 * math.pi) * s)
                c = g * u / s  # dg_k / dd
    return sh.contiguous(), w0, w1, c, inside


class _AxonalDelay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, buf: Tensor, delays: Tensor, dt: float, taps: int, mode: str, sigma: float):
        T, B, N = x.shape
        bn, tb = B * N, taps - 1
        x = x.contiguous()
        buf = buf.contiguous()
        sh, w0, w1, _, _ = _params(delays, dt, taps, mode, sigma, x.dtype, need_c=False)
        ct = tl.float64 if x.dtype == torch.float64 else tl.float32
        y = torch.empty_like(x)
        tt, block, warps = LAUNCH["tt"], LAUNCH["block"], LAUNCH["warps"]
        interp = mode == "interp"
        if T and bn:
            with _device_guard(x):
                _delay_fwd_kernel[(triton.cdiv(T, tt), triton.cdiv(bn, block))](
                    x,
                    buf if tb else x,
                    y,
                    sh,
                    w0 if interp else x,
                    w1 if interp else x,
                    T,
                    bn,
                    N,
                    tb,
                    INTERP=interp,
                    CT=ct,
                    TT=tt,
                    BLOCK=block,
                    num_warps=warps,
                    enable_fp_fusion=False,
                )
        ctx.save_for_backward(x, buf, delays)
        ctx.args = (dt, taps, mode, sigma)
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, buf, delays = ctx.saved_tensors
        dt, taps, mode, sigma = ctx.args
        T, B, N = x.shape
        bn, tb = B * N, taps - 1
        gy = gy.contiguous()
        need_x, need_buf, need_d = ctx.needs_input_grad[:3]
        sh, w0, w1, c, inside = _params(delays, dt, taps, mode, sigma, x.dtype, need_c=need_d)
        ct = tl.float64 if x.dtype == torch.float64 else tl.float32
        interp = mode == "interp"
        tt, block, warps = LAUNCH["tt"], LAUNCH["block"], LAUNCH["warps"]
        g_x = g_buf = g_d = None
        if need_x or need_buf:
            g_x = torch.empty_like(x)
            g_buf = torch.empty_like(buf)
            if bn and T + tb:
                with _device_guard(x):
                    _delay_bwd_x_kernel[(triton.cdiv(T + tb, tt), triton.cdiv(bn, block))](
                        gy,
                        g_x,
                        g_buf if tb else g_x,
                        sh,
                        w0 if interp else x,
                        w1 if interp else x,
                        T,
                        bn,
                        N,
                        tb,
                        INTERP=interp,
                        CT=ct,
                        TT=tt,
                        BLOCK=block,
                        num_warps=warps,
                        enable_fp_fusion=False,
                    )
            if not need_x:
                g_x = None
            if not need_buf:
                g_buf = None
        if need_d:
            acc = torch.float64 if x.dtype == torch.float64 else torch.float32
            n_tiles = triton.cdiv(T, tt)
            part = torch.zeros((max(n_tiles, 1), B, N), dtype=acc, device=x.device)
            if T and bn:
                cc = c.to(acc).contiguous() if c is not None else part
                with _device_guard(x):
                    _delay_bwd_d_kernel[(n_tiles, triton.cdiv(bn, block))](
                        gy,
                        x,
                        buf if tb else x,
                        part,
                        sh,
                        cc,
                        T,
                        bn,
                        N,
                        tb,
                        taps,
                        INTERP=interp,
                        CT=ct,
                        TT=tt,
                        BLOCK=block,
                        num_warps=warps,
                        enable_fp_fusion=False,
                    )
            g = part.sum((0, 1)).to(delays.dtype)
            g_d = torch.where(inside, g / dt, torch.zeros_like(g))
        return g_x, g_buf, g_d, None, None, None, None


def axonal_delay_triton(
    x_seq: Tensor, delays: Tensor, dt: float, taps: int, mode: str, sigma: float = 0.0, buffer: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Axonal delays ``y_i[t] = x_i(t - D_i)`` through the Triton kernels: same values and gradients (in
    ``x_seq``, ``delays`` and ``buffer``) as :func:`~spiketime.functional.delay.axonal_delay` with
    ``smooth=False``. ``buffer``: ``[taps-1, B, N]`` (None: zeros). Returns ``y [T, B, N]`` and the new
    buffer (the last ``taps - 1`` steps of ``cat(buffer, x_seq)``).

    The arguments are not validated here: :func:`~spiketime.functional.delay.axonal_delay`, the public entry,
    checks them (mode, taps, dt, shapes) before it dispatches to this kernel."""
    T, B, N = x_seq.shape
    if buffer is None:
        buffer = x_seq.new_zeros((taps - 1, B, N))
    buf = buffer.to(x_seq.dtype)
    y = _AxonalDelay.apply(x_seq, buf, delays, float(dt), int(taps), mode, float(sigma))
    new_buffer = torch.cat([buf[T:], x_seq[max(0, T - (taps - 1)) :]], dim=0)
    return y, new_buffer
