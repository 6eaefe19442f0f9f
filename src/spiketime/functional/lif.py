"""Leaky integrate-and-fire neuron: one step function on explicit state, and its scan over time.

Discretisation (METHODS section 1), with ``beta = exp(-dt/tau_mem)`` and ``alpha = exp(-dt/tau_syn)``::

    i[t] = alpha * i[t-1] + x[t]          (current-based synapse, CuBa; without one: i[t] = x[t])
    v[t] = beta * v[t-1] + (1 - beta) * i[t] - theta * s[t-1]        reset = "subtract"
    v[t] = beta * v[t-1] * (1 - s[t-1]) + (1 - beta) * i[t]          reset = "zero"
    s[t] = H(v[t] - theta)

``H`` is the Heaviside step with the surrogate's gradient (:func:`spiketime.surrogate.spike`),
or, with ``smooth=True``, the surrogate's smooth primitive (a differentiable network whose exact
gradient is the surrogate gradient; used by the gradient-check tests and surrogate-forward training).
``detach_reset`` removes the reset term from the graph (needed where online rules equal BPTT).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spiketime.kernels import check_backend, select
from spiketime.kernels.lif_scan import lif_scan
from spiketime.surrogate import FastSigmoid, Surrogate, spike


class LIFState(NamedTuple):
    """The state of a LIF layer: membrane ``v``, synaptic current ``i`` and last spikes ``s``, each ``[B, N]``."""

    v: Tensor  # membrane potential [B, N]
    i: Tensor  # synaptic current [B, N] (equals the last input without a synapse)
    s: Tensor  # last spikes [B, N]


class LIFParams(NamedTuple):
    """A LIF layer's parameters: time constants (ms), threshold, reset (``subtract | zero``), surrogate, whether the reset is detached from the gradient, smooth (surrogate-forward) spikes."""

    tau_mem: Tensor  # [N] or scalar, ms, > 0
    tau_syn: Tensor | None = None  # [N] or scalar, ms; None: no synaptic current
    theta: float = 1.0
    reset: str = "subtract"  # "subtract" | "zero"
    surrogate: Surrogate = FastSigmoid()
    detach_reset: bool = False
    smooth: bool = False


RESETS = ("subtract", "zero")


def decay(tau: Tensor, dt: float) -> Tensor:
    """``exp(-dt / tau)``: the per-step decay of a time constant ``tau`` (ms) at step ``dt`` (ms)."""
    return torch.exp(-dt / tau)


def lif_init(batch: int, n: int, like: Tensor) -> LIFState:
    """All-zero LIF state of shape ``[batch, n]`` with the dtype and device of ``like``."""
    z = like.new_zeros(batch, n)
    return LIFState(z, z, z)


def lif_step(x: Tensor, state: LIFState, p: LIFParams, dt: float) -> tuple[Tensor, LIFState]:
    """One LIF step: input current ``x`` [B, N] -> spikes ``s[t]`` [B, N] and the new state."""
    beta = decay(p.tau_mem, dt)
    i = x if p.tau_syn is None else decay(p.tau_syn, dt) * state.i + x
    s_prev = state.s.detach() if p.detach_reset else state.s
    if p.reset == "subtract":
        v = beta * state.v + (1.0 - beta) * i - p.theta * s_prev
    elif p.reset == "zero":
        v = beta * state.v * (1.0 - s_prev) + (1.0 - beta) * i
    else:
        raise ValueError(f"reset must be one of {RESETS}, got {p.reset!r}")
    s = p.surrogate.primitive(v - p.theta) if p.smooth else spike(v - p.theta, p.surrogate)
    return s, LIFState(v, i, s)


def scan_decay(tau: Tensor, dt: float, n: int, like: Tensor) -> Tensor:
    """``exp(-dt/tau)`` as the fused scan takes it: a contiguous ``[N]`` tensor (a scalar ``tau`` is expanded),
    float64 for float64 input and float32 otherwise (bf16/fp16 currents are integrated in float32)."""
    beta = decay(tau, dt)
    beta = beta.expand(n).contiguous() if beta.dim() == 0 else beta
    return beta.to(torch.float64 if like.dtype == torch.float64 else torch.float32)


