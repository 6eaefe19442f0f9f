"""Integer-exact simulator of the hardware model (:mod:`spiketime.hardware.fixed_point`): int64 tensors only.

Inside the time loop every value is an integer: additions, integer matrix products, arithmetic right shifts,
comparisons and clamps. Scales appear only outside the loop, to read the readout membrane in real units. It
reproduces :func:`~spiketime.hardware.fixed_point.run_fake_quant` spike for spike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spiketime.hardware.fixed_point import HardwareLayer, delayed_currents


def to_events(x: Tensor) -> Tensor:
    """Input event counts as int64; a one-line ValueError when ``x`` holds non-integer values."""
    xi = torch.round(x).to(torch.int64)
    if not torch.equal(xi.to(x.dtype), x):
        raise ValueError("x: the integer simulator takes event counts (whole numbers), got fractional values")
    return xi


def run_integer(layers: list[HardwareLayer], x: Tensor) -> tuple[Tensor, list[Tensor], Tensor, int]:
    """Run ``x`` [T, B, N] (event counts) through the integer layers. Returns the readout membrane ``V_o`` [T, B, C]
    in integer units (or the LIF readout's spikes), the hidden spike trains (int64 0/1), the readout's LSB
    ``lambda_o`` [C] (float, for reading ``V_o`` in real units outside the loop) and the saturation count."""
    h = to_events(x)
    spikes: list[Tensor] = []
    saturated = 0
    for lay in layers:
        X = delayed_currents(h, lay.q, lay.delays, lay.kind) << lay.frac  # [T, B, M] int64
        T, Bn, M = X.shape
        i = torch.zeros(Bn, M, dtype=torch.int64)
        v = torch.zeros(Bn, M, dtype=torch.int64)
        s = torch.zeros(Bn, M, dtype=torch.int64)
        out = torch.empty_like(X)
        for t in range(T):
            xt = X[t] if lay.q_rec is None else X[t] + ((s @ lay.q_rec.t()) << lay.frac)
            i = i - (i >> lay.k_syn) + xt if lay.k_syn is not None else xt
            saturated += int(((i < lay.lo) | (i > lay.hi)).sum())
            i = i.clamp(lay.lo, lay.hi)
            leak = v - (v >> lay.k_mem)
            if lay.reset == "zero":
                v = leak * (1 - s) + (i >> lay.k_mem)
            else:
                v = leak + (i >> lay.k_mem)
                if lay.spiking:
                    v = v - lay.theta * s
            saturated += int(((v < lay.lo) | (v > lay.hi)).sum())
            v = v.clamp(lay.lo, lay.hi)
            if lay.spiking:
                s = (v > lay.theta).to(torch.int64)
                out[t] = s
            else:
                out[t] = v
        if lay.spiking and lay is not layers[-1]:
            spikes.append(out)
        h = out
    return h, spikes, layers[-1].lsb, saturated
