r"""Online learning of a SpikingGamma network (the application's ``learner: gamma_online``): autograd through one step
at a time.

For a batch ``x`` [T, B, N] with targets ``c`` [B] the network is stepped with
:meth:`~spiketime.nn.gamma.GammaNetwork.step` from the state of the previous step cut from the graph
(:meth:`~spiketime.nn.gamma.GammaNetwork.detach_state`), and at every step::

    L_t = CE(logits[t], c) / T + gain_weight * sum_l mean_{b, n} s_l[t, b, n] / T
    g  += dL_t / dp        (loss_t.backward(): the graph spans step t only)

so ``sum_t L_t`` is the ``per_step`` loss plus the gain loss of BPTT, but each step's gradient stops at the
detached state: the buckets' and neurons' memory enters the gradient as a constant (no gradient through time).
With ``T = 1`` the gradient equals BPTT's. :class:`GammaOnlineLearner` keeps ``g`` to itself until
:meth:`~GammaOnlineLearner.flush` adds it to ``p.grad``; :meth:`~GammaOnlineLearner.run` updates at the end of
the sequence, or every ``update_every`` steps (and at the end): ``grad_clip`` (global norm),
``optimizer.step()``, ``project_()``, ``zero_grad``. Memory is one step's graph plus the state: independent of
``T``. :func:`run_sequence` and :func:`gamma_online_gradients` are one-call forms of the learner.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.errors import InputError
from spiketime.learning.losses import spike_rate
from spiketime.learning.online import OnlineResult, check_steps, check_update_every, optimizer_step, resolve_sam
from spiketime.learning.sam import SAM, perturbed
from spiketime.progress import EpochMonitor

__all__ = ["GammaOnlineLearner", "gamma_online_gradients", "run_sequence"]


class GammaOnlineLearner:
    """Online learner of a :class:`~spiketime.nn.gamma.GammaNetwork` (module docstring), driven like
    :class:`~spiketime.learning.online.OnlineLearner`.

    Streaming (one time step per call, the detached state carried between calls)::

        import torch
        from spiketime.learning.gamma_online import GammaOnlineLearner
        from spiketime.nn.gamma import GammaNetwork

        net = GammaNetwork(4, 3, [16], 1.0, K=3, seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        learner = GammaOnlineLearner(net, gain_weight=0.1)
        x, c = torch.rand(20, 2, 4), torch.tensor([0, 2])   # x [T, B, N_in], c [B]
        for epoch in range(3):
            learner.reset(x.shape[1], steps=x.shape[0])     # new sequences; steps=T: the loss's 1/T
            for x_t in x:
                logits_t, loss_t = learner.step(x_t, c)
            learner.flush()                                 # p.grad += sum_t dL_t/dp
            opt.step(); net.project_(); opt.zero_grad()

    ``step`` backpropagates each ``L_t`` into the learner's own accumulator (``p.grad`` is untouched until
    :meth:`flush`); it resets implicitly at the first call (``steps=None``: ``L_t`` without the ``1/T``).
    :meth:`run` ``(x [T, B, N_in], c [B])`` learns from a whole batch: an :meth:`update` every ``update_every``
    steps and at the end; with an ``optimizer`` each update is ``zero_grad``, :meth:`flush`, ``grad_clip``,
    ``optimizer.step()``, ``project_()``, ``zero_grad``; without one the gradient is added to ``p.grad``.

    ``sam`` (:class:`~spiketime.learning.sam.SAM`; or ``sam_rho``, ``sam_adaptive``): at each flush the steps
    since the last one are run again from their starting state at the SAM/ASAM-perturbed weights, and that
    gradient goes into ``p.grad`` instead (the inputs since the last flush are held for it).
    """

    def __init__(
        self,
        model: nn.Module,
        gain_weight: float = 0.0,
        update_every: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        grad_clip: float | None = None,
        sam: SAM | None = None,
        sam_rho: float = 0.0,
        sam_adaptive: bool = False,
    ) -> None:
        if isinstance(gain_weight, bool) or not isinstance(gain_weight, (int, float)) or not gain_weight >= 0:
            raise InputError(f"gain_weight: expected a number >= 0, got {gain_weight!r}")
        check_update_every(update_every)
        for name in ("step", "detach_state", "project_"):
            if not callable(getattr(model, name, None)):
                raise InputError(
                    f"model: expected a GammaNetwork (step, detach_state, project_), "
                    f"got {type(model).__name__} without {name}()"
                )
        self.model, self.gain_weight, self.update_every = model, float(gain_weight), update_every
        self.optimizer, self.grad_clip = optimizer, grad_clip
        self.sam = resolve_sam(sam, sam_rho, sam_adaptive)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.updates = 0
        self.steps: int | None = None
        self.batch_size: int | None = None
        self.state: Any = None  # the network state after the last step (None: before the first)
        self._started = False
        self._acc: list[Tensor | None] = [None] * len(self.params)
        self._since = 0
        self._start: Any = None  # SAM: the state the steps since the last flush started from
        self._pending: list[tuple[Tensor, Tensor]] = []  # SAM: those steps' inputs and targets

    # ------------------------------------------------------------------------------------------ streaming

    def reset(self, batch_size: int | None = None, steps: int | None = None) -> None:
        """Start new sequences (the network state back to None, the accumulator emptied). ``batch_size``: checked
        against every step (None: the first step's); ``steps``: the ``T`` of ``L_t``'s ``1/T`` (None: no ``1/T``)."""
        if batch_size is not None:
            check_steps("batch_size", batch_size)
        if steps is not None:
            check_steps("steps", steps)
        self.batch_size, self.steps, self.updates, self.state, self._started = batch_size, steps, 0, None, True
        self._acc = [None] * len(self.params)
        self._since, self._start, self._pending = 0, None, []

    def step(self, x_t: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Step ``x_t`` [B, N_in] (or [B, C, H, W]) from the detached state and add ``dL_t/dp`` to the accumulator.
        Returns the logits [B, K] and the step's ``CE(logits, target) + gain_weight * sum_l mean s_l`` (batch
        means, without the ``1/T``), both detached."""
        if not self._started:
            self.reset()
        self._check_step(x_t, target)
        logits, _, plain = self._advance(x_t, target)
        return logits, plain

    def flush(self) -> None:
        """``p.grad += sum_t dL_t/dp`` over the steps since the last flush (or reset); with ``sam`` the gradient of
        those steps re-run at the perturbed weights instead. No parameter changes."""
        grads = self._sam_gradients() if self.sam and self._pending else self._acc
        for p, g in zip(self.params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        self._acc = [None] * len(self.params)
        self._since, self._start, self._pending = 0, None, []

    def update(self) -> None:
        """One update of :meth:`run`: with the learner's ``optimizer``: ``zero_grad``, :meth:`flush`, clip to
        ``grad_clip``, ``optimizer.step()``, ``model.project_()``, ``zero_grad``; without one: :meth:`flush`."""
        if self.optimizer is None:
            self.flush()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.flush()
            optimizer_step(self.model, self.optimizer, self.grad_clip)
            self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1

    def release(self) -> None:
        """Drop the per-sequence state (network state, accumulator, SAM's held inputs)."""
        self.reset()
        self._started = False

    # ------------------------------------------------------------------------------------------ internals

    def _check_step(self, x_t: Tensor, target: Tensor) -> None:
        if x_t.dim() < 2:
            raise InputError(f"x_t: expected [B, N_in] (or [B, C, H, W]), got shape {tuple(x_t.shape)}")
        if self.batch_size is None:
            self.batch_size = x_t.shape[0]
        elif x_t.shape[0] != self.batch_size:
            raise InputError(
                f"x_t: batch of {x_t.shape[0]}, but the sequences were started with batch_size "
                f"{self.batch_size}; call reset(batch_size) first"
            )
        if tuple(target.shape) != (self.batch_size,):
            raise InputError(
                f"target: expected [B] = [{self.batch_size}] class indices, got shape {tuple(target.shape)}"
            )

    def _loss(self, x_t: Tensor, target: Tensor, state: Any) -> tuple[Tensor, Any, Tensor, Tensor]:
        """``L_t`` of one step from the detached ``state``: (logits, new state, ``L_t`` with its graph, the
        unscaled loss detached)."""
        logits, state, outputs = self.model.step(x_t, self.model.detach_state(state))
        ce = F.cross_entropy(logits, target)
        loss = ce if self.steps is None else ce / self.steps
        plain = ce.detach()
        if self.gain_weight > 0:
            rate = spike_rate([s.unsqueeze(0) for s in outputs[:-1]])  # s: [1, B, N]
            loss = loss + (self.gain_weight * rate if self.steps is None else self.gain_weight * rate / self.steps)
            plain = plain + self.gain_weight * rate.detach()
        return logits, state, loss, plain

    def _advance(self, x_t: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step: ``L_t`` backpropagated into the accumulator (``p.grad`` swapped out meanwhile): (logits, ``L_t``,
        the unscaled loss), detached."""
        if self.sam:
            if not self._pending:
                self._start = self.state
            self._pending.append((x_t, target))
        logits, self.state, loss, plain = self._loss(x_t, target, self.state)
        saved = [p.grad for p in self.params]
        for p, g in zip(self.params, self._acc):
            p.grad = g
        try:
            loss.backward()
            self._acc = [p.grad for p in self.params]
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g
        self._since += 1
        return logits.detach(), loss.detach(), plain

    def _sam_gradients(self) -> list[Tensor | None]:
        """SAM's second pass: the steps since the last flush re-run from their starting state at the weights
        perturbed along the accumulated gradient; their summed gradient (``p.grad`` as before)."""
        saved = [p.grad for p in self.params]
        for p, g in zip(self.params, self._acc):
            p.grad = g
        try:
            with perturbed(self.model, self.sam.rho, self.sam.adaptive):
                state = self._start
                for x_t, target in self._pending:
                    _, state, loss, _ = self._loss(x_t, target, state)
                    loss.backward()
                grads = [p.grad for p in self.params]
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g
        return grads

    # ------------------------------------------------------------------------------------------ whole batches

    def run(
        self, x: Tensor, target: Tensor, monitor: EpochMonitor | None = None, record: bool = False, reset: bool = True
    ) -> OnlineResult:
        """Learn from one batch ``x`` [T, B, N_in] with class indices ``target`` [B], one step at a time, with an
        :meth:`update` every ``update_every`` steps and at the end. ``monitor`` (a training epoch's): told every
        time step, and checks the loss so far before every optimiser step (raises
        :class:`~spiketime.errors.TrainingDiverged` when it is not finite). ``reset=False`` continues the last
        sequences (their ``steps``). ``loss_sum``: the sum over the batch of each sample's ``sum_t L_t``;
        ``record``: also the logits ``y`` [T, B, K] (detached)."""
        if x.dim() < 3:
            raise InputError(f"x: expected [T, B, N_in], got shape {tuple(x.shape)}")
        T, B = x.shape[:2]
        if reset or not self._started:
            self.reset(B, steps=max(T, 1))
        total = x.new_zeros((), dtype=torch.float64)
        first, ys = self.updates, []
        for t in range(T):
            self._check_step(x[t], target)
            logits, loss, _ = self._advance(x[t], target)
            total += loss.to(torch.float64)
            if record:
                ys.append(logits)
            if monitor is not None:
                monitor.step(t + 1, T)
            if (self.update_every is not None and self._since >= self.update_every) or t == T - 1:
                if monitor is not None and self.optimizer is not None:
                    monitor.check(total)
                self.update()
        res = OnlineResult(loss_sum=float(total) * B, updates=self.updates - first)
        if record:
            res.y = torch.stack(ys) if ys else x.new_zeros(0, B, 0)
        return res


def run_sequence(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    gain_weight: float = 0.0,
    update_every: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    grad_clip: float | None = None,
    sam_rho: float = 0.0,
    sam_adaptive: bool = False,
    monitor: EpochMonitor | None = None,
    sam: SAM | None = None,
) -> tuple[float, int]:
    """:meth:`GammaOnlineLearner.run` of a fresh learner on one batch ``x`` [T, B, N] with class indices ``target``
    [B]: ``sum_t dL_t/dp`` into ``p.grad`` (no ``optimizer``) or optimiser steps every ``update_every`` steps.
    Returns (sum over the batch of each sample's loss ``sum_t L_t``, number of updates)."""
    res = GammaOnlineLearner(
        model, gain_weight, update_every, optimizer, grad_clip, sam=sam, sam_rho=sam_rho, sam_adaptive=sam_adaptive
    ).run(x, target, monitor=monitor)
    return res.loss_sum, res.updates


def gamma_online_gradients(model: nn.Module, x: Tensor, target: Tensor, gain_weight: float = 0.0) -> dict[str, Tensor]:
    """The online gradient ``sum_t dL_t/dp`` (one-step graphs, detached state) for one batch, by parameter name;
    no parameter changes."""
    model.zero_grad(set_to_none=True)
    run_sequence(model, x, target, gain_weight)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads
