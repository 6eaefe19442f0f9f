"""Backpropagation through time from a plain PyTorch loop: one step, one epoch, evaluation.

The model is any network of the library's contract, ``forward(x_seq [T, B, C], state=None) -> (y_seq, state)``
(:class:`~spiketime.nn.network.SpikingNetwork`, :class:`~spiketime.nn.gamma.GammaNetwork`, or their DDP
wrapper), whose ``run(x_seq)`` also returns every layer's outputs (hidden spikes first, readout last) and whose
``project_()`` keeps constrained parameters feasible after a step. Batches are ``(x [T, B, C], y [B])``
(time-major; :func:`time_major` turns ``[B, T, C]`` samples around)::

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(10):
        mean_loss = bptt_epoch(net, loader, opt, loss="max")

The step's loss is ``readout_loss(y_seq, y, loss) + gain_weight * spike_rate(hidden spikes)``; with ``sam``
(:class:`~spiketime.learning.sam.SAM`) the optimiser steps with the gradient at the SAM/ASAM-perturbed weights.
A loss that is nan or inf raises :class:`~spiketime.errors.TrainingDiverged` before the optimiser uses it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spiketime.data.datasets import Split
from spiketime.errors import InputError, TrainingDiverged
from spiketime.learning.distributed import World, all_sum, rank_slice
from spiketime.learning.losses import class_scores, readout_loss, spike_rate
from spiketime.learning.sam import SAM
from spiketime.progress import EpochMonitor, n_batches, progress_bar

__all__ = [
    "PRECISIONS",
    "autocast",
    "batches",
    "bptt_epoch",
    "bptt_step",
    "epoch_generator",
    "epoch_mean_loss",
    "evaluate",
    "time_major",
]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to the dtype of ``precision`` (``bf16``, ``fp16``) on ``device``'s type; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=PRECISIONS[precision])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s batch order, seeded by ``(seed, epoch)`` (every learner, every rank)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def epoch_mean_loss(total: float, n: int, epoch: int) -> float:
    """``total / n``, the epoch's mean training loss (``epoch`` 0-based); :class:`TrainingDiverged` (one line)
    when it is not finite (the last check: every learner checks each batch's loss before it steps)."""
    if not math.isfinite(total):
        raise TrainingDiverged(total, epoch + 1)
    return total / n


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Index batches over ``n`` samples, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def time_major(x: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """``[B, T, C]`` samples -> ``[T, B, C]`` float on ``device``."""
    return x.to(device=device, dtype=torch.float32).transpose(0, 1).contiguous()


def _net(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # the network inside a DDP wrapper


def bptt_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    loss: str = "max",
    *,
    gain_weight: float = 0.0,
    grad_clip: float | None = None,
    sam: SAM | None = None,
    scaler: torch.amp.GradScaler | None = None,
    precision: str = "fp32",
    world: World | None = None,
    global_batch: int | None = None,
    check: Callable[[float], float] | None = None,
) -> float:
    """One optimiser step on the batch ``x [T, B, C]``, ``y [B]``; returns the batch's mean loss per sample.

    ``loss``: :func:`~spiketime.learning.losses.readout_loss`'s reduction of the readout over time; ``gain_weight``
    adds ``gain_weight * spike_rate(hidden spikes)``; ``grad_clip``: the global gradient norm is clipped to it;
    ``sam``: the step uses the gradient at the SAM/ASAM-perturbed weights (the returned loss is the first pass's);
    ``scaler``: an fp16 ``GradScaler``; ``precision`` autocasts forward and loss. Under a multi-process ``world``
    (``model`` a DDP wrapper, ``x`` this rank's slice of a global batch of ``global_batch`` samples) each rank
    backpropagates ``sum of its losses * world.size / global_batch``, which DDP's mean turns into the gradient of
    the global mean loss, and the returned mean is the global batch's. ``check(mean) -> mean`` runs before the
    optimiser steps (default: :class:`TrainingDiverged` when the loss is not finite)."""
    net = _net(model)
    device = x.device
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    distributed = world is not None and world.active
    n = int(global_batch if global_batch is not None else y.shape[0])

    def backward() -> tuple[Tensor, Tensor | None]:
        summed = None
        with autocast(str(device), precision):
            if gain_weight > 0:  # the contract's explicit extra output: the hidden spike trains
                out, _, spikes = model(x, return_spikes=True)
            else:
                out, _ = model(x)
                spikes = None
            if distributed:
                summed = readout_loss(out, y, loss, reduction="sum")
                if spikes is not None:
                    summed = summed + gain_weight * spike_rate(spikes, reduction="sum")
                batch_loss = summed * (world.size / n)
            else:
                batch_loss = readout_loss(out, y, loss)
                if spikes is not None:
                    batch_loss = batch_loss + gain_weight * spike_rate(spikes)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(batch_loss).backward()
        return batch_loss, summed

    batch_loss, summed = backward()
    mean = all_sum([summed.item()], world)[0] / n if distributed else batch_loss.item()
    if check is not None:
        mean = check(mean)
    elif not math.isfinite(mean):
        raise TrainingDiverged(mean, 1)
    if sam:
        with sam.perturbed(net):
            backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    net.project_()
    return mean


def bptt_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss: str = "max",
    *,
    epoch: int = 0,
    progress: bool = False,
    total: int | None = None,
    **step: Any,
) -> float:
    """:func:`bptt_step` over every ``(x [T, B, C], y [B])`` of ``batches`` (any iterable, e.g. a DataLoader
    with a time-major collate); returns the mean loss per sample. ``epoch`` (0-based) names the epoch in a
    :class:`TrainingDiverged`; ``progress``: a bar over ``total`` batches on stderr; ``step``: the keyword
    arguments of :func:`bptt_step`."""
    model.train()
    monitor = EpochMonitor(progress, epoch + 1, total)
    summed, count = 0.0, 0
    for x, y in monitor.over(batches):
        n = int(step.get("global_batch") or y.shape[0])
        mean = bptt_step(model, x, y, optimizer, loss, check=monitor.check, **step)
        summed += mean * n
        count += n
        monitor.done(mean * n, n)
    if count == 0:
        raise InputError("batches: expected at least one (x, y) batch, got none")
    return epoch_mean_loss(summed, count, epoch)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Split,
    loss: str,
    batch_size: int = 256,
    device: str = "cpu",
    transform: Callable[[Tensor, Tensor | None], Tensor] | None = None,
    precision: str = "fp32",
    world: World | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``data`` (samples ``[N, T, C]``); ``transform(x [B, T, C], mask
    [B, T] | None)`` (e.g. a perturbation) is applied to every batch first. ``precision`` autocasts the forward
    pass; with a multi-process ``world`` each rank evaluates its share of ``data`` and the sums are all-reduced
    (same result on every rank). ``spikes_per_sample`` is the mean over samples of the total hidden spike count
    ``sum_{l, t, n} s_l[t, b, n]`` (hidden layers only, for a LIF and a gamma network alike; a LIF readout's
    spikes are not counted). ``progress``: a bar ``desc`` over the batches on stderr, gone when done."""
    model.eval()
    net = _net(model)
    correct, total_loss, spikes = 0, 0.0, 0.0
    mine = rank_slice(torch.arange(len(data)), world) if world is not None else torch.arange(len(data))
    for i in progress_bar(
        progress, desc, n_batches(len(mine), batch_size), "batch", leave=False, iterable=range(0, len(mine), batch_size)
    ):
        idx = mine[i : i + batch_size]
        xb = data.x[idx]
        if transform is not None:
            xb = transform(xb, data.mask[idx] if data.mask is not None else None)
        x, y = time_major(xb, device), data.y[idx].to(device)
        with autocast(device, precision):
            out, _, outputs = net.run(x)
            hidden = outputs[:-1]
            batch_loss = readout_loss(out, y, loss)
        total_loss += batch_loss.item() * len(idx)
        correct += (class_scores(out, loss).argmax(dim=1) == y).sum().item()
        spikes += sum(float(h.sum()) for h in hidden)
    if world is not None and world.active:
        correct, total_loss, spikes = all_sum([correct, total_loss, spikes], world)
    return {"accuracy": correct / len(data), "loss": total_loss / len(data), "spikes_per_sample": spikes / len(data)}
