"""Deployment cost metrics: synaptic operations, activation sparsity, parameter footprint.

* **SynOps** (NeuroBench's effective accumulates for spiking inputs): every nonzero presynaptic activation
  (an input event bin, a hidden spike) that reaches a projection at a time step costs one accumulate per nonzero
  outgoing weight::

      SynOps = sum_projections sum_t sum_b sum_i [a_i[t, b] != 0] * fanout_i,   fanout_i = #{j : W_ji != 0}

  summed over every projection (input -> hidden, hidden -> hidden, recurrent, hidden -> readout); reported per
  sample. An input bin holding several events counts once (one accumulate of the weight times the count).
  Two conventions (:data:`CONVENTIONS`) differ in what "reaches" means at the end of a ``T``-step sequence:

  - ``"neurobench"`` (the default): what NeuroBench's ``SynapticOperations`` counts on the step-by-step
    network, whose ``nn.Linear`` layers see at step ``t`` what arrives then. (a) A recurrent matrix sees the
    previous step's spikes ``s[t-1]`` (zeros at ``t = 0``), so the spikes of the last step ``T - 1`` never
    fan out through it. (b) A connection with a delay of ``d`` whole steps sees ``a[t - d]``, so an activation
    at step ``t`` costs an accumulate on it only if it arrives in time, ``t + d <= T - 1``.
  - ``"emitted"`` (spiketime's earlier count): every emitted activation fans out through every outgoing
    nonzero weight, once, when it is emitted: the last step's recurrent spikes and the delayed spikes that
    would arrive after the last step count too. It is ``"neurobench"`` plus those two terms.

  Example (``T = 4``): an input channel with one nonzero weight and an axonal delay of 2 steps has events at
  ``t = 1, 2, 3`` (arriving at 3, 4, 5), and a hidden neuron with one nonzero recurrent weight spikes at
  ``t = 2, 3``: ``"neurobench"`` counts 1 + 1 accumulates, ``"emitted"`` 3 + 2.

  NeuroBench files a layer call whose input is not all 0 and +-1 (an input step with a multi-event bin) under
  ``Effective_MACs`` instead of ``Effective_ACs``; SynOps are their sum (``tests/test_neurobench.py``).
* **Activation sparsity** (NeuroBench's ActivationSparsity): the fraction of zero activations over all hidden
  spiking layers, ``1 - nonzero / total`` over every ``[T, B, N]`` element.
* **Footprint**: the bytes of what the deployed model stores (:func:`footprint_bytes`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spiketime.errors import InputError


def fanout(w: Tensor) -> Tensor:
    """Nonzero outgoing weights of each presynaptic neuron of ``w`` [n_out, n_in] -> [n_in] (int64)."""
    return (w != 0).sum(dim=0).to(torch.int64)


CONVENTIONS = ("neurobench", "emitted")  # the SynOps conventions of network_synops (module docstring)


def synops(activity: Tensor, w: Tensor, delays: Tensor | None = None) -> int:
    """SynOps of one projection ``w`` [n_out, n_in] driven by ``activity`` [T, B, n_in] (summed over T and B).

    ``delays`` (whole steps: [n_in] axonal or [n_out, n_in] synaptic; None: no delays): count only what arrives
    within the sequence, an activation at step ``t`` on a connection of delay ``d`` if ``t + d <= T - 1``."""
    active = activity != 0
    if delays is None:
        return int((active.sum(dim=(0, 1)).to(torch.int64) * fanout(w)).sum())
    T, n_in = activity.shape[0], activity.shape[-1]
    if tuple(delays.shape) not in ((n_in,), tuple(w.shape)):
        raise InputError(
            f"delays must have shape [n_in] = ({n_in},) or [n_out, n_in] = {tuple(w.shape)}, got {tuple(delays.shape)}"
        )
    per_step = active.sum(dim=1).to(torch.int64)  # [T, n_in]: active samples per step and input
    before = torch.cat([per_step.new_zeros(1, n_in), per_step.cumsum(0)])  # [T + 1, n_in]: active (t, b), t < k
    arrive = (T - torch.as_tensor(delays).to(torch.int64)).clamp(0, T)  # emitted at t < T - d: arrives by T - 1
    if delays.dim() == 1:  # axonal: one delay per input, shared by its outgoing weights
        return int((before.gather(0, arrive.unsqueeze(0))[0] * fanout(w)).sum())
    return int((before.gather(0, arrive) * (w != 0)).sum())  # synaptic: per connection


def network_synops(
    x: Tensor,
    hidden: list[Tensor],
    weights: list[Tensor],
    recurrent: list[Tensor | None],
    delays: list[Tensor | None] | None = None,
    convention: str = "neurobench",
) -> int:
    """SynOps of a feed-forward stack: ``x`` [T, B, N] drives ``weights[0]``, hidden layer ``l``'s spikes drive
    ``weights[l + 1]`` and its own ``recurrent[l]`` (None: no recurrence); ``delays[k]``: the whole-step delays
    of ``weights[k]`` (None, or ``delays`` None: no delays; see :func:`synops`). ``convention`` (module
    docstring): ``"neurobench"`` counts only the spikes that arrive within the ``T`` steps (a recurrent matrix
    sees ``s[0 .. T-2]``, a delayed connection what arrives by ``T - 1``); ``"emitted"`` counts every emitted
    activation once per outgoing nonzero weight, and ignores ``delays``."""
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    nb = convention == "neurobench"
    delays = [None] * len(weights) if delays is None or not nb else list(delays)
    if len(delays) != len(weights):
        raise InputError(f"delays must hold one entry per projection ({len(weights)}), got {len(delays)}")
    total = synops(x, weights[0], delays[0])
    for l, s in enumerate(hidden):
        total += synops(s, weights[l + 1], delays[l + 1])
        if l < len(recurrent) and recurrent[l] is not None:
            total += synops(s[:-1] if nb else s, recurrent[l])  # s[t-1] drives step t: the last step never does
    return total


def zero_and_total(hidden: list[Tensor]) -> tuple[int, int]:
    """(zero activations, all activations) over the hidden spike trains (for :func:`activation_sparsity`)."""
    zeros = sum(int((s == 0).sum()) for s in hidden)
    return zeros, sum(s.numel() for s in hidden)


def activation_sparsity(hidden: list[Tensor]) -> float:
    """``1 - nonzero / total`` over every element of the hidden spike trains."""
    zeros, total = zero_and_total(hidden)
    return zeros / total if total else 1.0


def footprint_bytes(
    model: torch.nn.Module, bits: int | None = None, membrane_bits: int | None = None, per_channel: bool = True
) -> int:
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
