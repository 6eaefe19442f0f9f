"""Non-spiking leaky integrator (LI), the usual readout.

``v[t] = beta * v[t-1] + (1 - beta) * x[t]`` with ``beta = exp(-dt/tau)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spiketime.functional.lif import decay, scan_decay
from spiketime.kernels import check_backend, select
from spiketime.kernels.lif_scan import lif_scan
from spiketime.surrogate import FastSigmoid


class LIState(NamedTuple):
    v: Tensor  # [B, N]


def li_step(x: Tensor, state: LIState, tau: Tensor, dt: float) -> tuple[Tensor, LIState]:
    """One LI step: input [B, N] -> membrane ``v[t]`` [B, N] (also the new state)."""
    beta = decay(tau, dt)
    v = beta * state.v + (1.0 - beta) * x
    return v, LIState(v)


def li_sequence(
    x_seq: Tensor, tau: Tensor, dt: float, state: LIState | None = None, backend: str = "auto"
) -> tuple[Tensor, LIState]:
    """Run :func:`li_step` over ``x_seq`` [T, B, N]; returns the membrane trace [T, B, N] and final state.

    ``backend`` as in :func:`spiketime.functional.lif.lif_sequence` (op ``"li"`` of
    :func:`spiketime.kernels.select`): the fused path is the LIF scan with no reset and an unreachable
    threshold (no spikes), i.e. exactly this leaky integrator."""
    if x_seq.dim() != 3:
        raise ValueError(f"x_seq must be [T, B, N], got shape {tuple(x_seq.shape)}")
    if state is None:
        state = LIState(x_seq.new_zeros(x_seq.shape[1:]))
    check_backend(backend)
    if x_seq.shape[0] > 0 and select("li", backend, x_seq.device, x_seq.dtype) != "reference":
        beta = scan_decay(tau, dt, x_seq.shape[2], x_seq)
        zeros = torch.zeros_like(state.v)
        _, v, _ = lif_scan(x_seq, beta, None, state.v, zeros, zeros, math.inf, "none", FastSigmoid())
        v = v.to(x_seq.dtype)
        return v, LIState(v[-1])
    out = []
    for x in x_seq:
        v, state = li_step(x, state, tau, dt)
        out.append(v)
    return torch.stack(out), state
