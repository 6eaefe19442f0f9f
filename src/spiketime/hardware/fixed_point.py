r"""Hardware model of a trained LIF network: integer weights, integer delays, leaks ``1 - 2^-k``, fixed-point
currents and membranes with saturation, hard spikes.

From a :class:`~spiketime.nn.network.SpikingNetwork` and a :class:`HardwareSpec` (``bits``, per-channel or
per-tensor scales, ``membrane_bits`` ``B``), :func:`hardware_layers` derives for every layer (hidden LIF layers
and the readout):

* integer weights ``q`` and scales ``s_j`` (:mod:`spiketime.functional.quant`); a recurrent layer's feedforward and
  recurrent weights share each neuron's scale (one row ``[W, W_rec]``);
* integer delays ``d = floor(D / dt + 1/2)`` steps (axonal or synaptic; interp delays lose their fraction);
* leak shifts ``k`` with ``beta ~ 1 - 2^-k`` (membrane ``k_m``, synapse ``k_s``);
* ``F`` fractional bits per layer, so that a neuron's membrane unit (LSB) is ``lambda_j = s_j 2^-F``: a spike
  through weight code ``q`` adds exactly ``q 2^F`` units. ``F`` is the largest integer >= 0 with
  ``16 qmax 2^F <= 2^(B-1)`` (16 simultaneous largest-weight spikes fit) and, for spiking layers,
  ``max_j theta / lambda_j <= 2^(B-2)``; the threshold is ``Theta_j = round(theta / lambda_j)`` units.

The integer equations (``>>`` is the arithmetic shift, i.e. floor division by ``2^k``; ``sat`` clamps to
``[-2^(B-1), 2^(B-1) - 1]``)::

    X_j[t] = 2^F (sum_i q_ji x_i[t - d] + sum_i q_rec_ji S_i[t-1])      input events x: non-negative integers
    I_j[t] = sat(I_j[t-1] - (I_j[t-1] >> k_s) + X_j[t])                CuBa synapse (without one: I = sat(X))
    V_j[t] = sat(V_j[t-1] - (V_j[t-1] >> k_m) + (I_j[t] >> k_m) - Theta_j S_j[t-1])            reset subtract
    V_j[t] = sat((V_j[t-1] - (V_j[t-1] >> k_m)) (1 - S_j[t-1]) + (I_j[t] >> k_m))               reset zero
    S_j[t] = [V_j[t] > Theta_j]
    readout (LI): V_o[t] = sat(V_o[t-1] - (V_o[t-1] >> k_o) + (X_o[t] >> k_o)),  read as lambda_o V_o[t]

which is ``v[t] = beta v[t-1] + (1 - beta) i[t] - theta s[t-1]`` with ``beta = 1 - 2^-k`` and every value rounded
down to its neuron's grid. :func:`run_fake_quant` runs it in real units on float64 tensors (the "fake-quantised"
PyTorch model: weights ``s q``, state snapped to ``lambda`` after every operation; batched, used for accuracy);
:func:`spiketime.hardware.integer_sim.run_integer` runs it on int64 tensors only. The two give identical spikes
(``tests/test_hardware.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spiketime.errors import InputError
from spiketime.functional.lif import decay
from spiketime.functional.quant import frac_bits_for, leak_shift, qmax, quantize, weight_scale

SPIKES_HEADROOM = 16  # the current range holds this many simultaneous largest-weight input spikes


@dataclass(frozen=True)
class HardwareSpec:
    """Deployment target: ``bits``-bit weights (per output channel or per tensor) and, unless ``membrane_bits`` is
    None, fixed-point ``membrane_bits``-bit currents and membranes with leaks ``1 - 2^-k`` and integer delays."""

    bits: int = 8
    per_channel: bool = True
    membrane_bits: int | None = None

    def __post_init__(self) -> None:
        qmax(self.bits)
        if self.membrane_bits is not None and not 4 <= self.membrane_bits <= 62:
            raise InputError(f"membrane_bits: expected an integer in 4..62, got {self.membrane_bits}")


@dataclass
class HardwareLayer:
    """One layer of the hardware model (module docstring): integer weights and delays, shifts, threshold."""

    q: Tensor  # [M, N] int64 weight codes
    q_rec: Tensor | None  # [M, M] int64 recurrent codes
    scale: Tensor  # [M] float64, s_j
    delays: Tensor | None  # int64 steps: [N] (axonal) or [M, N] (synaptic); None without delays
    kind: str  # none | axonal | synaptic
    frac: int  # F
    k_mem: Tensor  # [M] int64
    k_syn: Tensor | None  # [M] int64 (CuBa) or None
    theta: Tensor | None  # [M] int64 Theta_j (spiking layers) or None (LI readout)
    reset: str
    lo: int
    hi: int

    @property
    def lsb(self) -> Tensor:
        """``lambda_j = s_j 2^-F``: the real value of one membrane unit, per neuron [M] (float64)."""
        return self.scale * 2.0**-self.frac

    @property
    def spiking(self) -> bool:
        """Whether the layer fires (a hidden layer with a threshold), not a readout that only integrates."""
        return self.theta is not None


def check_lif_model(model: torch.nn.Module) -> None:
    from spiketime.nn.network import SpikingNetwork

    if not isinstance(model, SpikingNetwork):
        raise InputError(
            f"model: hardware evaluation supports a SpikingNetwork (LIF), got {type(model).__name__} "
            "(SpikingGamma has no integer model here)"
        )


def integer_delays(proj: torch.nn.Module) -> Tensor | None:
    """A projection's delays rounded to whole steps, ``floor(D / dt + 1/2)`` (int64), or None."""
    if proj.delays is None:
        return None
    return torch.floor(proj.delays.detach().double() / proj.dt + 0.5).clamp(min=0).to(torch.int64)


