r"""The eligibility machinery of :class:`~spiketime.learning.online.OnlineLearner` (equations: that module's docstring).

:class:`TraceNetwork` simulates a :class:`~spiketime.nn.network.SpikingNetwork` one step at a time under
``torch.no_grad`` with the model's own pieces (:func:`~spiketime.functional.lif.lif_step`,
:func:`~spiketime.functional.li.li_step`, :func:`~spiketime.functional.delay.delay_kernel`,
:func:`~spiketime.kernels.sparse.linear`) and carries, for every learned parameter, the eligibility ``eps``, its
readout-filtered form ``ebar`` and the gradient accumulator ``acc += sum_b L_j[t] ebar[t]``. It holds no update
policy: the learner on top decides when the accumulated gradient goes into ``p.grad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn

from spiketime.errors import InputError
from spiketime.functional.delay import delay_kernel
from spiketime.functional.li import LIState, li_step
from spiketime.functional.lif import LIFState, decay, lif_init, lif_step
from spiketime.kernels.sparse import linear
from spiketime.nn.layers import LI, LIF

FEEDBACKS = ("symmetric", "random")
_SMALL = 1 << 20  # traces up to this many elements are contracted with the learning signal by a broadcast product

__all__ = ["FEEDBACKS", "TraceNetwork", "kernel_and_derivative", "mask_columns"]


def kernel_and_derivative(delays: Tensor, dt: float, taps: int, mode: str, sigma: float) -> tuple[Tensor, Tensor]:
    """The model's delay kernel ``w_k(D)`` (:func:`delay_kernel`, ``[*delays.shape, taps]``) and its
    elementwise derivative ``dw_k/dD`` (forward-mode AD through the same function: each ``w_k`` depends on its
    own delay only, so one tangent of ones gives every derivative)."""
    with torch.enable_grad(), fwAD.dual_level():
        d = delays.detach().clone().requires_grad_(True)  # the gaussian kernel is straight-through only then
        k = delay_kernel(fwAD.make_dual(d, torch.ones_like(d)), dt, taps, mode, sigma)
        primal, tangent = fwAD.unpack_dual(k)
    primal = primal.detach()
    return primal, (torch.zeros_like(primal) if tangent is None else tangent.detach())


def _effective(module: nn.Module) -> Tensor:
    return getattr(module, "effective_weight", module.weight).detach()


def mask_columns(module: nn.Module) -> Tensor | None:
    """``[M, k]`` column indices of the connections of each row of ``module.mask`` (a fixed fan-in ``k``), when
    the traces are worth keeping compressed (``k <= N / 2``); None for dense modules and denser masks."""
    mask = getattr(module, "mask", None)
    if mask is None:
        return None
    m, n = mask.shape
    k = int(mask[0].count_nonzero()) if m else 0
    if 2 * k > n or not bool((mask.count_nonzero(1) == k).all()):
        return None
    return mask.nonzero()[:, 1].reshape(m, k)  # nonzero() is row-major: row j's columns, sorted


def _per_connection(v: Tensor, cols: Tensor | None) -> Tensor:
    """``v[b, cols[j, c]]``: the input ``[B, N]`` on each neuron's connections, ``[B, M, k]``; without ``cols``
    (dense) ``[B, 1, N]``, broadcast over the neurons."""
    if cols is None:
        return v.unsqueeze(1)
    return v.index_select(1, cols.reshape(-1)).view(v.shape[0], *cols.shape)


def _param_grad(module: nn.Module, g_eff: Tensor) -> Tensor:
    """Gradient of ``module.weight`` from the gradient of its effective weight (``weight * mask``: times the mask)."""
    if getattr(module, "mask", None) is None and not hasattr(type(module), "effective_weight"):
        return g_eff
    with torch.enable_grad():
        w = module.weight
        eff = getattr(module, "effective_weight", w)
        if eff is w or not eff.requires_grad:
            return g_eff
        (g,) = torch.autograd.grad(eff, w, g_eff)
    return g


class _Trace:
    """``eps`` (dv/dtheta along the membrane), ``epsi`` (the synaptic-current stage, CuBa only) and ``ebar``."""

    def __init__(self, shape: tuple[int, ...], like: Tensor, cuba: bool) -> None:
        self.eps = like.new_zeros(shape)
        self.epsi = like.new_zeros(shape) if cuba else None
        self.ebar = like.new_zeros(shape)

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.eps, self.epsi, self.ebar) if t is not None]

    def clone(self) -> _Trace:
        other = object.__new__(_Trace)
        other.eps, other.ebar = self.eps.clone(), self.ebar.clone()
        other.epsi = None if self.epsi is None else self.epsi.clone()
        return other


@dataclass
class _Layer:
    proj: nn.Module
    neuron: LIF
    rec: nn.Module | None
    learn: dict[str, nn.Parameter]  # "weight", "delays", "rec", "tau_mem", "tau_syn" -> the learned parameter
    state: LIFState | None = None
    cols: Tensor | None = None  # [M, k]: the inputs of each neuron, when the traces are compressed (sparse)
    rec_cols: Tensor | None = None  # the same for the recurrent weights
    buf: Tensor | None = None  # ring buffer [taps, B, N] of the last taps inputs
    ptr: int = -1
    lags: Tensor | None = None  # [taps, taps]: buffer rows of lags 0..taps-1 for each pointer
    traces: dict[str, _Trace] = field(default_factory=dict)
    acc: dict[str, Tensor] = field(default_factory=dict)
    psi: Tensor | None = None
    signal: Tensor | None = None

    @property
    def kind(self) -> str:
        return self.proj.kind


class TraceNetwork:
    """The network state, eligibility traces and gradient accumulators of the online rule for ``model`` (a
    :class:`~spiketime.nn.network.SpikingNetwork` with LIF hidden layers and an LI readout of one fixed time
    constant, no biases). ``feedback``: ``symmetric`` (``B = W``) or ``random`` (fixed ``B_l`` drawn from ``seed``).
    The base of :class:`~spiketime.learning.online.OnlineLearner`; not used alone."""

    def __init__(self, model: nn.Module, feedback: str = "symmetric", seed: int = 0) -> None:
        if feedback not in FEEDBACKS:
            raise InputError(f"feedback: expected one of {', '.join(FEEDBACKS)}, got {feedback!r}")
        self.model, self.feedback = model, feedback
        projs, neurons = list(model.projections), list(model.neurons)
        readout = neurons[-1]
        if not isinstance(readout, LI):
            raise InputError(
                f"model: the online rule needs an LI readout (readout='li': a loss on a leaky "
                f"integrator at every step), got {type(readout).__name__}"
            )
        beta_o = decay(readout.log_tau.detach().exp(), model.dt)
        if not bool((beta_o == beta_o.reshape(-1)[0]).all()):
            raise InputError(
                "model: the readout needs one time constant (tau_out) shared by all readout neurons "
                "(the eligibilities are filtered by it once)"
            )
        if readout.log_tau.requires_grad:
            raise InputError("model: the readout time constant (tau_out) must not be learnable")
        self.beta_o = float(beta_o.reshape(-1)[0])
        self.readout, self.readout_proj = readout, projs[-1]
        if getattr(self.readout_proj, "bias", None) is not None:
            raise InputError("model: readout biases are not supported by the online rule")
        recs = list(getattr(model, "recurrents", []))
        self.layers: list[_Layer] = []
        handled = {id(self.readout_proj.weight)}
        for idx, (proj, neuron) in enumerate(zip(projs[:-1], neurons[:-1])):
            if not isinstance(neuron, LIF):
                raise InputError(f"model: hidden layer {idx + 1} is {type(neuron).__name__}, the online rule needs LIF")
            if getattr(proj, "bias", None) is not None:
                raise InputError(f"model: projection {idx} has a bias, not supported by the online rule")
            rec = recs[idx] if idx < len(recs) else None
            learn: dict[str, nn.Parameter] = {}
            for name, p in (
                ("weight", proj.weight),
                ("delays", getattr(proj, "delays", None)),
                ("rec", None if rec is None else rec.weight),
                ("tau_mem", neuron.log_tau_mem),
                ("tau_syn", neuron.log_tau_syn),
            ):
                if p is not None and p.requires_grad:
                    learn[name] = p
            handled |= {id(p) for p in learn.values()}
            self.layers.append(
                _Layer(
                    proj,
                    neuron,
                    rec,
                    learn,
                    cols=mask_columns(proj),
                    rec_cols=None if rec is None else mask_columns(rec),
                )
            )
        missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in handled]
        if missing:
            raise InputError(f"model: the online rule has no rule for parameter(s) {', '.join(missing)}")
        w_o = self.readout_proj.weight
        self.dtype, self.device = w_o.dtype, w_o.device
        self.n_out = w_o.shape[0]
        self.feedback_matrices: list[Tensor] = []
        if feedback == "random":
            g = torch.Generator().manual_seed(seed)
            k = self.n_out
            self.feedback_matrices = [
                (torch.randn(k, lay.neuron.n, generator=g, dtype=torch.float64) / math.sqrt(k)).to(
                    device=self.device, dtype=self.dtype
                )
                for lay in self.layers
            ]
        self._cache: dict[Any, Tensor] = {}
        self._versions: tuple[int, ...] = ()  # the parameters' in-place versions the cache was built at
        self.li: LIState | None = None
        self.sbar: Tensor | None = None
        self.acc_out: Tensor | None = None

    # ------------------------------------------------------------------------------------------ state

    def _reset(self, batch: int) -> None:
        """Zero neuron states, ring buffers, traces and accumulators for a batch of ``batch`` sequences."""
        like = torch.empty(0, dtype=self.dtype, device=self.device)
        self._cache.clear()
        for lay in self.layers:
            m, n = lay.proj.n_out, lay.proj.n_in
            cuba = lay.neuron.log_tau_syn is not None
            lay.state = lif_init(batch, m, like)
            if lay.kind != "none":
                taps = lay.proj.taps
                lay.buf = like.new_zeros(taps, batch, n)
                lay.ptr = -1
                lay.lags = (torch.arange(taps).unsqueeze(1) - torch.arange(taps).unsqueeze(0)) % taps
                lay.lags = lay.lags.to(self.device)
            lay.traces, lay.acc = {}, {}
            width = n if lay.cols is None else lay.cols.shape[1]
            rec_width = m if lay.rec_cols is None else lay.rec_cols.shape[1]
            for name in lay.learn:
                if name in ("weight", "delays"):
                    lay.traces[name] = _Trace((batch, m, width), like, cuba)
                elif name == "rec":
                    lay.traces[name] = _Trace((batch, m, rec_width), like, cuba)
                else:  # time constants: per neuron
                    lay.traces[name] = _Trace((batch, m), like, name == "tau_syn")
                lay.acc[name] = like.new_zeros(lay.traces[name].eps.shape[1:])  # sum over b: [M, width] or [M]
        self.li = LIState(like.new_zeros(batch, self.n_out))
        self.sbar = like.new_zeros(batch, self.layers[-1].neuron.n)
        self.acc_out = torch.zeros_like(self.readout_proj.weight, dtype=self.dtype)

    def state_tensors(self) -> list[Tensor]:
        """Every tensor the learner holds while it runs: neuron states, ring buffers, traces, gradient
        accumulators, readout state, feedback matrices, cached effective weights and delay kernels."""
        out: list[Tensor] = []
        for lay in self.layers:
            if lay.state is not None:
                out += [lay.state.v, lay.state.i, lay.state.s]
            out += [t for t in (lay.buf, lay.lags, lay.cols, lay.rec_cols) if t is not None]
            for tr in lay.traces.values():
                out += tr.tensors()
            out += list(lay.acc.values())
        for name in ("li", "sbar", "acc_out"):
            v = getattr(self, name, None)
            if v is not None:
                out += list(v) if isinstance(v, tuple) else [v]
        out += self.feedback_matrices + list(self._cache.values())
        return out

    def state_bytes(self) -> int:
        """Bytes of the learner's state (:meth:`state_tensors`, each storage counted once): constant in ``T``."""
        seen: dict[tuple[str, int], int] = {}
        for t in self.state_tensors():
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = max(seen.get((str(t.device), st.data_ptr()), 0), st.nbytes())
        return sum(seen.values())

    def _snapshot(self) -> tuple:
        """Copies of everything a step changes (neuron states, ring buffers and pointers, traces, accumulators,
        readout state): where a SAM re-run starts from, and where the learner continues after it."""
        layers = [
            (
                LIFState(*(t.clone() for t in lay.state)),
                None if lay.buf is None else lay.buf.clone(),
                lay.ptr,
                {n: tr.clone() for n, tr in lay.traces.items()},
                {n: a.clone() for n, a in lay.acc.items()},
            )
            for lay in self.layers
        ]
        return layers, LIState(self.li.v.clone()), self.sbar.clone(), self.acc_out.clone()

    def _restore(self, snap: tuple) -> None:
        """Put a :meth:`_snapshot` back (its tensors are taken over, not copied: use each snapshot once)."""
        layers, self.li, self.sbar, self.acc_out = snap
        for lay, (state, buf, ptr, traces, acc) in zip(self.layers, layers):
            lay.state, lay.buf, lay.ptr, lay.traces, lay.acc = state, buf, ptr, traces, acc

    def release(self) -> None:
        """Drop the per-sequence state (traces, buffers)."""
        for lay in self.layers:
            lay.state = lay.buf = lay.lags = lay.psi = lay.signal = None
            lay.traces, lay.acc = {}, {}
        self.li = self.sbar = self.acc_out = None
        self._cache.clear()

    # ------------------------------------------------------------------------------------------ cached

    def _cached(self, key: Any, make: Callable[[], Tensor]) -> Tensor:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _kernel(self, lay: _Layer) -> tuple[Tensor, Tensor | None]:
        """The delay kernel ``[*delays.shape, taps]`` and its derivative (None when the delays are fixed)."""
        p = lay.proj
        if "delays" in lay.learn:
            k, dk = kernel_and_derivative(p.delays, p.dt, p.taps, p.mode, p.sigma)
            return k.to(self.dtype), dk.to(self.dtype)
        return delay_kernel(p.delays.detach(), p.dt, p.taps, p.mode, p.sigma).to(self.dtype), None

    def _synaptic_filter(self, i: int, lay: _Layer) -> tuple[Tensor, Tensor]:
        """Synaptic delays as one batched product over the inputs: the kernels (and derivatives) of input ``n``'s
        connections as the rows of ``[N, c P, taps]`` (``c`` = 1 or 2, ``P`` the most connections of one input,
        zero-padded), and the rows ``[c, M k]`` of the product that hold each connection's value (row-major over
        ``cols``; every column when dense)."""
        if ("Ks", i) not in self._cache:
            k, dk = self._kernel(lay)  # not kept: only the packed rows are
            m, n, taps = k.shape
            cols = lay.cols if lay.cols is not None else torch.arange(n, device=k.device).expand(m, n)
            flat = cols.reshape(-1)
            counts = torch.bincount(flat, minlength=n)
            order = torch.argsort(flat, stable=True)
            rank = torch.empty_like(flat)
            first = torch.cumsum(counts, 0) - counts  # where input n's connections start in the sorted order
            rank[order] = torch.arange(flat.numel(), device=flat.device) - first[flat[order]]
            per = int(counts.max()) if flat.numel() else 0
            stacked = [k] if dk is None else [k, dk]
            packed = k.new_zeros(n, len(stacked), per, taps)
            for c, kern in enumerate(stacked):
                packed[flat, c, rank] = kern.gather(1, cols.unsqueeze(2).expand(-1, -1, taps)).reshape(-1, taps)
            rows = torch.stack([flat * (len(stacked) * per) + c * per + rank for c in range(len(stacked))])
            self._cache[("Ks", i)], self._cache[("Kr", i)] = packed.reshape(n, -1, taps), rows
        return self._cache[("Ks", i)], self._cache[("Kr", i)]

    # ------------------------------------------------------------------------------------------ one step

    def _layer_step(self, i: int, lay: _Layer, h: Tensor) -> Tensor:
        proj, neuron = lay.proj, lay.neuron
        dt = neuron.dt
        w = self._cached(("W", i), lambda: _effective(proj).to(self.dtype))
        cols = lay.cols
        w_c = w if cols is None else self._cached(("Wc", i), lambda: w.gather(1, cols))  # [M, k]: connections only
        dxd = None
        if lay.kind == "none":
            xd = h
            current = linear(h, w)
        else:
            taps = proj.taps
            lay.ptr = (lay.ptr + 1) % taps
            lay.buf[lay.ptr] = h
            lagged = lay.buf.index_select(0, lay.lags[lay.ptr])  # [taps, B, N], lag k = input at t - k
            if lay.kind == "axonal":  # sum_k w_k(D_i) x_i[t-k]: a [taps, B, N] product, summed (einsum is slower)
                if ("K", i) not in self._cache:
                    self._cache[("K", i)], self._cache[("dK", i)] = self._kernel(lay)
                k, dk = self._cache[("K", i)], self._cache[("dK", i)]
                xd = (k.t().unsqueeze(1) * lagged).sum(0)
                current = linear(xd, w)
                if dk is not None:
                    dxd = (dk.t().unsqueeze(1) * lagged).sum(0)
            else:  # each connection's own filter: [N, c P, taps] @ [N, taps, B], then each connection's row
                packed, rows = self._synaptic_filter(i, lay)
                out = torch.bmm(packed, lagged.permute(2, 0, 1).contiguous()).reshape(-1, h.shape[0])  # [N c P, B]
                m, width = w_c.shape
                xd = out.index_select(0, rows[0]).t().view(h.shape[0], m, width)  # [B, M, k (or N)]
                dxd = out.index_select(0, rows[1]).t().view(h.shape[0], m, width) if rows.shape[0] == 2 else None
                current = (w_c * xd).sum(2)
        prev = lay.state
        if lay.rec is not None:
            w_rec = self._cached(("R", i), lambda: _effective(lay.rec).to(self.dtype))
            current = current + prev.s.to(self.dtype) @ w_rec.t()
        params = neuron.params()
        s, lay.state = lif_step(current, prev, params, dt)
        beta = decay(neuron.tau_mem.detach(), dt).to(self.dtype).expand(neuron.n)
        alpha = None if neuron.log_tau_syn is None else decay(neuron.log_tau_syn.detach().exp(), dt).to(self.dtype)
        zero = neuron.reset == "zero"
        r = (1.0 - prev.s) if zero else None  # [B, M]: the detached reset's factor on the carried membrane
        psi = params.surrogate.grad(lay.state.v - params.theta)
        lay.psi = psi
        psi_o = (1.0 - self.beta_o) * psi
        # traces over (j, i): per-neuron factors as [M, 1] (or [B, M, 1] with a zero reset)
        beta_r = beta.unsqueeze(1) * r.unsqueeze(2) if zero else beta.unsqueeze(1)
        omb = (1.0 - beta).unsqueeze(1)
        alpha_c = None if alpha is None else alpha.unsqueeze(1)
        for name, tr in lay.traces.items():  # xd, dxd: [B, M, k] (synaptic) or [B, N] (none, axonal)
            if name == "weight":
                u = xd if xd.dim() == 3 else _per_connection(xd, cols)
            elif name == "delays":
                u = w_c * (dxd if dxd.dim() == 3 else _per_connection(dxd, cols))
            elif name == "rec":
                u = _per_connection(prev.s.to(self.dtype), lay.rec_cols)
            elif name == "tau_mem":  # d v / d beta = r (v[t-1] + beta eps[t-1]) - i[t]
                tr.eps.mul_(beta).add_(prev.v)
                if zero:
                    tr.eps.mul_(r)
                tr.eps.sub_(lay.state.i)
                tr.ebar.mul_(self.beta_o).addcmul_(psi_o, tr.eps)
                continue
            else:  # tau_syn: epsi = i[t-1] + alpha epsi, then the membrane filter
                tr.epsi.mul_(alpha).add_(prev.i)
                tr.eps.mul_(beta * r if zero else beta).addcmul_(1.0 - beta, tr.epsi)
                tr.ebar.mul_(self.beta_o).addcmul_(psi_o, tr.eps)
                continue
            if tr.epsi is not None:
                tr.epsi.mul_(alpha_c).add_(u)
                u = tr.epsi
            tr.eps.mul_(beta_r).addcmul_(omb, u)
            tr.ebar.mul_(self.beta_o).addcmul_(psi_o.unsqueeze(2), tr.eps)
        return s

    def _accumulate(self, lay: _Layer) -> None:
        sig = lay.signal
        for name, tr in lay.traces.items():
            if tr.ebar.dim() == 2:
                lay.acc[name].add_((sig * tr.ebar).sum(0))
                continue
            if tr.ebar.numel() <= _SMALL:  # broadcast product and sum: fewer, larger ops than einsum's small GEMMs
                lay.acc[name].add_((sig.unsqueeze(2) * tr.ebar).sum(0))
            else:
                lay.acc[name].add_(torch.einsum("bm,bmn->mn", sig, tr.ebar))

    def _step(self, x: Tensor, target: Tensor, onehot: Tensor, norm: float) -> tuple[list[Tensor], Tensor, Tensor]:
        """One step of the network on ``x`` [B, N_in]: hidden spikes per layer, readout ``y`` [B, K], the step's
        ``sum_b CE(y[b], target[b])``; the eligibilities advance and ``acc += sum_b L[t] ebar[t]`` with
        ``err[t] = (softmax(y[t]) - onehot) * norm``."""
        versions = tuple(p._version for p in self.model.parameters())
        if versions != self._versions:  # a parameter changed in place (an optimiser step, SAM): rebuild the cache
            self._cache.clear()
            self._versions = versions
        h, spikes = x, []
        for i, lay in enumerate(self.layers):
            h = self._layer_step(i, lay, h)
            spikes.append(h)
        w_o = self._cached("Wo", lambda: _effective(self.readout_proj).to(self.dtype))
        y, self.li = li_step(linear(h, w_o), self.li, self.readout.log_tau.detach().exp(), self.readout.dt)
        self.sbar.mul_(self.beta_o).add_(h, alpha=1.0 - self.beta_o)
        loss = F.cross_entropy(y, target, reduction="sum")
        err = (torch.softmax(y, dim=1) - onehot) * norm
        self.acc_out.add_(err.t() @ self.sbar)
        if self.feedback == "random":
            for lay, b in zip(self.layers, self.feedback_matrices):
                lay.signal = err @ b
        else:
            sig = err @ w_o
            for i in range(len(self.layers) - 1, -1, -1):
                self.layers[i].signal = sig
                if i > 0:
                    w_above = self._cached(("W", i), lambda j=i: _effective(self.layers[j].proj).to(self.dtype))
                    sig = (self.layers[i].psi * sig) @ w_above
        for lay in self.layers:
            self._accumulate(lay)
        return spikes, y, loss

    # ------------------------------------------------------------------------------------------ gradients

    def _gradients(self) -> list[tuple[nn.Parameter, Tensor]]:
        """``(parameter, dL/dparameter)`` from the accumulators: compressed columns scattered back to ``[M, N]``,
        axonal delays summed over neurons, masks applied, time constants by ``d beta / d log tau = beta dt / tau``."""
        out: list[tuple[nn.Parameter, Tensor]] = []
        for lay in self.layers:
            for name, p in lay.learn.items():
                g = lay.acc[name]
                cols = lay.rec_cols if name == "rec" else lay.cols
                if name in ("weight", "delays", "rec") and cols is not None:  # [M, k] -> [M, N]
                    g = g.new_zeros((lay.rec if name == "rec" else lay.proj).mask.shape).scatter_(1, cols, g)
                if name == "delays" and lay.kind == "axonal":  # one delay per input: the sum over neurons
                    g = g.sum(0)
                if name == "weight":
                    g = _param_grad(lay.proj, g)
                elif name == "rec":
                    g = _param_grad(lay.rec, g)
                elif name == "tau_mem":  # d beta / d log tau = beta dt / tau
                    tau = p.detach().exp().to(self.dtype)
                    g = g * decay(tau, lay.neuron.dt) * lay.neuron.dt / tau
                elif name == "tau_syn":
                    tau = p.detach().exp().to(self.dtype)
                    g = g * decay(tau, lay.neuron.dt) * lay.neuron.dt / tau
                out.append((p, g.to(p.dtype)))
        out.append(
            (self.readout_proj.weight, _param_grad(self.readout_proj, self.acc_out).to(self.readout_proj.weight.dtype))
        )
        return out
