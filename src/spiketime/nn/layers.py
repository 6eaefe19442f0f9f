"""LIF, LI and DelayedLinear modules (see :mod:`spiketime.functional` for the equations)."""

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
from spiketime.kernels import check_backend
from spiketime.kernels.sparse import linear
from spiketime.surrogate import FastSigmoid, Surrogate

DELAY_KINDS = ("none", "axonal", "synaptic")
DELAY_MODES = ("interp", "gaussian")


class LIF(nn.Module):
    """Layer of ``n`` LIF neurons; ``tau_mem`` (ms) per neuron, learnable and kept positive as ``exp(log_tau_mem)``."""

    def __init__(
        self,
        n: int,
        dt: float,
        tau_mem: float = 10.0,
        learn_tau: bool = True,
        tau_syn: float | None = None,
        theta: float = 1.0,
        reset: str = "subtract",
        surrogate: Surrogate = FastSigmoid(),
        detach_reset: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.n, self.dt, self.backend = n, dt, check_backend(backend)
        self.theta, self.reset, self.surrogate, self.detach_reset = theta, reset, surrogate, detach_reset
        log_tau = torch.full((n,), math.log(tau_mem))
        self.log_tau_mem = nn.Parameter(log_tau, requires_grad=learn_tau)
        self.log_tau_syn = None if tau_syn is None else nn.Parameter(torch.full((n,), math.log(tau_syn)), requires_grad=learn_tau)

    @property
    def tau_mem(self) -> Tensor:
        return self.log_tau_mem.exp()

    def params(self, smooth: bool = False) -> LIFParams:
        tau_syn = None if self.log_tau_syn is None else self.log_tau_syn.exp()
        return LIFParams(self.tau_mem, tau_syn, self.theta, self.reset, self.surrogate, self.detach_reset, smooth)

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
    ) -> None:
        super().__init__()
        if delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {DELAY_KINDS}, got {delays!r}")
        if delay_mode not in DELAY_MODES:
            raise ValueError(f"delay_mode must be one of {DELAY_MODES}, got {delay_mode!r}")
        self.n_in, self.n_out, self.dt = n_in, n_out, dt
        self.kind, self.delay_max, self.mode, self.sigma = delays, delay_max, delay_mode, delay_sigma
        w = torch.randn(n_out, n_in, generator=generator) * (weight_scale / math.sqrt(n_in))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        if delays == "none":
            self.delays = None
        else:
            shape = (n_in,) if delays == "axonal" else (n_out, n_in)
            lo, hi = delay_init
            d = (lo + (hi - lo) * torch.rand(shape, generator=generator)) * delay_max
            self.delays = nn.Parameter(d)

    @property
    def taps(self) -> int:
        return delay_taps(self.delay_max, self.dt, self.mode, self.sigma)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the delays into ``[0, delay_max]`` (call after each optimiser step)."""
        if self.delays is not None:
            self.delays.clamp_(0.0, self.delay_max)

    def forward(self, x_seq: Tensor, state: DelayState | None = None) -> tuple[Tensor, DelayState | None]:
        if self.kind == "none":
            return linear(x_seq, self.weight, self.bias), None
        if self.kind == "axonal":
            xd, state = axonal_delay(x_seq, self.delays, self.dt, self.taps, self.mode, self.sigma, state)
            return linear(xd, self.weight, self.bias), state
        return synaptic_delay_linear(
            x_seq, self.weight, self.delays, self.dt, self.taps, self.mode, self.sigma, self.bias, state
        )