def hardware_layers(model: torch.nn.Module, spec: HardwareSpec) -> list[HardwareLayer]:
    """The integer layers of ``model`` (hidden LIF layers, then the readout) for a fixed-point ``spec``."""
    check_lif_model(model)
    if spec.membrane_bits is None:
        raise ValueError("hardware_layers needs spec.membrane_bits (fixed-point membranes)")
    B = spec.membrane_bits
    lo, hi = -(2 ** (B - 1)), 2 ** (B - 1) - 1
    recs = list(model.recurrents)
    layers = []
    n_layers = len(model.projections)
    for idx, (proj, neuron) in enumerate(zip(model.projections, model.neurons)):
        w = proj.effective_weight.detach().double()
        w_rec = recs[idx].effective_weight.detach().double() if idx < len(recs) else None
        both = w if w_rec is None else torch.cat([w, w_rec], dim=1)
        s = weight_scale(both, spec.bits, spec.per_channel)
        s = s.expand(w.shape[0], 1) if s.dim() == 0 else s
        q, _ = quantize(w, spec.bits, spec.per_channel, s)
        q_rec = None if w_rec is None else quantize(w_rec, spec.bits, spec.per_channel, s)[0]
        s = s.reshape(-1)
        readout = idx == n_layers - 1 and not hasattr(neuron, "log_tau_mem")
        tau = (neuron.log_tau if readout else neuron.log_tau_mem).detach().double().exp()
        k_mem = leak_shift(decay(tau, neuron.dt).expand(w.shape[0]))
        k_syn = None
        if not readout and neuron.log_tau_syn is not None:
            k_syn = leak_shift(decay(neuron.log_tau_syn.detach().double().exp(), neuron.dt).expand(w.shape[0]))
        frac = max(frac_bits_for(qmax(spec.bits) * SPIKES_HEADROOM, B, 0), 0)
        theta = None
        if not readout:
            ratio = float((neuron.theta / s).max())  # theta in units of the largest weight's LSB (F = 0)
            frac = min(frac, frac_bits_for(ratio, B, 1))
            if frac < 0:
                raise InputError(
                    f"membrane_bits {B}: too few bits for layer {idx + 1} (its threshold is "
                    f"{ratio:.0f} weight units, more than 2^{B - 2}); use more membrane bits"
                )
            theta = torch.round(neuron.theta / (s * 2.0**-frac)).to(torch.int64)
        reset = "none" if readout else neuron.reset
        layers.append(
            HardwareLayer(q, q_rec, s, integer_delays(proj), proj.kind, frac, k_mem, k_syn, theta, reset, lo, hi)
        )
    return layers


def shift_time(x: Tensor, steps: int) -> Tensor:
    """``x[t - steps]`` (zeros before the start) for ``x`` [T, ...]."""
    if steps == 0:
        return x
    out = torch.zeros_like(x)
    if steps < x.shape[0]:
        out[steps:] = x[:-steps]
    return out


def delayed_currents(x: Tensor, w: Tensor, delays: Tensor | None, kind: str) -> Tensor:
    """``sum_i w_ji x_i[t - d]`` for the whole sequence ``x`` [T, B, N] -> [T, B, M], in ``x``'s dtype (integer
    codes and int64 spikes give integers; ``s q`` and float spikes give real currents). ``d`` per input
    (axonal) or per connection (synaptic); integer steps."""
    if kind == "none" or delays is None:
        return x @ w.t()
    if kind == "axonal":
        xd = torch.zeros_like(x)
        for u in delays.unique().tolist():
            cols = delays == u
            xd[:, :, cols] = shift_time(x[:, :, cols], int(u))
        return xd @ w.t()
    out = x.new_zeros(x.shape[0], x.shape[1], w.shape[0])
    for u in delays.unique().tolist():
        out += shift_time(x, int(u)) @ (w * (delays == u).to(w.dtype)).t()
    return out


def run_fake_quant(layers: list[HardwareLayer], x: Tensor) -> tuple[Tensor, list[Tensor], int]:
    """The fixed-point model in real units on float64 tensors (module docstring), batched over ``x`` [T, B, N]
    (event counts). Returns the readout ``lambda_o V_o`` [T, B, C] (or the LIF readout's spikes), the hidden
    spike trains, and how many current/membrane values hit the saturation bounds."""
    h = x.double()
    spikes: list[Tensor] = []
    saturated = 0
    for lay in layers:
        lam = lay.lsb
        cur = delayed_currents(h, lay.q.double() * lay.scale.unsqueeze(1), lay.delays, lay.kind)  # real, [T, B, M]
        w_rec = None if lay.q_rec is None else lay.q_rec.double() * lay.scale.unsqueeze(1)
        pm, ps = 2.0 ** lay.k_mem.double(), None if lay.k_syn is None else 2.0 ** lay.k_syn.double()
        T, Bn, M = cur.shape
        i = v = torch.zeros(Bn, M, dtype=torch.float64)
        s = torch.zeros(Bn, M, dtype=torch.float64)
        out = torch.empty_like(cur)
        for t in range(T):
            xt = cur[t] if w_rec is None else cur[t] + s @ w_rec.t()
            n_x = torch.round(xt / lam)  # the real current on the grid: exactly 2^F (q x + q_rec s)
            if ps is not None:
                n_i = torch.round(i / lam)
                n_i = n_i - torch.div(n_i, ps, rounding_mode="floor") + n_x
            else:
                n_i = n_x
            saturated += int(((n_i < lay.lo) | (n_i > lay.hi)).sum())
            i = lam * n_i.clamp(lay.lo, lay.hi)
            n_v = torch.round(v / lam)
            leak = n_v - torch.div(n_v, pm, rounding_mode="floor")
            drive = torch.div(torch.round(i / lam), pm, rounding_mode="floor")
            if lay.reset == "zero":
                n_v = leak * (1.0 - s) + drive
            else:
                n_v = leak + drive
                if lay.spiking:
                    n_v = n_v - lay.theta.double() * s
            saturated += int(((n_v < lay.lo) | (n_v > lay.hi)).sum())
            v = lam * n_v.clamp(lay.lo, lay.hi)
            if lay.spiking:
                s = (v > lam * lay.theta.double()).double()
                out[t] = s
            else:
                out[t] = v
        if lay.spiking and lay is not layers[-1]:
            spikes.append(out)
        h = out
    return h, spikes, saturated
