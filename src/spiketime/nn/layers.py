"""LIF, LI, DelayedLinear and Recurrent modules (see :mod:`spiketime.functional` for the equations)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spiketime.functional.delay import (
    DelayState,
    axonal_delay,
    delay_taps,
    synaptic_delay_linear,
)
from spiketime.functional.li import LIState, li_sequence
from spiketime.functional.lif import LIFParams, LIFState, lif_sequence
from spiketime.functional.quant import fake_quantize
from spiketime.kernels import check_backend
from spiketime.kernels.sparse import linear
from spiketime.surrogate import FastSigmoid, Surrogate

DELAY_KINDS = ("none", "axonal", "synaptic")
DELAY_MODES = ("interp", "gaussian")
DEFAULT_SURROGATE = FastSigmoid()  # the default surrogate of LIF (one shared, frozen instance)


def fan_in(density: float, n: int) -> int:
    """Nonzero inputs per neuron of a projection from ``n`` candidates at ``density``: ``round(density * n)``,
    at least 1 (when ``n >= 1``)."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    return min(n, max(1, round(density * n)))  # min: 0 when n == 0


def fixed_fan_in_mask(
    n_out: int, n_in: int, k: int, generator: torch.Generator | None = None, no_self: bool = False
) -> Tensor:
    """``[n_out, n_in]`` float 0/1 mask with exactly ``k`` ones per row, their columns drawn uniformly without
    replacement from ``generator``; ``no_self`` (square masks) excludes the diagonal (needs ``k < n_in``)."""
    if not 0 <= k <= n_in - (1 if no_self else 0):
        raise ValueError(f"cannot draw {k} of {n_in} inputs per row{' off the diagonal' if no_self else ''}")
    keys = torch.rand(n_out, n_in, generator=generator)
    if no_self:
        keys.fill_diagonal_(2.0)  # rand < 1: the diagonal sorts last and is never among the k smallest
    cols = keys.argsort(dim=1)[:, :k]
    return torch.zeros(n_out, n_in).scatter_(1, cols, 1.0)


class LIF(nn.Module):
    """Layer of ``n`` LIF neurons; ``tau_mem`` (ms) per neuron, learnable and kept positive as ``exp(log_tau_mem)``.
    ``smooth``: the spike is ``surrogate.primitive(v - theta)`` (surrogate-forward training) instead of the step."""

    def __init__(
        self,
        n: int,
        dt: float,
        tau_mem: float = 10.0,
        learn_tau: bool = True,
        tau_syn: float | None = None,
        theta: float = 1.0,
        reset: str = "subtract",
        surrogate: Surrogate = DEFAULT_SURROGATE,
        detach_reset: bool = False,
        backend: str = "auto",
        smooth: bool = False,
    ) -> None:
        super().__init__()
        self.n, self.dt, self.backend = n, dt, check_backend(backend)
        self.theta, self.reset, self.surrogate, self.detach_reset = theta, reset, surrogate, detach_reset
        self.smooth = smooth  # spikes are surrogate.primitive(v - theta) (surrogate-forward) instead of H(v - theta)
        log_tau = torch.full((n,), math.log(tau_mem))
        self.log_tau_mem = nn.Parameter(log_tau, requires_grad=learn_tau)
        self.log_tau_syn = (
            None if tau_syn is None else nn.Parameter(torch.full((n,), math.log(tau_syn)), requires_grad=learn_tau)
        )

    @property
    def tau_mem(self) -> Tensor:
        return self.log_tau_mem.exp()

    def params(self) -> LIFParams:
        tau_syn = None if self.log_tau_syn is None else self.log_tau_syn.exp()
        return LIFParams(self.tau_mem, tau_syn, self.theta, self.reset, self.surrogate, self.detach_reset, self.smooth)

    def forward(self, x_seq: Tensor, state: LIFState | None = None) -> tuple[Tensor, LIFState]:
        return lif_sequence(x_seq, self.params(), self.dt, state, backend=self.backend)


