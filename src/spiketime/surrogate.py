"""Surrogate gradients for the Heaviside spike.

Each surrogate is a small frozen dataclass with two methods on ``x = v - theta``
(membrane minus threshold, in units of the membrane):

* ``grad(x)``      -- the surrogate derivative used in place of ``H'(x)``;
* ``primitive(x)`` -- a smooth function whose derivative is exactly ``grad(x)``.

All of them share one autograd function, :func:`spike`: its forward is exactly
the step ``H(x) = 1[x > 0]``, its backward multiplies the incoming gradient by
``surrogate.grad(x)``.  Replacing ``spike(x, s)`` by ``s.primitive(x)`` gives a
smooth network whose true gradient is the surrogate gradient (the contract the
tests check in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class FastSigmoid:
    """``grad = 1 / (alpha*|x| + 1)^2`` (SuperSpike; seed 002 uses alpha=100 on SLAYER's scale).

    Peak 1 at ``x = 0``; primitive ``x / (1 + alpha*|x|)``.
    """

    alpha: float = 5.0

    def grad(self, x: Tensor) -> Tensor:
        return 1.0 / (self.alpha * x.abs() + 1.0) ** 2

    def primitive(self, x: Tensor) -> Tensor:
        return x / (1.0 + self.alpha * x.abs())


@dataclass(frozen=True)
class Gaussian:
    """``grad = exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` (unit area); primitive = normal CDF."""

    sigma: float = 0.3

    def grad(self, x: Tensor) -> Tensor:
        return torch.exp(-0.5 * (x / self.sigma) ** 2) / (math.sqrt(2.0 * math.pi) * self.sigma)

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(x / (self.sigma * math.sqrt(2.0))))


@dataclass(frozen=True)
class Arctan:
    """``grad = (alpha/2) / (1 + (pi/2 * alpha * x)^2)`` (unit area); primitive ``atan(pi/2 alpha x)/pi + 1/2``."""

    alpha: float = 2.0

    def grad(self, x: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2.0 * self.alpha * x) / math.pi + 0.5


@dataclass(frozen=True)
class Triangle:
    """``grad = max(0, 1 - |x|/width) / width`` (unit area); primitive is its piecewise-quadratic integral."""

    width: float = 0.5

    def grad(self, x: Tensor) -> Tensor:
        return torch.clamp(1.0 - x.abs() / self.width, min=0.0) / self.width

    def primitive(self, x: Tensor) -> Tensor:
        u = torch.clamp(x / self.width, -1.0, 1.0)
        return 0.5 + u - torch.sign(u) * u * u / 2.0


@dataclass(frozen=True)
class Sigmoid:
    """``grad = alpha * p * (1 - p)`` with ``p = 1 / (1 + exp(-alpha*x))``; primitive ``p``, the logistic sigmoid of
    steepness ``alpha`` (per unit of the membrane). Its primitive is the smooth spike of surrogate-forward training
    (``model.spike: surrogate_forward``, seed 004)."""

    alpha: float = 5.0

    def grad(self, x: Tensor) -> Tensor:
        p = self.primitive(x)
        return self.alpha * p * (1.0 - p)

    def primitive(self, x: Tensor) -> Tensor:
        return 1.0 / (1.0 + torch.exp(-(self.alpha * x)))


Surrogate = FastSigmoid | Gaussian | Arctan | Triangle | Sigmoid

SURROGATES: dict[str, type] = {
    "fast_sigmoid": FastSigmoid,
    "gaussian": Gaussian,
    "arctan": Arctan,
    "triangle": Triangle,
    "sigmoid": Sigmoid,
}


def make_surrogate(name: str, scale: float | None = None) -> Surrogate:
    """Build a surrogate by registry name; ``scale`` is its single shape parameter."""
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {name!r}")
    cls = SURROGATES[name]
    return cls() if scale is None else cls(scale)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None


def spike(x: Tensor, surrogate: Surrogate) -> Tensor:
    """Heaviside ``H(x) = 1[x > 0]`` forward, ``surrogate.grad(x)`` backward."""
    return _Spike.apply(x, surrogate)
