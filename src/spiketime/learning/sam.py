r"""Sharpness-aware minimisation (SAM, Foret et al. 2021) and its adaptive form (ASAM, Kwon et al. 2021) for every
learner that yields gradients (:class:`SAM`; the application's ``train.sam_rho``, ``train.sam_adaptive``; seed 004's SAST is SAM on a
surrogate-forward network).

One update from the gradient ``g = dL/dw`` at the weights ``w``::

    e  = rho * T^2 g / ||T g||          SAM: T = I;   ASAM: T = diag(|w| + eta)  (elementwise, eta = 0.01)
    g' = dL/dw at w + e                 (the learner runs the same data again at the perturbed weights)
    w  <- base optimiser step from g'   (at the original w: the perturbation is undone exactly first)

``||.||`` is the global 2-norm over every parameter that has a gradient. The learner supplies the second gradient
(:func:`perturbed` is the context in which it computes it): BPTT runs the batch's forward and backward again;
the online learners re-run the steps since their last update from a snapshot of their state (their memory stays
independent of the sequence length).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

ASAM_ETA = 0.01  # ASAM's T_w = |w| + eta: the perturbation of a zero weight is not zero


def sam_perturbation(
    params: list[nn.Parameter], rho: float, adaptive: bool = False, eta: float = ASAM_ETA
) -> list[Tensor]:
    """``e = rho T^2 g / ||T g||`` per parameter (module docstring), from each parameter's ``.grad`` (no gradient:
    a zero perturbation); all zeros when every gradient is zero."""
    scaled = []  # T g
    for p in params:
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        scaled.append((p.detach().abs() + eta) * g if adaptive else g)
    norm = (
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s.double()) for s in scaled]))
        if scaled
        else torch.zeros(())
    )
    if not bool(norm > 0) or not bool(torch.isfinite(norm)):
        return [torch.zeros_like(p) for p in params]
    scale = rho / float(norm)
    return [((p.detach().abs() + eta) * s if adaptive else s) * scale for p, s in zip(params, scaled)]


@contextmanager
def perturbed(model: nn.Module, rho: float, adaptive: bool = False) -> Iterator[None]:
    """Inside the block the model's trainable parameters are ``w + e`` (:func:`sam_perturbation` from their current
    ``.grad``; then ``model.project_()`` keeps delays in range and masked weights zero) and their ``.grad`` is
    cleared; on leaving, the exact original ``w`` is restored (the new ``.grad`` is kept)."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    eps = sam_perturbation(params, rho, adaptive)
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.add_(e)
            p.grad = None
    model.project_()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)


class SAM:
    """SAM (``adaptive=False``) or ASAM of radius ``rho``, for any learner: :func:`spiketime.learning.bptt.bptt_step`,
    :class:`~spiketime.learning.online.OnlineLearner` and
    :class:`~spiketime.learning.gamma_online.GammaOnlineLearner` take it as ``sam=``. ``rho = 0`` is the plain
    optimiser. Use it by hand as ``with sam.perturbed(model): <recompute the gradient>`` after a first backward."""

    def __init__(self, rho: float, adaptive: bool = False) -> None:
        if not rho >= 0:
            raise ValueError(f"SAM radius rho must be >= 0, got {rho!r}")
        self.rho, self.adaptive = float(rho), bool(adaptive)

    def __bool__(self) -> bool:
        return self.rho > 0

    def __repr__(self) -> str:
        return f"SAM(rho={self.rho}, adaptive={self.adaptive})"

    def perturbed(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """:func:`perturbed` at this radius (a no-op context when ``rho`` is 0)."""
        return perturbed(model, self.rho, self.adaptive) if self.rho > 0 else contextlib.nullcontext()