class LI(nn.Module):
    """Leaky-integrator readout of ``n`` neurons with time constant ``tau`` (ms); learnable if ``learn_tau``."""

    def __init__(self, n: int, dt: float, tau: float = 20.0, learn_tau: bool = False, backend: str = "auto") -> None:
        super().__init__()
        self.n, self.dt, self.backend = n, dt, check_backend(backend)
        self.log_tau = nn.Parameter(torch.full((n,), math.log(tau)), requires_grad=learn_tau)

    def forward(self, x_seq: Tensor, state: LIState | None = None) -> tuple[Tensor, LIState]:
        return li_sequence(x_seq, self.log_tau.exp(), self.dt, state, backend=self.backend)


class DelayedLinear(nn.Module):
    """Dense projection with optional learnable delays: ``I_j[t] = sum_i W_ji x_i(t - D) + b_j``.

    ``delays``: ``"none"``; ``"axonal"`` (``D = D_i``, one per presynaptic neuron);
    ``"synaptic"`` (``D = D_ji``, one per connection). Delays are in ms, learnable, kept in
    ``[0, delay_max]`` by :meth:`project_`; ``delay_mode`` picks their gradient (``interp`` or
    ``gaussian`` of width ``delay_sigma`` ms). Initial delays are uniform in
    ``delay_init * delay_max``.

    ``density < 1`` makes the connectivity sparse: a fixed buffer ``mask`` [n_out, n_in] (0/1, drawn from
    ``generator`` after the weights and delays) with exactly ``k = round(density * n_in)`` (at least 1) ones
    per row, so every output neuron has the same fan-in; ``mask`` is None when ``density == 1``. The forward
    pass uses :attr:`effective_weight` (``weight * mask``), so masked weights get zero gradient, and
    :meth:`project_` zeroes them again after each optimiser step. Init: ``W ~ N(0, s^2)``,
    ``s = weight_scale / sqrt(k)`` (``k = n_in`` when dense), masked entries 0.

    ``backend`` (``auto | fused | reference``) is passed to the delay op and to the projection
    (:func:`spiketime.kernels.select` decides their implementations).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        dt: float,
        delays: str = "none",
        delay_max: float = 0.0,
        delay_mode: str = "interp",
        delay_sigma: float = 1.0,
        delay_init: tuple[float, float] = (0.0, 1.0),
        weight_scale: float = 1.0,
        bias: bool = False,
        generator: torch.Generator | None = None,
        density: float = 1.0,
        weight_bits: int | None = None,
        per_channel: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)  # kernels for the delays and the projection (spiketime.kernels)
        if delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {DELAY_KINDS}, got {delays!r}")
        if delay_mode not in DELAY_MODES:
            raise ValueError(f"delay_mode must be one of {DELAY_MODES}, got {delay_mode!r}")
        self.n_in, self.n_out, self.dt = n_in, n_out, dt
        self.weight_bits, self.per_channel = weight_bits, per_channel
        self.kind, self.delay_max, self.mode, self.sigma = delays, delay_max, delay_mode, delay_sigma
        k = n_in if density == 1 else fan_in(density, n_in)
        self.density, self.fan_in = density, k
        w = torch.randn(n_out, n_in, generator=generator) * (weight_scale / math.sqrt(k))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        if delays == "none":
            self.delays = None
        else:
            shape = (n_in,) if delays == "axonal" else (n_out, n_in)
            lo, hi = delay_init
            d = (lo + (hi - lo) * torch.rand(shape, generator=generator)) * delay_max
            self.delays = nn.Parameter(d)
        mask = None if density == 1 else fixed_fan_in_mask(n_out, n_in, k, generator)
        self.register_buffer("mask", mask)
        if mask is not None:
            with torch.no_grad():
                self.weight.masked_fill_(mask == 0, 0.0)

    @property
    def effective_weight(self) -> Tensor:
        """The weights the forward pass uses: ``weight * mask`` (``weight`` when dense), fake-quantised to
        ``weight_bits`` when set (quantisation-aware training, straight-through gradient)."""
        w = self.weight if self.mask is None else self.weight * self.mask
        return w if self.weight_bits is None else fake_quantize(w, self.weight_bits, self.per_channel)

    @property
    def taps(self) -> int:
        return delay_taps(self.delay_max, self.dt, self.mode, self.sigma)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the delays into ``[0, delay_max]`` and zero the masked weights (call after each optimiser step)."""
        if self.delays is not None:
            self.delays.clamp_(0.0, self.delay_max)
        if self.mask is not None:
            self.weight.masked_fill_(self.mask == 0, 0.0)

    def forward(self, x_seq: Tensor, state: DelayState | None = None) -> tuple[Tensor, DelayState | None]:
        w = self.effective_weight
        if self.kind == "none":
            return linear(x_seq, w, self.bias, backend=self.backend), None
        if self.kind == "axonal":
            xd, state = axonal_delay(
                x_seq, self.delays, self.dt, self.taps, self.mode, self.sigma, state, backend=self.backend
            )
            return linear(xd, w, self.bias, backend=self.backend), state
        return synaptic_delay_linear(
            x_seq, w, self.delays, self.dt, self.taps, self.mode, self.sigma, self.bias, state, backend=self.backend
        )


