r"""The fused LIF scan's implementations that need no Triton: the PyTorch loop, and the compiled C scan.

The equations and the adjoint recursion are in :mod:`spiketime.kernels.lif_scan`'s docstring. This module
sits below both :mod:`~spiketime.kernels.lif_scan` (the custom ops, whose CPU kernel is :func:`_fwd_any` /
:func:`_bwd_any`) and :mod:`~spiketime.kernels.triton_lif` (which falls back to them for what its kernels do
not cover), so that imports go one way: ``lif_scan -> triton_lif -> lif_loop -> cpu``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spiketime.kernels import cpu
from spiketime.kernels.cpu import lif_scan_bwd_c, lif_scan_fwd_c
from spiketime.surrogate import make_surrogate

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


def _dummy(like: Tensor) -> Tensor:
    return like.new_zeros(0)


def lif_scan_fwd_torch(
    x: Tensor,
    beta: Tensor,
    alpha: Tensor | None,
    v0: Tensor,
    i0: Tensor,
    s0: Tensor,
    theta: float,
    reset: int,
    surrogate: str,
    scale: float,
    smooth: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Plain-PyTorch forward of the scan: returns ``s [T,B,N]``, ``v [T,B,N]``, ``i [T,B,N]`` (empty
    without a synapse) and the final current ``i_T [B,N]``."""
    T = x.shape[0]
    sur = make_surrogate(surrogate, scale)
    s_seq = torch.empty_like(x)
    v_seq = torch.empty_like(x)
    i_seq = torch.empty_like(x) if alpha is not None else _dummy(x)
    one_m_beta = 1.0 - beta
    v, i, s = v0.to(x.dtype), i0.to(x.dtype), s0.to(x.dtype)
    for t in range(T):
        if alpha is not None:
            i = torch.addcmul(x[t], alpha, i, out=i_seq[t])
        else:
            i = x[t]
        vt = v_seq[t]
        if reset == 1:
            torch.mul(v, 1.0 - s, out=vt)
            vt.mul_(beta)
        else:
            torch.mul(v, beta, out=vt)
        vt.addcmul_(one_m_beta, i)
        if reset == 0:
            vt.sub_(s, alpha=theta)
        v = vt
        s = s_seq[t].copy_(sur.primitive(v - theta) if smooth else v > theta)
    i_T = i.clone() if T else i0.to(x.dtype).clone()
    return s_seq, v_seq, i_seq, i_T


def lif_scan_bwd_torch(
    g_s: Tensor,
    g_v: Tensor,
    g_iT: Tensor,
    v_seq: Tensor,
    i_all: Tensor,
    beta: Tensor,
    alpha: Tensor | None,
    v0: Tensor,
    i0: Tensor,
    s0: Tensor,
    theta: float,
    reset: int,
    surrogate: str,
    scale: float,
    smooth: bool,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Plain-PyTorch backward of the scan (adjoint recursion in the module docstring): returns the
    gradients of ``x, beta, alpha`` (empty without a synapse), ``v0, i0, s0``. ``i_all`` is the current
    ``i [T,B,N]`` (the input ``x`` itself without a synapse). An empty ``g_s`` or ``g_v`` means zero; an
    empty ``i_all`` means that ``beta`` and ``alpha`` need no gradient (zeros are returned for them)."""
    T = v_seq.shape[0]
    sur = make_surrogate(surrogate, scale)
    syn = alpha is not None
    g_x = torch.empty_like(v_seq)
    g_beta = torch.zeros_like(v0)  # [B, N], summed over B at the end
    g_alpha = torch.zeros_like(v0) if syn else None
    a_v_next = torch.zeros_like(v0)
    a_i_carry = g_iT.clone()  # contribution to a_i[t] from the future (alpha * a_i[t+1], or g_iT at T-1)
    one_m_beta = 1.0 - beta
    for t in range(T - 1, -1, -1):
        v = v_seq[t]
        v_prev = v_seq[t - 1] if t > 0 else v0
        s_prev = _spikes(v_seq[t - 1], theta, sur, smooth) if t > 0 else s0
        a_s = g_s[t].clone() if g_s.numel() else torch.zeros_like(v)
        if not detach_reset and t < T - 1:
            if reset == 0:
                a_s.sub_(a_v_next, alpha=theta)
            elif reset == 1:
                a_s.sub_(beta * v * a_v_next)
        a_v = sur.grad(v - theta) * a_s
        if g_v.numel():
            a_v.add_(g_v[t])
        if t < T - 1:
            if reset == 1:
                a_v.add_(a_v_next * beta * (1.0 - _spikes(v, theta, sur, smooth)))
            else:
                a_v.addcmul_(a_v_next, beta)
        a_i = a_v * one_m_beta
        a_i.add_(a_i_carry)
        g_x[t] = a_i
        if i_all.numel():
            v_eff = v_prev * (1.0 - s_prev) if reset == 1 else v_prev
            g_beta.addcmul_(a_v, v_eff - i_all[t])
            if syn:
                g_alpha.addcmul_(a_i, i_all[t - 1] if t > 0 else i0)
        if syn:
            a_i_carry = a_i * alpha
        else:
            a_i_carry = torch.zeros_like(a_i)
        a_v_next = a_v
    if T == 0:
        return (
            g_x,
            g_beta.sum(0),
            (g_alpha.sum(0) if syn else _dummy(v_seq)),
            torch.zeros_like(v0),
            g_iT.clone(),
            torch.zeros_like(s0),
        )
    # a_v_next = a_v[0]; propagate to the initial state
    if reset == 1:
        g_v0 = a_v_next * beta * (1.0 - s0)
        g_s0 = torch.zeros_like(s0) if detach_reset else -beta * v0 * a_v_next
    else:
        g_v0 = a_v_next * beta
        g_s0 = -theta * a_v_next if reset == 0 and not detach_reset else torch.zeros_like(s0)
    g_i0 = a_i_carry if syn else torch.zeros_like(i0)
    return g_x, g_beta.sum(0), (g_alpha.sum(0) if syn else _dummy(v_seq)), g_v0, g_i0, g_s0


def _spikes(v: Tensor, theta: float, sur: Any, smooth: bool) -> Tensor:
    """``s = H(v - theta)`` (or the smooth primitive), recomputed from the saved membrane."""
    return sur.primitive(v - theta) if smooth else (v > theta).to(v.dtype)


def _fwd_any(
    x: Tensor,
    beta: Tensor,
    alpha: Tensor | None,
    v0: Tensor,
    i0: Tensor,
    s0: Tensor,
    theta: float,
    reset: int,
    surrogate: str,
    scale: float,
    smooth: bool,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fused forward without Triton (the contract of ``spiketime::lif_scan_fwd``): the compiled C scan where
    :func:`spiketime.kernels.cpu.supports` the compute dtype, else :func:`lif_scan_fwd_torch`."""
    ct = torch.promote_types(x.dtype, beta.dtype)
    xc = x.to(ct)
    scan = lif_scan_fwd_c if cpu.supports(xc) else lif_scan_fwd_torch
    s, v, i, i_T = scan(
        xc, beta.to(ct), None if alpha is None else alpha.to(ct), v0, i0, s0, theta, reset, surrogate, scale, smooth
    )
    return s.to(x.dtype), v, i, i_T


def _bwd_any(
    g_s: Tensor,
    g_v: Tensor,
    g_iT: Tensor,
    v_seq: Tensor,
    i_all: Tensor,
    beta: Tensor,
    alpha: Tensor | None,
    v0: Tensor,
    i0: Tensor,
    s0: Tensor,
    theta: float,
    reset: int,
    surrogate: str,
    scale: float,
    smooth: bool,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused backward without Triton (the contract of ``spiketime::lif_scan_bwd``): the compiled C scan where
    it supports ``v_seq``, else :func:`lif_scan_bwd_torch`."""
    ct = v_seq.dtype
    scan = lif_scan_bwd_c if cpu.supports(v_seq) else lif_scan_bwd_torch
    g_x, g_beta, g_alpha, g_v0, g_i0, g_s0 = scan(
        g_s.to(ct),
        g_v.to(ct),
        g_iT.to(ct),
        v_seq,
        i_all.to(ct),
        beta.to(ct),
        None if alpha is None else alpha.to(ct),
        v0.to(ct),
        i0.to(ct),
        s0.to(ct),
        theta,
        reset,
        surrogate,
        scale,
        smooth,
        detach_reset,
    )
    return (
        g_x,
        g_beta.to(beta.dtype),
        g_alpha if alpha is None else g_alpha.to(alpha.dtype),
        g_v0.to(v0.dtype),
        g_i0.to(i0.dtype),
        g_s0.to(s0.dtype),
    )
