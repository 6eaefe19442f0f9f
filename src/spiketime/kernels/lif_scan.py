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
``torch.compile`` treats them as single nodes. Their CPU kernel is the compiled C scan, or the PyTorch
loop (one in-place update per step and no autograd graph) without a C compiler, both in
:mod:`spiketime.kernels.lif_loop`; on CUDA the Triton kernels of :mod:`spiketime.kernels.triton_lif` are
used when Triton is installed, else the same loop. Imports go one way: ``lif_scan -> triton_lif ->
lif_loop``. Which of them runs for a call is decided by :func:`spiketime.kernels.select`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spiketime.kernels import triton_available
from spiketime.kernels.lif_loop import (  # noqa: F401  (re-exported: the CPU kernel and its PyTorch loop)
    RESET_CODES,
    _bwd_any,
    _fwd_any,
    lif_scan_bwd_torch,
    lif_scan_fwd_torch,
)
from spiketime.surrogate import kernel_args

# ---------------------------------------------------------------------------------------------
# torch.library custom ops: CPU kernel = lif_loop's (C or loop); CUDA kernel = Triton when importable.
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("spiketime::lif_scan_fwd", mutates_args=())
def lif_scan_fwd(
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
    """Forward scan: ``(s [T,B,N] in x's dtype, v [T,B,N], i [T,B,N] or empty, i_T [B,N])``; ``v, i, i_T``
    in the compute dtype (``x``'s promoted with ``beta``'s). ``detach_reset`` only matters to the backward."""
    return _fwd_any(x, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset)


@torch.library.custom_op("spiketime::lif_scan_bwd", mutates_args=())
def lif_scan_bwd(
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
    """Backward scan: gradients of ``x`` (compute dtype), ``beta, alpha`` (empty without a synapse),
    ``v0, i0, s0``."""
    return _bwd_any(
        g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, theta, reset, surrogate, scale, smooth, detach_reset
    )


def _triton_or(fallback: Any, name: str) -> Any:
    """The CUDA kernel: Triton's ``name`` when Triton is importable, else ``fallback`` (the loop)."""

    def kernel(*args: Any) -> Any:
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
def _fwd_fake(
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
    ct = torch.promote_types(x.dtype, beta.dtype)
    i_seq = x.new_empty(x.shape if alpha is not None else (0,), dtype=ct)
    return torch.empty_like(x), x.new_empty(x.shape, dtype=ct), i_seq, x.new_empty(x.shape[1:], dtype=ct)


@lif_scan_bwd.register_fake
def _bwd_fake(
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
    g_alpha = torch.empty_like(alpha) if alpha is not None else beta.new_empty(0)
    return (
        torch.empty_like(v_seq),
        torch.empty_like(beta),
        g_alpha,
        torch.empty_like(v0),
        torch.empty_like(i0),
        torch.empty_like(s0),
    )


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
    g_x, g_beta, g_alpha, g_v0, g_i0, g_s0 = lif_scan_bwd(
        g_s, g_v, g_iT, v_seq, i_all, beta, alpha, v0, i0, s0, *ctx.args
    )
    return (
        g_x.to(ctx.x_dtype),
        g_beta,
        g_alpha if alpha is not None else None,
        g_v0,
        g_i0,
        g_s0,
        None,
        None,
        None,
        None,
        None,
        None,
    )


lif_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def surrogate_spec(surrogate: Any) -> tuple[str, float]:
    """``(registry name, shape parameter)`` of a surrogate dataclass, as the custom ops take it (its entry in
    :data:`spiketime.surrogate.TABLE`)."""
    return kernel_args(surrogate)


def lif_scan(
    x: Tensor,
    beta: Tensor,
    alpha: Tensor | None,
    v0: Tensor,
    i0: Tensor,
    s0: Tensor,
    theta: float,
    reset: str,
    surrogate: Any,
    smooth: bool = False,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused scan over ``x [T,B,N]`` with per-neuron ``beta, alpha [N]``: returns spikes ``s [T,B,N]``,
    membranes ``v [T,B,N]`` and the final current ``i_T [B,N]`` (differentiable in every tensor input)."""
    name, scale = surrogate_spec(surrogate)
    s, v, _, i_T = lif_scan_fwd(
        x, beta, alpha, v0, i0, s0, float(theta), RESET_CODES[reset], name, scale, bool(smooth), bool(detach_reset)
    )
    return s, v, i_T
