"""Event-driven input projection for mostly-zero spike trains (CPU).

``y[t, b] = sum_c W[:, c] x[t, b, c]`` touches only the nonzero ``x`` (events): the events are listed
once (``nonzero``) and summed per row with ``embedding_bag`` over the rows of ``W^T``. SHD-like input is
about 98% zeros, so this replaces the dense ``[T*B, C] @ [C, M]`` product, the largest cost of a CPU
training step. The backward pass is dense (``dW = g^T x`` is one GEMM; ``dx = g W`` when asked for).
:func:`linear` asks :func:`spiketime.kernels.select` (op ``"linear"``): under ``backend="auto"`` it takes the
event-driven path (``"event"``) only where it is faster, CPU float32/float64 tensors (input and weight of one
dtype, outside autocast) whose sampled density is at most :data:`MAX_DENSITY`, otherwise the reference
``x @ W^T``; ``"fused"`` takes the event path at any density (a one-line ``ValueError`` where it cannot
run); ``"reference"`` is always ``x @ W^T``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spiketime.kernels import select

MAX_DENSITY = 0.05  # forward + backward break even near 0.1 on 2 cores (benchmarks/event_linear.py); a margin
_SAMPLE_ROWS = 512


class _EventLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x2d: Tensor, weight: Tensor) -> Tensor:
        rows, cols = x2d.nonzero(as_tuple=True)
        offsets = torch.searchsorted(rows, torch.arange(x2d.shape[0], device=x2d.device))
        y = F.embedding_bag(cols, weight.t().contiguous(), offsets, mode="sum", per_sample_weights=x2d[rows, cols])
        ctx.save_for_backward(x2d, weight)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x2d, weight = ctx.saved_tensors
        g_x = g @ weight if ctx.needs_input_grad[0] else None
        g_w = g.t() @ x2d if ctx.needs_input_grad[1] else None
        return g_x, g_w


def sampled_density(x: Tensor) -> float:
    """Fraction of nonzeros in up to 512 evenly spaced rows of ``x`` flattened to ``[rows, C]``."""
    x2d = x.reshape(-1, x.shape[-1])
    step = max(1, x2d.shape[0] // _SAMPLE_ROWS)
    sample = x2d[::step]
    return float(torch.count_nonzero(sample)) / max(1, sample.numel())


def _sparse_enough(x: Tensor) -> bool:
    """``backend="auto"``'s heuristic: the event path pays off (a nonempty input, sampled density at most
    :data:`MAX_DENSITY`)."""
    return x.numel() > 0 and sampled_density(x) <= MAX_DENSITY


def event_driven(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` takes the event-driven path for this input under ``backend="auto"``."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype
        and x.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu")
        and _sparse_enough(x)
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, backend: str = "auto") -> Tensor:
    """``x @ W^T (+ b)`` for ``x [..., C]``, ``W [M, C]``; event-driven on sparse CPU input (``backend`` as in the
    module docstring)."""
    impl = select(
        "linear", backend, x.device, x.dtype, weight_dtype=weight.dtype, prefer_fused=lambda: _sparse_enough(x)
    )
    if impl == "event":
        y = _EventLinear.apply(x.reshape(-1, x.shape[-1]), weight).reshape(*x.shape[:-1], weight.shape[0])
    else:
        y = x @ weight.t()
    return y if bias is None else y + bias