class Recurrent(nn.Module):
    """Recurrent weights of a layer of ``n`` neurons onto itself: ``I_j[t] += sum_i W_ji s_i[t-1]`` (no delay).

    ``mask`` [n, n] (buffer, float 0/1) has a zero diagonal (no self-connections) and exactly
    ``k = round(density * (n - 1))`` (at least 1, when ``n > 1``) ones per row off the diagonal, drawn from
    ``generator`` after the weights. Init: ``W ~ N(0, s^2)`` with ``s = weight_scale / sqrt(k)`` (the real
    fan-in), masked entries 0; :class:`~spiketime.nn.network.SpikingNetwork` passes ``weight_scale =
    0.5 * model.weight_scale * theta / (1 - beta)``, half the feedforward gain, so that recurrence starts
    quiet. The layer's scan is :func:`~spiketime.functional.lif.lif_sequence_recurrent` with
    :attr:`effective_weight`; :meth:`project_` zeroes the masked weights after each optimiser step.
    """

    def __init__(
        self,
        n: int,
        density: float = 1.0,
        weight_scale: float = 1.0,
        generator: torch.Generator | None = None,
        weight_bits: int | None = None,
        per_channel: bool = True,
    ) -> None:
        super().__init__()
        self.n, self.density = n, density
        self.weight_bits, self.per_channel = weight_bits, per_channel
        k = fan_in(density, n - 1)  # 0 when n == 1: no connection off the diagonal
        self.fan_in = k
        w = torch.randn(n, n, generator=generator) * (weight_scale / math.sqrt(max(k, 1)))
        mask = fixed_fan_in_mask(n, n, k, generator, no_self=True)
        self.weight = nn.Parameter(w.masked_fill_(mask == 0, 0.0))
        self.register_buffer("mask", mask)

    @property
    def effective_weight(self) -> Tensor:
        """``weight * mask``: the recurrent weights the forward pass uses, ``[n, n]`` (row: postsynaptic),
        fake-quantised to ``weight_bits`` when set."""
        w = self.weight * self.mask
        return w if self.weight_bits is None else fake_quantize(w, self.weight_bits, self.per_channel)

    @torch.no_grad()
    def project_(self) -> None:
        """Zero the masked weights (diagonal included; call after each optimiser step)."""
        self.weight.masked_fill_(self.mask == 0, 0.0)

    def extra_repr(self) -> str:
        return f"n={self.n}, density={self.density}, fan_in={self.fan_in}"