def lif_sequence(
    x_seq: Tensor,
    p: LIFParams,
    dt: float,
    state: LIFState | None = None,
    record_v: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, LIFState] | tuple[Tensor, LIFState, Tensor]:
    """Run :func:`lif_step` over ``x_seq`` [T, B, N]; returns spikes [T, B, N], final state (and ``v`` [T, B, N]).

    ``backend``: ``"auto"``/``"fused"`` run the fused scan (:mod:`spiketime.kernels.lif_scan`: one op for
    the whole sequence, hand-written backward: the C kernel, Triton or its PyTorch loop, as
    :func:`spiketime.kernels.select` decides for op ``"lif"``); ``"reference"`` steps :func:`lif_step` under
    autograd. Both compute the same function and gradients. An empty sequence (``T = 0``) always takes the
    reference path."""
    if x_seq.dim() != 3:
        raise ValueError(f"x_seq must be [T, B, N], got shape {tuple(x_seq.shape)}")
    if p.reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {p.reset!r}")
    if state is None:
        state = lif_init(x_seq.shape[1], x_seq.shape[2], x_seq)
    check_backend(backend)
    if x_seq.shape[0] > 0 and select("lif", backend, x_seq.device, x_seq.dtype) != "reference":
        n = x_seq.shape[2]
        beta = scan_decay(p.tau_mem, dt, n, x_seq)
        alpha = None if p.tau_syn is None else scan_decay(p.tau_syn, dt, n, x_seq)
        s, v, i_last = lif_scan(
            x_seq, beta, alpha, state.v, state.i, state.s, p.theta, p.reset, p.surrogate, p.smooth, p.detach_reset
        )
        i_last = i_last if alpha is not None else x_seq[-1]
        final = LIFState(v[-1].to(x_seq.dtype), i_last.to(x_seq.dtype), s[-1])
        return (s, final, v) if record_v else (s, final)
    spikes, volts = [], []
    for x in x_seq:
        s, state = lif_step(x, state, p, dt)
        spikes.append(s)
        if record_v:
            volts.append(state.v)
    out = torch.stack(spikes)
    return (out, state, torch.stack(volts)) if record_v else (out, state)


def lif_sequence_recurrent(
    x_seq: Tensor,
    w_rec: Tensor,
    p: LIFParams,
    dt: float,
    state: LIFState | None = None,
    record_v: bool = False,
) -> tuple[Tensor, LIFState] | tuple[Tensor, LIFState, Tensor]:
    """Recurrent LIF layer: :func:`lif_step` on ``x[t] + s[t-1] @ w_rec^T`` over ``x_seq`` [T, B, N].

    ``w_rec`` [N, N] (row: postsynaptic neuron) acts on the layer's own spikes of the previous step
    (``state.s``; zero at the start), without delay. Returns spikes [T, B, N], the final state (and ``v``
    [T, B, N]), like :func:`lif_sequence`. Always the step-by-step autograd path: the fused scan cannot
    take a matmul inside each step."""
    if x_seq.dim() != 3:
        raise ValueError(f"x_seq must be [T, B, N], got shape {tuple(x_seq.shape)}")
    n = x_seq.shape[2]
    if not torch.is_tensor(w_rec) or tuple(w_rec.shape) != (n, n):
        shape = tuple(w_rec.shape) if torch.is_tensor(w_rec) else type(w_rec).__name__
        raise ValueError(f"w_rec must have shape [N, N] = ({n}, {n}), got {shape}")
    if p.reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {p.reset!r}")
    if state is None:
        state = lif_init(x_seq.shape[1], n, x_seq)
    w_t = w_rec.t().to(x_seq.dtype)
    spikes, volts = [], []
    for x in x_seq:
        s, state = lif_step(x + state.s.to(w_t.dtype) @ w_t, state, p, dt)
        spikes.append(s)
        if record_v:
            volts.append(state.v)
    out = torch.stack(spikes) if spikes else x_seq.new_zeros(x_seq.shape)
    return (out, state, torch.stack(volts) if volts else x_seq.new_zeros(x_seq.shape)) if record_v else (out, state)
