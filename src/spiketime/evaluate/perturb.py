"""Perturbations of binned spike trains at evaluation time (METHODS.md section 2).

All act on spike counts ``x`` ``[B, T, C]`` with bin width ``dt`` ms. A spike in bin ``t`` is taken to sit at a
uniformly random point ``t + U`` of its bin, so a shift of ``s`` ms moves it to bin ``floor(t + U + s / dt)``; at
level 0 every perturbation is the identity. Spikes pushed outside ``[0, T)`` are lost.

- ``jitter``: independent Gaussian shift per spike, ``s ~ N(0, sigma^2)``, level = sigma in ms.
- ``neuron_jitter``: one shift per (sample, channel), shared by all its spikes (intervals kept), level = sigma in ms.
- ``delete``: each spike removed independently with probability = level.
- ``reverse``: level 1 plays each sample backwards within its valid length (``mask``), level 0 leaves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from spiketime.evaluate.levels import DEFAULT_LEVELS, LEVEL_UNITS, PERTURBATIONS, check_level

if TYPE_CHECKING:
    from torch import nn

    from spiketime.data.datasets import Split

__all__ = ["DEFAULT_LEVELS", "LEVEL_UNITS", "PERTURBATIONS", "check_level", "perturb", "perturbation_curve"]


def _shift(x: Tensor, shift_bins: Tensor | None, per_spike_sigma: float, generator: torch.Generator) -> Tensor:
    """Move every spike of ``x`` by ``U + shift_bins[b, c] + N(0, per_spike_sigma^2)`` bins (see module doc)."""
    counts = x.round().long()
    b, t, c = counts.nonzero(as_tuple=True)
    reps = counts[b, t, c]
    b, t, c = (v.repeat_interleave(reps) for v in (b, t, c))
    pos = t.double() + torch.rand(len(t), generator=generator, dtype=torch.float64)
    if shift_bins is not None:
        pos = pos + shift_bins[b, c]
    if per_spike_sigma > 0:
        pos = pos + per_spike_sigma * torch.randn(len(t), generator=generator, dtype=torch.float64)
    new_t = pos.floor().long()
    keep = (new_t >= 0) & (new_t < x.shape[1])
    out = torch.zeros_like(counts)
    out.index_put_((b[keep], new_t[keep], c[keep]), torch.ones_like(new_t[keep]), accumulate=True)
    return out.to(x.dtype)


def perturb(
    x: Tensor, kind: str, level: float, dt: float, generator: torch.Generator, mask: Tensor | None = None
) -> Tensor:
    """Return a perturbed copy of spike counts ``x`` ``[B, T, C]`` (see the module docstring)."""
    check_level(kind, level)
    if level == 0:
        return x.clone()
    if kind == "jitter":
        return _shift(x, None, level / dt, generator)
    if kind == "neuron_jitter":
        shifts = torch.randn(x.shape[0], x.shape[2], generator=generator, dtype=torch.float64) * (level / dt)
        return _shift(x, shifts, 0.0, generator)
    if kind == "delete":
        return torch.binomial(
            x.round().double(), torch.full(x.shape, 1.0 - level, dtype=torch.float64), generator=generator
        ).to(x.dtype)
    # reverse: bin t of a sample with valid length L goes to L - 1 - t
    lengths = mask.sum(1) if mask is not None else torch.full((x.shape[0],), x.shape[1])
    t = torch.arange(x.shape[1])
    src = lengths[:, None] - 1 - t[None, :]
    valid = src >= 0
    out = torch.gather(x, 1, src.clamp(min=0)[:, :, None].expand_as(x))
    return out * valid[:, :, None].to(x.dtype)


def perturbation_curve(
    model: nn.Module,
    data: Split,
    loss: str,
    kind: str,
    levels: list[float],
    dt: float,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    desc: str | None = None,
) -> list[float]:
    """Test accuracy of ``model`` on ``data`` perturbed at each level (one seeded generator per level);
    ``progress``: a bar ``desc`` (default: ``kind``) over the levels, and one over each level's batches."""
    from spiketime.learning.bptt import evaluate
    from spiketime.progress import progress_bar

    for level in levels:
        check_level(kind, level)
    accuracies = []
    for level in progress_bar(progress, desc or kind, len(levels), "level", iterable=levels):
        g = torch.Generator().manual_seed(seed)
        res = evaluate(
            model,
            data,
            loss,
            device=device,
            transform=lambda x, m, lv=level, g=g: perturb(x, kind, lv, dt, g, m),
            progress=progress,
            desc=f"{kind} {level:g}",
        )
        accuracies.append(res["accuracy"])
    return accuracies
