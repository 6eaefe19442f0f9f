"""Spiking network: ``input -> [DelayedLinear (+ Recurrent) -> LIF] x L -> Linear -> LI (or LIF) readout``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spiketime.errors import InputError
from spiketime.functional.lif import lif_sequence_recurrent
from spiketime.nn.layers import LI, LIF, DelayedLinear, Recurrent
from spiketime.surrogate import Sigmoid, Surrogate, make_surrogate


class SpikingNetwork(nn.Module):
    """Hidden LIF layers fed by :class:`DelayedLinear` projections (delays on every projection into a
    spiking hidden layer), and a delay-free readout: LI membrane (``readout="li"``) or LIF spikes
    (``readout="lif"``). ``forward`` returns the readout trace ``[T, B, classes]`` and the state, a tuple
    with one ``(projection_state, neuron_state)`` pair per layer.

    ``recurrent``: every hidden layer ``l`` also gets recurrent weights ``recurrents[l]``
    (:class:`Recurrent`): ``I[t] = W x[t - D] + W_rec s[t-1]`` with the layer's own spikes of the previous
    step, no delay, no self-connections (run by :func:`lif_sequence_recurrent`, the step-by-step autograd
    path). Their init std is ``0.5 * weight_scale * theta / ((1 - beta) sqrt(fan_in))``: half the
    feedforward gain, so that recurrence starts quiet. ``recurrents`` is an empty ModuleList otherwise.
    ``density < 1``: every hidden projection (input -> hidden, hidden -> hidden, recurrent) keeps a fixed
    random fraction ``density`` of its connections, the same fan-in for every neuron (buffers ``mask``); the
    readout projection stays dense. The generator draws, in order, per hidden layer: feedforward weights,
    delays, feedforward mask (if sparse), recurrent weights and mask (if recurrent); then the readout weights
    (so ``recurrent=False, density=1`` builds exactly the network of earlier versions).
    ``spike == "surrogate_forward"``: every LIF layer emits ``sigmoid(spike_steepness * (v - theta))`` instead of
    ``H(v - theta)`` (smooth network, exact gradient); rebuilt with ``spike: hard`` from the same weights it is the
    hard-threshold network of deployment (``spiketime eval --hard``). ``weight_bits``: every weight matrix
    (readout included) is used in its fake-quantised form (quantisation-aware training; docs/deployment.md).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: Sequence[int] = (128,),
        dt: float = 1.0,
        *,
        delays: str = "axonal",
        delay_mode: str = "interp",
        delay_max: float = 30.0,
        delay_sigma: float = 1.0,
        delay_init: Sequence[float] = (0.0, 1.0),
        tau_mem: float = 10.0,
        learn_tau: bool = True,
        tau_syn: float | None = 5.0,
        tau_out: float = 10.0,
        reset: str = "subtract",
        theta: float = 1.0,
        surrogate: str | Surrogate = "fast_sigmoid",
        surrogate_scale: float | None = None,
        spike: str = "hard",
        spike_steepness: float = 5.0,
        weight_bits: int | None = None,
        weight_quant: str = "per_channel",
        weight_scale: float = 1.0,
        readout: str = "li",
        backend: str = "auto",
        recurrent: bool = False,
        density: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("delays", delays, ("none", "axonal", "synaptic")),
            ("readout", readout, ("li", "lif")),
            ("spike", spike, ("hard", "surrogate_forward")),
            ("weight_quant", weight_quant, ("per_tensor", "per_channel")),
        ):
            if value not in allowed:
                raise InputError(f"SpikingNetwork {name}: expected one of {', '.join(allowed)}, got {value!r}")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise InputError(f"SpikingNetwork hidden: expected one or more layer sizes >= 1, got {list(hidden)!r}")
        g = torch.Generator().manual_seed(seed)
        smooth = spike == "surrogate_forward"
        quant = {"weight_bits": weight_bits, "per_channel": weight_quant == "per_channel"}
        if smooth:
            surrogate = Sigmoid(spike_steepness)
        elif isinstance(surrogate, str):
            surrogate = make_surrogate(surrogate, surrogate_scale)
        self.dt = dt
        self.recurrent = bool(recurrent)
        self.projections = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.recurrents = nn.ModuleList()
        sizes = [n_in, *map(int, hidden)]
        # A spike moves the membrane by (1 - beta) * w: scale weights so that weight_scale is in
        # units of the threshold per (fan_in-normalised) input spike.
        gain = theta / -math.expm1(-dt / tau_mem)
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.projections.append(
                DelayedLinear(
                    a,
                    b,
                    dt,
                    delays,
                    delay_max,
                    delay_mode,
                    delay_sigma,
                    tuple(delay_init),
                    weight_scale * gain,
                    generator=g,
                    density=density,
                    backend=backend,
                    **quant,
                )
            )
            if self.recurrent:
                self.recurrents.append(Recurrent(b, density, 0.5 * weight_scale * gain, generator=g, **quant))
            self.neurons.append(
                LIF(b, dt, tau_mem, learn_tau, tau_syn, theta, reset, surrogate, backend=backend, smooth=smooth)
            )
        out_gain = theta / -math.expm1(-dt / tau_out)
        self.projections.append(
            DelayedLinear(
                sizes[-1],
                n_out,
                dt,
                "none",
                weight_scale=weight_scale * out_gain,
                generator=g,
                backend=backend,
                **quant,
            )
        )
        if readout == "li":
            self.neurons.append(LI(n_out, dt, tau_out, backend=backend))
        else:
            self.neurons.append(
                LIF(n_out, dt, tau_out, learn_tau, None, theta, reset, surrogate, backend=backend, smooth=smooth)
            )

    def run(self, x_seq: Tensor, state: tuple | None = None) -> tuple[Tensor, tuple, list[Tensor]]:
        """Forward pass that also returns every layer's output sequence (hidden spikes, readout)."""
        if x_seq.dim() != 3:
            raise ValueError(f"x_seq must be [T, B, N], got shape {tuple(x_seq.shape)}")
        n_in = self.projections[0].n_in
        if x_seq.shape[-1] != n_in:
            raise ValueError(f"x_seq has {x_seq.shape[-1]} channels, the network expects {n_in}")
        state = state if state is not None else (None,) * len(self.neurons)
        if len(state) != len(self.neurons):
            raise ValueError(f"state must hold {len(self.neurons)} layer states, got {len(state)}")
        new_state, outputs, h = [], [], x_seq
        for layer, (proj, neuron, st) in enumerate(zip(self.projections, self.neurons, state)):
            p_state, n_state = st if st is not None else (None, None)
            current, p_state = proj(h, p_state)
            if layer < len(self.recurrents):
                w_rec = self.recurrents[layer].effective_weight
                h, n_state = lif_sequence_recurrent(current, w_rec, neuron.params(), neuron.dt, n_state)
            else:
                h, n_state = neuron(current, n_state)
            new_state.append((p_state, n_state))
            outputs.append(h)
        return h, tuple(new_state), outputs

    def forward(
        self, x_seq: Tensor, state: tuple | None = None, return_spikes: bool = False
    ) -> tuple[Tensor, tuple] | tuple[Tensor, tuple, list[Tensor]]:
        """``x_seq`` [T, B, n_in] -> (readout [T, B, n_out], final state), the network contract; with
        ``return_spikes`` also the hidden spike trains (a list, one ``[T, B, n]`` per hidden layer)."""
        y, state, outputs = self.run(x_seq, state)
        return (y, state, outputs[:-1]) if return_spikes else (y, state)

    @torch.no_grad()
    def project_(self) -> None:
        """Keep constrained parameters feasible: delays in ``[0, delay_max]``, masked weights exactly 0."""
        for proj in self.projections:
            proj.project_()
        for rec in self.recurrents:
            rec.project_()

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters split into ``weights``, ``time_constants`` and ``delays`` (for separate learning rates)."""
        groups: dict[str, list[nn.Parameter]] = {"weights": [], "time_constants": [], "delays": []}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            leaf = name.rsplit(".", 1)[-1]
            key = "delays" if leaf == "delays" else "time_constants" if leaf.startswith("log_tau") else "weights"
            groups[key].append(p)
        return groups

    def learned_delays(self) -> dict[str, Tensor]:
        """Learned delays in ms per projection (empty without delays)."""
        return {
            f"layer {i + 1}": p.delays.detach().flatten().cpu()
            for i, p in enumerate(self.projections)
            if p.delays is not None
        }
