r"""Online learning of a SpikingGamma network (``train.learner: gamma_online``): autograd through one step at a time.

For a batch ``x`` [T, B, N] with targets ``c`` [B] the network is stepped with
:meth:`~spiketime.nn.gamma.GammaNetwork.step` from the state of the previous step cut from the graph
(:meth:`~spiketime.nn.gamma.GammaNetwork.detach_state`), and at every step::

    L_t = CE(logits[t], c) / T + gain_weight * sum_l mean_{b, n} s_l[t, b, n] / T
    p.grad += dL_t / dp        (loss_t.backward(): the graph spans step t only)

so ``sum_t L_t`` is the ``per_step`` loss plus the gain loss of BPTT, but each step's gradient stops at the
detached state: the buckets' and neurons' memory enters the gradient as a constant (no gradient through time).
With ``T = 1`` the gradient equals BPTT's. The optimiser steps at the end of the sequence, or every
``update_every`` steps (and at the end): ``grad_clip`` (global norm), ``optimizer.step()``, ``project_()``,
``zero_grad``. Memory is one step's graph plus the state: independent of ``T``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.learning.losses import spike_rate
from spiketime.learning.online import check_update_every, optimizer_step
from spiketime.learning.sam import perturbed
from spiketime.progress import EpochMonitor

__all__ = ["gamma_online_gradients", "run_sequence"]


def run_sequence(model: nn.Module, x: Tensor, target: Tensor, gain_weight: float = 0.0,
                 update_every: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                 grad_clip: float | None = None, sam_rho: float = 0.0, sam_adaptive: bool = False,
                 monitor: EpochMonitor | None = None) -> tuple[float, int]:
    """Learn from one batch ``x`` [T, B, N] with class indices ``target`` [B], one step at a time (module
    docstring). Without an ``optimizer`` the gradients add up in ``p.grad`` (the sum over the sequence) and no
    parameter changes. ``sam_rho > 0`` (with an optimizer): at each update the steps since the last one are run
    again from their starting state at the SAM/ASAM-perturbed weights (:mod:`spiketime.learning.sam`), and the
    optimiser steps with that gradient. ``monitor`` (a training epoch's): told every time step, and checks the
    loss so far before every optimiser step (raises :class:`~spiketime.errors.TrainingDiverged` when it
    is not finite). Returns (sum over the batch of each sample's loss ``sum_t L_t``, number of updates)."""
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, N], got shape {tuple(x.shape)}")
    check_update_every(update_every)
    T, B = x.shape[:2]

    def step(t: int, state: Any) -> tuple[Tensor, Any]:
        """Step ``t`` from the detached ``state``: its loss ``L_t`` backpropagated into ``p.grad``."""
        logits, state, outputs = model.step(x[t], model.detach_state(state))
        loss = F.cross_entropy(logits, target) / T
        if gain_weight > 0:
            loss = loss + gain_weight * spike_rate([s.unsqueeze(0) for s in outputs[:-1]]) / T  # s: [1, B, N]
        loss.backward()
        return loss.detach(), state

    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    total = x.new_zeros((), dtype=torch.float64)
    state, since, updates = None, 0, 0
    start = state  # the state the steps since the last update started from (SAM re-runs them)
    for t in range(T):
        loss, state = step(t, state)
        total += loss.to(torch.float64)
        since += 1
        if monitor is not None:
            monitor.step(t + 1, T)
        if optimizer is not None and ((update_every is not None and since == update_every) or t == T - 1):
            if monitor is not None:
                monitor.check(total)
            if sam_rho > 0:
                with perturbed(model, sam_rho, sam_adaptive):
                    rerun = start
                    for u in range(t + 1 - since, t + 1):
                        _, rerun = step(u, rerun)
            optimizer_step(model, optimizer, grad_clip)
            optimizer.zero_grad(set_to_none=True)
            since, updates, start = 0, updates + 1, state
    return float(total) * B, updates


def gamma_online_gradients(model: nn.Module, x: Tensor, target: Tensor, gain_weight: float = 0.0
                           ) -> dict[str, Tensor]:
    """The online gradient ``sum_t dL_t/dp`` (one-step graphs, detached state) for one batch, by parameter name;
    no parameter changes."""
    model.zero_grad(set_to_none=True)
    run_sequence(model, x, target, gain_weight)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads
