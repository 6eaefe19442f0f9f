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

The fused kernels (the compiled C scan and the Triton scan of :mod:`spiketime.kernels`) take each
surrogate's code from one table, :data:`TABLE`: its entry (a :class:`SurrogateCode`, written right
after the class) holds the PyTorch formulas (the class), the integer id the kernels switch on, and
the same two formulas as a C snippet and a Triton snippet, in the operation order of the PyTorch
ones. :mod:`spiketime.kernels.cpu` generates the C header ``surrogates.h`` from it and
:mod:`spiketime.kernels.triton_lif` the Triton helpers ``_sg_grad``/``_sg_prim``; a surrogate added
to the table reaches both kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class SurrogateCode:
    """One surrogate's entry in :data:`TABLE`: its PyTorch formulas and the same formulas as kernel code.

    * ``cls``: the dataclass whose ``grad``/``primitive`` are the PyTorch formulas (the reference);
    * ``param``: the name of its single shape parameter, passed to the kernels as ``k`` (``scale``);
    * ``code``: the integer id the kernels switch on (unique in the table);
    * ``c_grad``, ``c_prim``: C statements, in terms of ``REAL x`` (``v - theta``) and ``REAL k``, that
      ``return`` the derivative / the primitive (``REAL`` is ``float`` or ``double``; special functions go
      through ``double`` as libm's do); compiled with ``-ffp-contract=off``;
    * ``triton_grad``, ``triton_prim``: Triton statements that assign the result to ``r``, from ``x`` and
      ``k`` (tensors of the compute dtype), ``tl``, and the helpers of :mod:`spiketime.kernels.triton_lif`:
      ``_div`` (IEEE division) and ``_atan``.
    """

    name: str
    cls: type
    param: str
    code: int
    c_grad: str
    c_prim: str
    triton_grad: str
    triton_prim: str


TABLE: dict[str, SurrogateCode] = {}  # registry name -> entry, in code order


def _add(entry: SurrogateCode) -> None:
    if entry.name in TABLE or any(e.code == entry.code for e in TABLE.values()):
        raise ValueError(f"surrogate {entry.name!r} or code {entry.code} is already in the table")
    TABLE[entry.name] = entry


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


_add(
    SurrogateCode(
        "fast_sigmoid",
        FastSigmoid,
        "alpha",
        0,
        c_grad="REAL d = k * (REAL)fabs((double)x) + (REAL)1; return (REAL)1 / (d * d);",
        c_prim="return x / ((REAL)1 + k * (REAL)fabs((double)x));",
        triton_grad="d = k * tl.abs(x) + 1.0\nr = _div(1.0, d * d)",
        triton_prim="r = _div(x, 1.0 + k * tl.abs(x))",
    )
)


@dataclass(frozen=True)
class Gaussian:
    """``grad = exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` (unit area); primitive = normal CDF."""

    sigma: float = 0.3

    def grad(self, x: Tensor) -> Tensor:
        return torch.exp(-0.5 * (x / self.sigma) ** 2) / (math.sqrt(2.0 * math.pi) * self.sigma)

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(x / (self.sigma * math.sqrt(2.0))))


_add(
    SurrogateCode(
        "gaussian",
        Gaussian,
        "sigma",
        1,
        c_grad="REAL z = x / k; return (REAL)exp((double)((REAL)-0.5 * z * z)) / ((REAL)2.5066282746310002 * k);",
        c_prim="return (REAL)0.5 * ((REAL)1 + (REAL)erf((double)(x / (k * (REAL)1.4142135623730951))));",
        triton_grad="z = _div(x, k)\nr = _div(tl.exp(-0.5 * z * z), 2.5066282746310002 * k)",
        triton_prim="r = 0.5 * (1.0 + tl.math.erf(_div(x, k * 1.4142135623730951)))",
    )
)


@dataclass(frozen=True)
class Arctan:
    """``grad = (alpha/2) / (1 + (pi/2 * alpha * x)^2)`` (unit area); primitive ``atan(pi/2 alpha x)/pi + 1/2``."""

    alpha: float = 2.0

    def grad(self, x: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2.0 * self.alpha * x) / math.pi + 0.5


