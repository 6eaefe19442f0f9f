r"""Online three-factor learning (the application's ``learner: online``): eligibility traces, forward in time only.

The learner simulates the network step by step (under ``torch.no_grad``, with the model's own pieces:
:func:`~spiketime.functional.lif.lif_step`, :func:`~spiketime.functional.li.li_step`,
:func:`~spiketime.functional.delay.delay_kernel`, :func:`~spiketime.kernels.sparse.linear`), so its spikes
are the model's, and carries for every learned parameter ``theta`` of hidden layer ``l`` (``M`` neurons,
``N`` inputs, batch ``B``):

* the eligibility vector ``eps[t] = dv[t]/dtheta`` along the membrane recursion only, with the reset
  detached (``r_j[t] = 1`` for ``reset: subtract``, ``1 - s_j[t-1]`` for ``reset: zero``)::

      eps_j[t] = beta_j r_j[t] eps_j[t-1] + (1 - beta_j) u[t]            (no synapse)
      epsi[t]  = alpha_j epsi[t-1] + u[t];  eps_j[t] = beta_j r_j eps_j[t-1] + (1 - beta_j) epsi[t]   (CuBa)

  with the input ``u`` of each parameter: weights ``W_ji``: the delayed input ``xd_ji[t]``; delays
  ``D_ji`` (synaptic) or ``D_i`` (axonal, trace still per ``(j, i)``, summed over ``j``): ``W_ji
  dxd_ji[t]/dD``, the derivative of the model's delay kernel (``sum_k dw_k/dD x[t-k]``, from a ring buffer
  of the last ``taps`` input steps); recurrent weights (e-prop): ``s_i[t-1]``. Time constants have their
  own exact per-neuron traces: ``eps_beta[t] = r (v[t-1] + beta eps_beta[t-1]) - i[t]`` and, with a
  synapse, ``epsi_alpha[t] = i[t-1] + alpha epsi_alpha[t-1]`` filtered like the others;
* the eligibility filtered by the (uniform) LI readout, ``ebar[t] = beta_o ebar[t-1] + (1 - beta_o)
  psi[t] eps[t]``, ``psi_j[t] = surrogate.grad(v_j[t] - theta)``;

and accumulates ``dL/dtheta += sum_b L_j[t] ebar[t]`` with the learning signal ``L[t]``: for the top
hidden layer ``err[t] @ B`` where ``err[t] = (softmax(y[t]) - onehot) / (T B)`` is ``dloss/dy[t]`` of
the ``per_step`` loss and ``B = W_o`` (``feedback: symmetric``); for a lower layer the signal propagated
through the current step only, ``L^(l) = (psi^(l+1) L^(l+1)) @ W_(l+1)``; with ``feedback: random`` every
hidden layer gets ``err[t] @ B_l`` with a fixed random ``B_l`` [K, M_l] (std ``1/sqrt(K)``, seeded).
Readout weights: ``dL/dW_o += err[t]^T sbar[t]``, ``sbar = beta_o sbar + (1 - beta_o) s_L[t]`` (exact).

With one hidden layer, no recurrence and symmetric feedback, the accumulated gradient equals BPTT's through
the same model with ``detach_reset`` (every parameter: weights, delays, time constants, readout). Several
layers, recurrent weights and random feedback are approximations (docs/online.md).

Memory: ``O(B M N)`` per trace plus the ``taps`` ring buffer, independent of ``T``
(:meth:`OnlineLearner.state_bytes`). Sparse projections (a mask of a fixed fan-in ``k`` per neuron)
with ``k <= N / 2`` keep their traces only on the ``k`` connections of each neuron (``[B, M, k]``, columns
``cols``), and synaptic delays filter only those connections: time and memory scale with the density.
Weight gradients go through ``effective_weight`` (masks).

The machinery (states, traces, accumulators) is :class:`~spiketime.learning.online_traces.TraceNetwork`; this module
adds the update policy: :meth:`OnlineLearner.run` (a whole batch, optimiser steps every ``update_every``) and the
streaming :meth:`OnlineLearner.step` / :meth:`OnlineLearner.flush` for a plain PyTorch loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.errors import InputError
from spiketime.learning.online_traces import FEEDBACKS, TraceNetwork, kernel_and_derivative, mask_columns
from spiketime.learning.sam import SAM, perturbed
from spiketime.progress import EpochMonitor

__all__ = [
    "FEEDBACKS",
    "OnlineLearner",
    "OnlineResult",
    "check_update_every",
    "kernel_and_derivative",
    "mask_columns",
    "online_gradients",
    "optimizer_step",
    "resolve_sam",
]


def check_update_every(update_every: Any) -> None:
    """``update_every`` of an online learner: None (once per sequence) or an integer >= 1."""
    if update_every is not None and (
        isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1
    ):
        raise InputError(f"update_every: expected None or an integer >= 1, got {update_every!r}")


def resolve_sam(sam: SAM | None, sam_rho: float = 0.0, sam_adaptive: bool = False) -> SAM:
    """The learner's :class:`~spiketime.learning.sam.SAM`: ``sam`` itself, else ``SAM(sam_rho, sam_adaptive)``
    (the older arguments; ``rho = 0`` is no SAM). Giving both ``sam`` and ``sam_rho > 0`` is an error."""
    if sam is not None:
        if sam_rho:
            raise InputError(f"sam, sam_rho: give one of them, got sam={sam!r} and sam_rho={sam_rho!r}")
        if not isinstance(sam, SAM):
            raise InputError(f"sam: expected a spiketime.learning.sam.SAM or None, got {type(sam).__name__}")
        return sam
    if not (isinstance(sam_rho, (int, float)) and sam_rho >= 0):
        raise InputError(f"sam_rho: expected a number >= 0, got {sam_rho!r}")
    return SAM(sam_rho, sam_adaptive)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """An online learner's update from the gradients in ``p.grad``: clip their global norm to ``grad_clip``
    (None: no clipping), ``optimizer.step()``, then ``model.project_()`` (delay bounds, masks)."""
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    model.project_()


def check_steps(name: str, value: Any) -> None:
    """``name`` (``batch_size``, ``steps``) must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass
