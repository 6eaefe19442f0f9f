r"""Fused LIF scan over a whole sequence: one forward pass and one hand-written backward pass.

The model is :mod:`spiketime.functional.lif`'s, for per-neuron decays ``beta, alpha`` ``[N]``::

    i[t] = alpha * i[t-1] + x[t]                   (no synapse: alpha = None, i[t] = x[t])
    v[t] = beta * v[t-1] + (1 - beta) * i[t] - theta * s[t-1]          reset 0 = "subtract"
    v[t] = beta * v[t-1] * (1 - s[t-1]) + (1 - beta) * i[t]            reset 1 = "zero"
    v[t] = beta * v[t-1] + (1 - beta) * i[t]                           reset 2 = "none"
    s[t] = H(v[t] - theta)            (smooth: the surrogate's primitive P(v[t] - theta))

The backward pass runs the adjoint recursion in reverse time (``a_x = dL/dx``, ``sg = surrogate grad``)::

    a_s[t] = g_s[t] + [next-step reset term: -theta a_v[t+1]  | -beta v[t] a_v[t+1] | 0]
    a_v[t] = g_v[t] + sg(v[t] - theta) a_s[t] + a_v[t+1] * [beta | beta (1 - s[t]) | beta]
    a_i[t] = (1 - beta) a_v[t] + alpha a_i[t+1]        (a_i[T-1] also gets g_iT, the final current's grad)
    dL/dx[t] = a_i[t];  dL/dbeta = sum_t,b a_v[t] (v'[t-1] - i[t]);  dL/dalpha = sum_t,b a_i[t] i[t-1]

with ``v'[t-1] = v[t-1]`` (``(1 - s[t-1]) v[t-1]`` for the zero reset); ``detach_reset`` drops the reset
terms from ``a_s``. Only ``v`` (and ``i`` with a synapse) is kept for the backward pass: ``s`` is
recomputed from ``v``. A leaky integrator (LI readout) is the same scan with reset 2 and no spikes.

Both passes are ``torch.library`` custom ops (``spiketime::lif_scan_fwd``/``lif_scan_bwd``), so
``torch.compile`` treats them as single nodes. Their CPU kernel is the loop below (one in-place
update per step and no autograd graph); on CUDA the Triton kernels of
:mod:`spiketime.kernels.triton_lif` are used when Triton is installed, else the same loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spiketime.kernels import cpu
from spiketime.kernels.cpu import lif_scan_bwd_c, lif_scan_fwd_c
from spiketime.surrogate import SURROGATES, make_surrogate

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


def _dummy(like: Tensor) -> Tensor:
    return like.new_zeros(0)


def lif_scan_fwd_torch(
    x: Tensor, beta: Tensor, alpha: Tensor | None, v0: Tensor, i0: Tensor, s0: Tensor,
    theta: float, reset: int, surrogate: str, scale: float, smooth: bool,
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
    g_s: Tensor, g_v: Tensor, g_iT: Tensor, v_seq: Tensor, i_all: Tensor,
    beta: Tensor, alpha: Tensor | None, v0: Tensor, i0: Tensor, s0: Tensor,
    theta: float, reset: int, surrogate: str, scale: float, smooth: bool, detach_reset: bool,
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
        return g_x, g_beta.sum(0), (g_alpha.sum(0) if syn else _dummy(v_seq)), torch.zeros_like(v0), g_iT.clone(), torch.zeros_like(s0)
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


# ---------------------------------------------------------------------------------------------
# torch.library custom ops: CPU kernel = the loops above; CUDA kernel = Triton when importable.
# ---------------------------------------------------------------------------------------------

def _fwd_any(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset):
    ct = torch.promote_types(x.dtype, beta.dtype)
    xc = x.to(ct)
    scan = lif_scan_fwd_c if cpu.supports(xc) else lif_scan_fwd_torch
    s, v, i, i_T = scan(xc, beta.to(ct), None if alpha is None else alpha.to(ct), v0, i0, s0, theta, reset,
                        surrogate, scale, smooth)
    return s.to(x.dtype), v, i, i_T


def _bwd_any(g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth,
             detach_reset):
    ct = v_seq.dtype
    scan = lif_scan_bwd_c if cpu.supports(v_seq) else lif_scan_bwd_torch
    g_x, g_beta, g_alpha, g_v0, g_i0, g_s0 = scan(
        g_s.to(ct), g_v.to(ct), g_iT.to(ct), v_seq, i_all.to(ct), beta.to(ct),
        None if alpha is None else alpha.to(ct), v0.to(ct), i0.to(ct), s0.to(ct),
        theta, reset, surrogate, scale, smooth, detach_reset)
    return (g_x, g_beta.to(beta.dtype), g_alpha if alpha is None else g_alpha.to(alpha.dtype),
            g_v0.to(v0.dtype), g_i0.to(i0.dtype), g_s0.to(s0.dtype))


@torch.library.custom_op("spiketime::lif_scan_fwd", mutates_args=())
def lif_scan_fwd(
    x: Tensor, beta: Tensor, alpha: Tensor | None, v0: Tensor, i0: Tensor, s0: Tensor,
    theta: float, reset: int, surrogate: str, scale: float, smooth: bool, detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward scan: ``(s [T,B,N] in x's dtype, v [T,B,N], i [T,B,N] or empty, i_T [B,N])``; ``v, i, i_T``
    in the compute dtype (``x``'s promoted with ``beta``'s). ``detach_reset`` only matters to the backward."""
    return _fwd_any(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset)


@torch.library.custom_op("spiketime::lif_scan_bwd", mutates_args=())
def lif_scan_bwd(
    g_s: Tensor, g_v: Tensor, g_iT: Tensor, v_seq: Tensor, i_all: Tensor, beta: Tensor, alpha: Tensor | None,
    v0: Tensor, i0: Tensor, s0: Tensor, theta: float, reset: int, surrogate: str, scale: float, smooth: bool,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward scan: gradients of ``x`` (compute dtype), ``beta, alpha`` (empty without a synapse),
    ``v0, i0, s0``."""
    return _bwd_any(g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale,
                    smooth, detach_reset)


def _triton_or(fallback, name):
    """The CUDA kernel: Triton's ``name`` when Triton is importable, else ``fallback`` (the loop)."""
    def kernel(*args):
        from spiketime.kernels import triton_available

        if triton_available():
            from spiketime.kernels import triton_lif

            return getattr(triton_lif, name)(*args)
        return fallback(*args)
    return kernel


_fwd_cuda = _triton_or(_fwd_any, "lif_scan_fwd_triton")
_bwd_cuda = _triton_or(_bwd_any, "lif_scan_bwd_triton")  # Triton skips empty g_s, g_v, i_all like the loops


lif_scan_fwd.register_kernel("cuda")(_fwd_cuda)
lif_scan_bwd.register_kernel("cuda")(_bwd_cuda)


@lif_scan_fwd.register_fake
def _fwd_fake(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset):
    ct = torch.promote_types(x.dtype, beta.dtype)
    i_seq = x.new_empty(x.shape if alpha is not None else (0,), dtype=ct)
    return torch.empty_like(x), x.new_empty(x.shape, dtype=ct), i_seq, x.new_empty(x.shape[1:], dtype=ct)


@lif_scan_bwd.register_fake
def _bwd_fake(g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth,
              detach_reset):
    g_alpha = torch.empty_like(alpha) if alpha is not None else beta.new_empty(0)
    return (torch.empty_like(v_seq), torch.empty_like(beta), g_alpha, torch.empty_like(v0), torch.empty_like(i0),
            torch.empty_like(s0))


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no [T,B,N] of zeros
    x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset = inputs
    _, v_seq, i_seq, _ = output
    # the currents only enter the gradients of the decays: fixed time constants save [T,B,N] of memory
    decay_grad = beta.requires_grad or (alpha is not None and alpha.requires_grad)
    i_all = (x if alpha is None else i_seq) if decay_grad else v_seq.new_empty(0)
    ctx.save_for_backward(v_seq, i_all, beta, alpha, v0, i0, s0)
    ctx.args = (theta, reset, surrogate, scale, smooth, detach_reset)
    ctx.x_dtype = x.dtype


def _backward(ctx: Any, g_s: Tensor | None, g_v: Tensor | None, g_i: Tensor | None, g_iT: Tensor | None) -> tuple:
    v_seq, i_all, beta, alpha, v0, i0, s0 = ctx.saved_tensors
    g_s = v_seq.new_empty(0) if g_s is None else g_s  # empty: zero gradient
    g_v = v_seq.new_empty(0) if g_v is None else g_v
    g_iT = torch.zeros_like(v_seq[0] if len(v_seq) else v0) if g_iT is None else g_iT
    g_x, g_beta, g_alpha, g_v0, g_i0, g_s0 = lif_scan_bwd(g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0,
                                                         *ctx.args)
    return (g_x.to(ctx.x_dtype), g_beta, g_alpha if alpha is not None else None, g_v0, g_i0, g_s0,
            None, None, None, None, None, None)


lif_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


_SHAPE_FIELD = {"fast_sigmoid": "alpha", "gaussian": "sigma", "arctan": "alpha", "triangle": "width", "sigmoid": "alpha"}


def surrogate_spec(surrogate: Any) -> tuple[str, float]:
    """``(registry name, shape parameter)`` of a surrogate dataclass, as the custom ops take it."""
    for name, cls in SURROGATES.items():
        if isinstance(surrogate, cls):
            return name, float(getattr(surrogate, _SHAPE_FIELD[name]))
    raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {surrogate!r}")


def lif_scan(
    x: Tensor, beta: Tensor, alpha: Tensor | None, v0: Tensor, i0: Tensor, s0: Tensor, theta: float,
    reset: str, surrogate: Any, smooth: bool = False, detach_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused scan over ``x [T,B,N]`` with per-neuron ``beta, alpha [N]``: returns spikes ``s [T,B,N]``,
    membranes ``v [T,B,N]`` and the final current ``i_T [B,N]`` (differentiable in every tensor input)."""
    name, scale = surrogate_spec(surrogate)
    s, v, _, i_T = lif_scan_fwd(x, beta, alpha, v0, i0, s0, float(theta), RESET_CODES[reset], name, scale,
                                bool(smooth), bool(detach_reset))
    return s, v, i_T
