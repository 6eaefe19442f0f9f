"""Hardware-aware evaluation of a trained LIF network: accuracy and cost under a :class:`HardwareSpec`.

With ``membrane_bits`` None the deployed model is the float LIF network with hard spikes and quantised weights
(post-training quantisation of the weights only). With ``membrane_bits`` it is the fixed-point model of
:mod:`spiketime.hardware.fixed_point`: integer weights and delays, leaks ``1 - 2^-k``, saturating
``membrane_bits``-bit currents and membranes (run batched by
:func:`~spiketime.hardware.fixed_point.run_fake_quant`, which equals the integer simulator spike for spike).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from spiketime.functional.quant import quantize, weight_scale
from spiketime.hardware.fixed_point import (
    HardwareSpec,
    check_lif_model,
    hardware_layers,
    integer_delays,
    run_fake_quant,
)
from spiketime.hardware.integer_sim import run_integer
from spiketime.hardware.metrics import footprint_bytes, network_synops, zero_and_total
from spiketime.learning.losses import class_scores
from spiketime.progress import n_batches, progress_bar


def hard_spikes(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose LIF layers spike with the hard threshold (the surrogate-forward swap)."""
    m = copy.deepcopy(model)
    for neuron in m.neurons:
        if hasattr(neuron, "smooth"):
            neuron.smooth = False
    return m


@torch.no_grad()
def quantized_weights_model(model: torch.nn.Module, spec: HardwareSpec) -> torch.nn.Module:
    """Hard-spike copy of ``model`` with every weight matrix replaced by ``s q`` (``spec.bits``; a recurrent layer's
    feed-forward and recurrent weights share each neuron's scale, as in the fixed-point model)."""
    m = hard_spikes(model)
    recs = list(m.recurrents)
    for idx, proj in enumerate(m.projections):
        w = proj.effective_weight
        w_rec = recs[idx].effective_weight if idx < len(recs) else None
        s = weight_scale(w if w_rec is None else torch.cat([w, w_rec], dim=1), spec.bits, spec.per_channel)
        proj.weight.copy_(quantize(w, spec.bits, spec.per_channel, s)[0].to(w.dtype) * s)
        if w_rec is not None:
            recs[idx].weight.copy_(quantize(w_rec, spec.bits, spec.per_channel, s)[0].to(w.dtype) * s)
    return m


@torch.no_grad()
def evaluate_hardware(
    model: torch.nn.Module,
    data: Any,
    loss: str,
    spec: HardwareSpec,
    batch_size: int = 256,
    integer: bool = False,
    progress: bool = False,
    desc: str = "deployed",
) -> dict[str, Any]:
    """Accuracy of the deployed model on ``data`` (a split with ``x`` [N, T, C], ``y``) and its costs per sample:
    ``test_accuracy``, ``synops_per_sample`` (NeuroBench's convention; ``synops_emitted_per_sample``: every
    emitted spike, :mod:`spiketime.hardware.metrics`), ``activation_sparsity``, ``footprint_bytes``,
    ``hidden_spikes_per_sample``, and for fixed point the fraction of current/membrane updates that saturated.
    ``integer``: run the fixed-point model in the int64 simulator instead of its batched float64 twin (slower,
    the same spikes). ``progress``: a bar ``desc`` over the batches on stderr, gone when done."""
    check_lif_model(model)
    model.eval()
    if integer and spec.membrane_bits is None:
        raise ValueError("the integer simulator needs fixed-point neurons (spec.membrane_bits)")
    if spec.membrane_bits is None:
        net = quantized_weights_model(model, spec)
        weights = [p.effective_weight for p in net.projections]
        recurrent = [r.effective_weight for r in net.recurrents]
        delays = [integer_delays(p) for p in net.projections]  # the deployed whole-step delays
        layers = None
    else:
        layers = hardware_layers(model, spec)
        weights = [lay.q for lay in layers]
        recurrent = [lay.q_rec for lay in layers[:-1]]
        delays = [lay.delays for lay in layers]
    correct, ops, ops_emitted, zeros, total, spikes, saturated, updates = 0, 0, 0, 0, 0, 0.0, 0, 0
    for start in progress_bar(
        progress, desc, n_batches(len(data), batch_size), "batch", leave=False, iterable=range(0, len(data), batch_size)
    ):
        xb = data.x[start : start + batch_size].to(torch.float32).transpose(0, 1).contiguous()  # [T, B, C]
        y = data.y[start : start + batch_size]
        if layers is None:
            out, _, outputs = net.run(xb)
            hidden = outputs[:-1]
        elif integer:
            v_int, hidden, lsb, sat = run_integer(layers, xb)
            out = v_int.double() if layers[-1].spiking else lsb * v_int.double()
            saturated += sat
        else:
            out, hidden, sat = run_fake_quant(layers, xb)
            saturated += sat
            updates += 2 * sum(h.numel() for h in hidden) + 2 * out.numel()
        correct += int((class_scores(out, loss).argmax(dim=1) == y).sum())
        ops += network_synops(xb, hidden, weights, recurrent, delays)
        ops_emitted += network_synops(xb, hidden, weights, recurrent, convention="emitted")
        z, n = zero_and_total(hidden)
        zeros, total = zeros + z, total + n
        spikes += float(sum(h.sum() for h in hidden))
    n = len(data)
    res = {
        "test_accuracy": correct / n,
        "synops_per_sample": ops / n,
        "synops_emitted_per_sample": ops_emitted / n,
        "activation_sparsity": zeros / total if total else 1.0,
        "footprint_bytes": footprint_bytes(model, spec.bits, spec.membrane_bits, spec.per_channel),
        "float_footprint_bytes": footprint_bytes(model),
        "hidden_spikes_per_sample": spikes / n,
        "bits": spec.bits,
        "quant": "per_channel" if spec.per_channel else "per_tensor",
        "membrane_bits": spec.membrane_bits,
        "simulator": "integer" if integer else ("fixed_point" if layers is not None else "float"),
    }
    if layers is not None:
        res["saturated_fraction"] = saturated / updates if updates else 0.0
        res["frac_bits"] = [lay.frac for lay in layers]
    return res


def float_costs(
    model: torch.nn.Module, data: Any, batch_size: int = 256, progress: bool = False, desc: str = "float costs"
) -> dict[str, float]:
    """SynOps per sample and activation sparsity of the float hard-spike ``model`` (no quantisation);
    ``progress``: a bar ``desc`` over the batches on stderr, gone when done."""
    model.eval()
    weights = [p.effective_weight for p in model.projections]
    recurrent = [r.effective_weight for r in model.recurrents]
    delays = [integer_delays(p) for p in model.projections]  # the deployed whole-step delays
    ops, ops_emitted, zeros, total = 0, 0, 0, 0
    with torch.no_grad():
        for start in progress_bar(
            progress,
            desc,
            n_batches(len(data), batch_size),
            "batch",
            leave=False,
            iterable=range(0, len(data), batch_size),
        ):
            xb = data.x[start : start + batch_size].to(torch.float32).transpose(0, 1).contiguous()
            _, _, outputs = model.run(xb)
            ops += network_synops(xb, outputs[:-1], weights, recurrent, delays)
            ops_emitted += network_synops(xb, outputs[:-1], weights, recurrent, convention="emitted")
            z, t = zero_and_total(outputs[:-1])
            zeros, total = zeros + z, total + t
    return {
        "synops_per_sample": ops / len(data),
        "synops_emitted_per_sample": ops_emitted / len(data),
        "activation_sparsity": zeros / total if total else 1.0,
    }
