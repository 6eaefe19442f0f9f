"""Deployment cost metrics: synaptic operations, activation sparsity, parameter footprint.

* **SynOps** (NeuroBench's effective accumulates for spiking inputs): every nonzero presynaptic activation
  (an input event bin, a hidden spike) at every time step costs one accumulate per nonzero outgoing weight::

      SynOps = sum_projections sum_t sum_b sum_i [a_i[t, b] != 0] * fanout_i,   fanout_i = #{j : W_ji != 0}

  summed over every projection (input -> hidden, hidden -> hidden, recurrent, hidden -> readout); reported per
  sample. A delayed spike is counted once, when it is emitted. An input bin holding several events counts once
  (one accumulate of the weight times the count).
* **Activation sparsity** (NeuroBench's ActivationSparsity): the fraction of zero activations over all hidden
  spiking layers, ``1 - nonzero / total`` over every ``[T, B, N]`` element.
* **Footprint**: the bytes of what the deployed model stores (:func:`footprint_bytes`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def fanout(w: Tensor) -> Tensor:
    """Nonzero outgoing weights of each presynaptic neuron of ``w`` [n_out, n_in] -> [n_in] (int64)."""
    return (w != 0).sum(dim=0).to(torch.int64)


def synops(activity: Tensor, w: Tensor) -> int:
    """SynOps of one projection ``w`` [n_out, n_in] driven by ``activity`` [T, B, n_in] (summed over T and B)."""
    active = (activity != 0).sum(dim=(0, 1)).to(torch.int64)  # [n_in]: active (t, b) pairs per input
    return int((active * fanout(w)).sum())


def network_synops(x: Tensor, hidden: list[Tensor], weights: list[Tensor], recurrent: list[Tensor | None]) -> int:
    """SynOps of a feed-forward stack: ``x`` [T, B, N] drives ``weights[0]``, hidden layer ``l``'s spikes drive
    ``weights[l + 1]`` and its own ``recurrent[l]`` (None: no recurrence)."""
    total = synops(x, weights[0])
    for l, s in enumerate(hidden):
        total += synops(s, weights[l + 1])
        if l < len(recurrent) and recurrent[l] is not None:
            total += synops(s, recurrent[l])
    return total


def zero_and_total(hidden: list[Tensor]) -> tuple[int, int]:
    """(zero activations, all activations) over the hidden spike trains (for :func:`activation_sparsity`)."""
    zeros = sum(int((s == 0).sum()) for s in hidden)
    return zeros, sum(s.numel() for s in hidden)


def activation_sparsity(hidden: list[Tensor]) -> float:
    """``1 - nonzero / total`` over every element of the hidden spike trains."""
    zeros, total = zero_and_total(hidden)
    return zeros / total if total else 1.0


def footprint_bytes(model: torch.nn.Module, bits: int | None = None, membrane_bits: int | None = None,
                    per_channel: bool = True) -> int:
    """Bytes the deployed model stores. ``bits`` None: every parameter and buffer at its dtype's size (the float
    model; masks included). Otherwise: each stored weight at ``bits / 8`` bytes (dense matrices; with
    ``model.density < 1`` only the kept connections, whose positions the fixed mask gives: the mask itself is
    counted at 1 bit per entry), plus per neuron its threshold and leak: with ``membrane_bits`` the integer
    threshold at ``membrane_bits / 8`` bytes and one byte per leak shift (membrane, synapse), one byte per integer
    delay (the weight scales are folded into the thresholds); without, a float32 weight scale per output channel
    (``per_channel``) or per matrix, and time constants and delays at 4 bytes."""
    if bits is None:
        return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    total = 0.0
    recurrents = list(getattr(model, "recurrents", []))
    for m in [*model.projections, *recurrents]:
        mask = getattr(m, "mask", None)
        stored = m.weight.numel() if mask is None else int(mask.sum())
        total += stored * bits / 8 + (0 if mask is None else mask.numel() / 8)
        delays = getattr(m, "delays", None)
        if delays is not None:
            total += delays.numel() * (1 if membrane_bits else 4)
        if not membrane_bits and m not in recurrents:  # a recurrent matrix shares its layer's scales
            total += 4 * (m.weight.shape[0] if per_channel else 1)
    for neuron in model.neurons:
        n = neuron.n
        taus = sum(1 for name in ("log_tau_mem", "log_tau_syn", "log_tau") if getattr(neuron, name, None) is not None)
        if membrane_bits:
            total += n * taus + (n * membrane_bits / 8 if hasattr(neuron, "theta") else 0)
        else:
            total += n * taus * 4
    return int(round(total))