_add(
    SurrogateCode(
        "arctan",
        Arctan,
        "alpha",
        2,
        c_grad="REAL z = (REAL)1.5707963267948966 * k * x; return (k / (REAL)2) / ((REAL)1 + z * z);",
        c_prim="return (REAL)atan((double)((REAL)1.5707963267948966 * k * x)) / (REAL)3.141592653589793 + (REAL)0.5;",
        triton_grad="z = 1.5707963267948966 * k * x\nr = _div(k * 0.5, 1.0 + z * z)",
        triton_prim="at = _atan(1.5707963267948966 * k * x)\nr = _div(at, tl.full((), 3.141592653589793, at.dtype)) + 0.5",
    )
)


@dataclass(frozen=True)
class Triangle:
    """``grad = max(0, 1 - |x|/width) / width`` (unit area); primitive is its piecewise-quadratic integral."""

    width: float = 0.5

    def grad(self, x: Tensor) -> Tensor:
        return torch.clamp(1.0 - x.abs() / self.width, min=0.0) / self.width

    def primitive(self, x: Tensor) -> Tensor:
        u = torch.clamp(x / self.width, -1.0, 1.0)
        return 0.5 + u - torch.sign(u) * u * u / 2.0


_add(
    SurrogateCode(
        "triangle",
        Triangle,
        "width",
        3,
        c_grad="REAL g = (REAL)1 - (REAL)fabs((double)x) / k; return (g > 0 ? g : (REAL)0) / k;",
        c_prim=(
            "REAL u = x / k; u = u < -1 ? -1 : (u > 1 ? 1 : u); "
            "REAL sgn = u > 0 ? (REAL)1 : (u < 0 ? (REAL)-1 : (REAL)0); return (REAL)0.5 + u - sgn * u * u / (REAL)2;"
        ),
        triton_grad="g = 1.0 - _div(tl.abs(x), k)\nr = _div(tl.where(g > 0, g, 0.0), k)",
        triton_prim=(
            "u = _div(x, k)\nu = tl.where(u < -1.0, -1.0, tl.where(u > 1.0, 1.0, u))\n"
            "sgn = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))\nr = 0.5 + u - sgn * u * u * 0.5"
        ),
    )
)


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


_add(
    SurrogateCode(
        "sigmoid",
        Sigmoid,
        "alpha",
        4,
        c_grad="REAL p = (REAL)1 / ((REAL)1 + (REAL)exp((double)(-(k * x)))); return k * p * ((REAL)1 - p);",
        c_prim="return (REAL)1 / ((REAL)1 + (REAL)exp((double)(-(k * x))));",
        triton_grad="p = _div(1.0, 1.0 + tl.exp(-(k * x)))\nr = k * p * (1.0 - p)",
        triton_prim="r = _div(1.0, 1.0 + tl.exp(-(k * x)))",
    )
)


Surrogate = FastSigmoid | Gaussian | Arctan | Triangle | Sigmoid
"""Any surrogate of :data:`TABLE` (the type a neuron's ``surrogate`` takes)."""

SURROGATES: dict[str, type] = {name: entry.cls for name, entry in TABLE.items()}
"""Surrogate classes by name (``fast_sigmoid``, ``gaussian``, ``arctan``, ``triangle``, ``sigmoid``)."""


def entry_of(surrogate: Any) -> SurrogateCode:
    """The :data:`TABLE` entry of a surrogate instance (or of its registry name)."""
    if isinstance(surrogate, str):
        if surrogate in TABLE:
            return TABLE[surrogate]
    else:
        for entry in TABLE.values():
            if type(surrogate) is entry.cls:
                return entry
    raise ValueError(f"surrogate must be one of {sorted(TABLE)}, got {surrogate!r}")


def kernel_args(surrogate: Any) -> tuple[str, float]:
    """``(registry name, shape parameter)`` of a surrogate instance, as the fused kernels take it."""
    entry = entry_of(surrogate)
    return entry.name, float(getattr(surrogate, entry.param))


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