class OnlineResult:
    """What :meth:`OnlineLearner.run` returns: the summed per-sample ``per_step`` loss (sum over the batch of
    each sample's ``1/T sum_t CE_t``), the number of updates in this call, and (``record=True``) the hidden
    spikes per layer ``[T, B, M_l]`` and the readout ``[T, B, K]``."""

    loss_sum: float
    updates: int
    spikes: list[Tensor] | None = None
    y: Tensor | None = None


class OnlineLearner(TraceNetwork):
    """Online three-factor learner for a :class:`~spiketime.nn.network.SpikingNetwork` (module docstring).

    The loss of a batch of ``B`` sequences is ``L = 1/(T B) sum_t sum_b CE(y_b[t], c_b)`` and the learner
    accumulates its online gradient ``dL/dtheta = sum_t sum_b L_j[t] ebar[t]`` forward in time.

    **Streaming** (one time step per call, the state carried between calls; parameters never change inside)::

        import torch
        from spiketime.learning.online import OnlineLearner
        from spiketime.nn.network import SpikingNetwork

        net = SpikingNetwork(5, 3, [16], delays="axonal", delay_max=4.0, seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        learner = OnlineLearner(net)                      # no optimiser: the loop below owns it
        x, c = (torch.rand(20, 2, 5) < 0.3).float(), torch.tensor([0, 2])   # x [T, B, N_in], c [B]
        for epoch in range(3):
            learner.reset(x.shape[1], steps=x.shape[0])   # new sequences; steps=T: the loss's 1/T
            for x_t in x:
                y_t, loss_t = learner.step(x_t, c)        # [B, K] readout, batch-mean CE of this step
            learner.flush()                               # p.grad += the accumulated gradient
            opt.step(); net.project_(); opt.zero_grad()

    ``step`` resets implicitly at the first call (``steps=None``: every step weighs 1, ``L = 1/B sum_t sum_b
    CE``). ``flush`` may come every few steps too (the traces go on; the weights may change in between: cached
    effective weights and delay kernels are rebuilt when a parameter changed in place).

    **Whole batches**: :meth:`run` ``(x [T, B, N_in], c [B])``. ``update_every``: ``None`` updates once, at the
    end of each sequence; ``K``: every ``K`` steps (and at the end). Each update (:meth:`update`), with an
    ``optimizer``: ``zero_grad``, gradients in ``p.grad``, ``grad_clip`` (global norm), ``optimizer.step()``,
    ``model.project_()``; without one the gradients are added to ``p.grad`` (the sum over the sequence) and
    no parameter changes, so the caller steps its own optimiser afterwards. ``feedback: random`` matrices are
    drawn once from ``seed``.

    ``sam`` (:class:`~spiketime.learning.sam.SAM`; or the older ``sam_rho``, ``sam_adaptive``): SAM / ASAM. The
    learner snapshots its state at the first step after each flush and keeps those steps' inputs; at the flush
    it perturbs the weights along the accumulated gradient, re-runs those steps from the snapshot, puts the
    gradient found there into ``p.grad`` (the weights restored) and continues from the unperturbed state.
    Twice the compute; the inputs since the last flush are held (``K`` steps with ``update_every=K``).
    """

    def __init__(
        self,
        model: nn.Module,
        feedback: str = "symmetric",
        update_every: int | None = None,
        seed: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
        grad_clip: float | None = None,
        sam_rho: float = 0.0,
        sam_adaptive: bool = False,
        sam: SAM | None = None,
    ) -> None:
        if feedback not in FEEDBACKS:
            raise InputError(f"feedback: expected one of {', '.join(FEEDBACKS)}, got {feedback!r}")
        check_update_every(update_every)
        self.sam = resolve_sam(sam, sam_rho, sam_adaptive)
        super().__init__(model, feedback, seed)
        self.update_every, self.optimizer, self.grad_clip = update_every, optimizer, grad_clip
        self.sam_rho, self.sam_adaptive = self.sam.rho, self.sam.adaptive
        self.updates = 0  # update() calls since the last reset
        self.steps: int | None = None  # the T of the loss average (None: every step weighs 1)
        self.batch_size: int | None = None
        self._norm = 1.0
        self._since = 0  # steps since the last flush
        self._start: tuple | None = None  # SAM: the state at the first step since the last flush
        self._pending: list[tuple[Tensor, Tensor]] = []  # SAM: those steps' inputs and targets

    # ------------------------------------------------------------------------------------------ streaming

    def reset(self, batch_size: int, steps: int | None = None) -> None:
        """Start ``batch_size`` new sequences: zero neuron states, buffers, traces and accumulators. ``steps``:
        the sequence length ``T`` the loss averages over (``err[t] = (softmax(y[t]) - onehot) / (T B)``);
        None: each step's loss weighs 1 (``err[t] = (softmax(y[t]) - onehot) / B``)."""
        check_steps("batch_size", batch_size)
        if steps is not None:
            check_steps("steps", steps)
        self._reset(batch_size)
        self.batch_size, self.steps, self.updates = batch_size, steps, 0
        self._norm = 1.0 / (steps * batch_size) if steps is not None else 1.0 / batch_size
        self._since, self._start, self._pending = 0, None, []

    def step(self, x_t: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Advance the network one step on ``x_t`` [B, N_in] with class indices ``target`` [B] and add this
        step's gradient to the accumulator (:meth:`flush` puts it into ``p.grad``). Returns the readout
        ``y_t`` [B, K] and the step's batch-mean loss ``mean_b CE(y_t[b], target[b])`` (a 0-d tensor)."""
        if x_t.dim() != 2:
            raise InputError(f"x_t: expected [B, N_in], got shape {tuple(x_t.shape)}")
        n_in = self.layers[0].proj.n_in if self.layers else self.readout_proj.n_in
        if x_t.shape[1] != n_in:
            raise InputError(f"x_t: expected {n_in} inputs per step, got shape {tuple(x_t.shape)}")
        if self.batch_size is None or self.acc_out is None:
            self.reset(x_t.shape[0])
        elif x_t.shape[0] != self.batch_size:
            raise InputError(
                f"x_t: batch of {x_t.shape[0]}, but the sequences were started with batch_size "
                f"{self.batch_size}; call reset(batch_size) first"
            )
        target = target.to(self.device)
        if tuple(target.shape) != (self.batch_size,):
            raise InputError(
                f"target: expected [B] = [{self.batch_size}] class indices, got shape {tuple(target.shape)}"
            )
        with torch.no_grad():
            _, y, loss = self._advance(x_t.to(device=self.device, dtype=self.dtype), target)
        return y, loss / self.batch_size

    def flush(self) -> None:
        """``p.grad += dL/dp`` accumulated since the last flush (or reset), then zero the accumulator; no
        parameter changes. With ``sam``: the gradient of those steps re-run from their starting state at the
        perturbed weights ``w + e`` (``e`` from the accumulated gradient; :mod:`spiketime.learning.sam`)."""
        if self.acc_out is None:
            return
        with torch.no_grad():
            grads = self._gradients()
            if self.sam and self._pending:
                grads = self._sam_gradients(grads)
            for p, g in grads:
                p.grad = g.clone() if p.grad is None else p.grad + g
            for lay in self.layers:
                for a in lay.acc.values():
                    a.zero_()
            self.acc_out.zero_()
        self._since, self._start, self._pending = 0, None, []

    def update(self) -> None:
        """One update of :meth:`run`: with the learner's ``optimizer``: ``zero_grad``, :meth:`flush`, clip to
        ``grad_clip``, ``optimizer.step()``, ``model.project_()``; without one: :meth:`flush` only."""
        if self.optimizer is None:
            self.flush()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.flush()
            with torch.no_grad():
                optimizer_step(self.model, self.optimizer, self.grad_clip)
            self._cache.clear()  # effective weights and delay kernels changed
        self.updates += 1

    def release(self) -> None:
        """Drop the per-sequence state (traces, buffers, SAM's held inputs); the next step starts afresh."""
        super().release()
        self.batch_size, self._since, self._start, self._pending = None, 0, None, []

    # ------------------------------------------------------------------------------------------ internals

    def _advance(
        self, x_t: Tensor, target: Tensor, onehot: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """One step (``x_t`` already on the learner's device and dtype), remembered for SAM's re-run."""
        if self.sam:
            if self._start is None:
                self._start = self._snapshot()
            self._pending.append((x_t, target))
        if onehot is None:
            onehot = F.one_hot(target, self.n_out).to(self.dtype)
        self._since += 1
        return self._step(x_t, target, onehot, self._norm)

    def _sam_gradients(self, grads: list[tuple[nn.Parameter, Tensor]]) -> list[tuple[nn.Parameter, Tensor]]:
        """SAM's second pass: the steps since the last flush re-run from their snapshot at the weights perturbed
        along ``grads``; their gradient (the learner continues from its unperturbed state; ``p.grad`` as before)."""
        params = list(self.model.parameters())
        saved = [p.grad for p in params]  # the caller's gradients: the perturbation uses the online gradient only
        for p in params:
            p.grad = None
        for p, g in grads:
            p.grad = g
        end = self._snapshot()
        with perturbed(self.model, self.sam.rho, self.sam.adaptive):
            self._cache.clear()
            self._restore(self._start)
            for x_t, target in self._pending:
                self._step(x_t, target, F.one_hot(target, self.n_out).to(self.dtype), self._norm)
            grads = self._gradients()
        self._restore(end)
        self._cache.clear()
        for p, g in zip(params, saved):
            p.grad = g
        return grads

    # ------------------------------------------------------------------------------------------ whole batches

    def run(
        self,
        x: Tensor,
        target: Tensor,
        record: bool = False,
        callback: Callable[[OnlineLearner], None] | None = None,
        monitor: EpochMonitor | None = None,
        reset: bool = True,
    ) -> OnlineResult:
        """Learn from one batch ``x`` [T, B, N_in] with class indices ``target`` [B], step by step, with an
        :meth:`update` every ``update_every`` steps and at the end.

        ``callback(learner)`` is called after every update. ``reset=False`` continues the sequences of the last
        run or :meth:`reset` (a long stream in chunks; the loss keeps that reset's ``steps``). The state (traces,
        buffers) is kept until the next run or :meth:`release`, so that :meth:`state_bytes` can be read.
        ``monitor`` (a training epoch's): told every time step, and checks the loss so far before every
        optimiser step (raises :class:`~spiketime.errors.TrainingDiverged` when it is not finite)."""
        if x.dim() != 3:
            raise InputError(f"x: expected [T, B, N_in], got shape {tuple(x.shape)}")
        x = x.to(device=self.device, dtype=self.dtype)
        target = target.to(self.device)
        T, B, _ = x.shape
        if tuple(target.shape) != (B,):
            raise InputError(f"target: expected [B] = [{B}] class indices, got shape {tuple(target.shape)}")
        if reset or self.batch_size is None or self.acc_out is None:
            self.reset(B, steps=max(T, 1))
        elif B != self.batch_size:
            raise InputError(f"x: batch of {B}, but the sequences were started with batch_size {self.batch_size}")
        onehot = F.one_hot(target, self.n_out).to(self.dtype)
        loss = x.new_zeros(())
        spikes: list[list[Tensor]] = [[] for _ in self.layers]
        ys: list[Tensor] = []
        first = self.updates
        with torch.no_grad():
            for t in range(T):
                s, y, step_loss = self._advance(x[t], target, onehot)
                loss += step_loss
                if record:
                    for lst, st in zip(spikes, s):
                        lst.append(st)
                    ys.append(y)
                if monitor is not None:
                    monitor.step(t + 1, T)
                if (self.update_every is not None and self._since >= self.update_every) or t == T - 1:
                    if monitor is not None and self.optimizer is not None:
                        monitor.check(loss)
                    self.update()
                    if callback is not None:
                        callback(self)
        res = OnlineResult(loss_sum=float(loss) / (self.steps or 1), updates=self.updates - first)
        if record:
            res.spikes = [
                torch.stack(lst) if lst else x.new_zeros(0, B, lay.neuron.n) for lst, lay in zip(spikes, self.layers)
            ]
            res.y = torch.stack(ys) if ys else x.new_zeros(0, B, self.n_out)
        return res


def online_gradients(
    model: nn.Module, x: Tensor, target: Tensor, feedback: str = "symmetric", seed: int = 0
) -> dict[str, Tensor]:
    """The online rule's gradient ``dL/dp`` of ``L = 1/(T B) sum_t sum_b CE(y_b[t], c_b)`` for one batch ``x``
    [T, B, N_in], by parameter name (no update; ``p.grad`` is left holding it)."""
    model.zero_grad(set_to_none=True)
    OnlineLearner(model, feedback=feedback, seed=seed).run(x, target)
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
