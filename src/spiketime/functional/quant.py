"""Symmetric integer quantisation of weights, and leak factors restricted to ``1 - 2^-k``.

``bits``-bit symmetric quantisation with ``qmax = 2^(bits-1) - 1`` (INT8: 127, INT4: 7; the code ``-2^(bits-1)``
is not used, so zero is exact and the range symmetric)::

    s = max|W| / qmax            per tensor, or per output channel (row of W [n_out, n_in])
    q = clamp(round(W / s), -qmax, qmax),   W ~ s q

A row (or tensor) of zeros gets ``s = 1`` (all codes 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

QUANT_MODES = ("per_tensor", "per_channel")
"""The weight scales: one per tensor, or one per output channel (row of ``W [n_out, n_in]``)."""
HARDWARE_BITS = {"int8": 8, "int4": 4}
"""Weight bits of the named hardware targets (``spiketime eval --hardware int8|int4``)."""


def qmax(bits: int) -> int:
    """``2^(bits-1) - 1``: the largest code of symmetric ``bits``-bit quantisation (INT8: 127, INT4: 7)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"weight bits must be in 2..16, got {bits!r}")
    return 2 ** (bits - 1) - 1


def weight_scale(w: Tensor, bits: int, per_channel: bool) -> Tensor:
    """``s``: ``max|W| / qmax`` over each row ``[n_out, 1]`` (``per_channel``) or the whole tensor (a scalar)."""
    w = w.detach()
    m = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().max()
    return torch.where(m > 0, m / qmax(bits), torch.ones_like(m))


def quantize(w: Tensor, bits: int, per_channel: bool, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(q, s)``: integer codes (int64, same shape as ``w``) and the scale (``[n_out, 1]`` or scalar) with
    ``w ~ s q``; ``scale`` overrides :func:`weight_scale`."""
    s = weight_scale(w, bits, per_channel) if scale is None else scale
    m = qmax(bits)
    return torch.clamp(torch.round(w.detach() / s), -m, m).to(torch.int64), s


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: Tensor, bits: int, per_channel: bool) -> Tensor:
        q, s = quantize(w, bits, per_channel)
        return (q.to(w.dtype) * s).to(w.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None


def fake_quantize(w: Tensor, bits: int, per_channel: bool) -> Tensor:
    """``s q`` in ``w``'s dtype (the weights the quantised model uses), with the straight-through gradient
    ``d(fake_quantize(w))/dw = 1`` (quantisation-aware training)."""
    return _FakeQuantize.apply(w, bits, per_channel)


def leak_shift(beta: Tensor) -> Tensor:
    """Per element, the shift ``k >= 1`` whose ``1 - 2^-k`` is nearest to the decay ``beta`` in ``(0, 1)`` (int64):
    on hardware ``beta v`` becomes ``v - (v >> k)``."""
    b = beta.detach().double().clamp(1e-12, 1 - 1e-12)
    ks = torch.arange(1, 31, dtype=torch.float64)
    cand = 1.0 - 2.0**-ks  # [30]
    return (b.unsqueeze(-1) - cand).abs().argmin(dim=-1).to(torch.int64) + 1


def bit_length(n: int) -> int:
    """Bits of the magnitude of ``n`` (``0`` for 0)."""
    return int(n).bit_length() if n else 0


def frac_bits_for(largest: float, membrane_bits: int, headroom_bits: int) -> int:
    """The largest ``F >= 0`` with ``largest * 2^F <= 2^(membrane_bits - 1 - headroom_bits)``; -1 if none."""
    limit = 2.0 ** (membrane_bits - 1 - headroom_bits)
    if largest > limit:
        return -1
    return int(math.floor(math.log2(limit / largest))) if largest > 0 else membrane_bits - 1 - headroom_bits
