"""Spike-count baseline: what a classifier that sees only per-channel spike counts can do.

Used as the honesty check of timing-only datasets (it must be at chance there) and as the rate reference that a
spiking network must beat to claim it reads spike timing.
"""

from __future__ import annotations

import torch
from torch import Tensor

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def count_features(x: Tensor) -> Tensor:
    """Spike counts per channel: ``x`` ``[N, T, C]`` -> ``[N, C]`` (float32)."""
    if x.dim() != 3:
        raise ValueError(f"x must be [N, T, C], got shape {tuple(x.shape)}")
    return x.sum(dim=1, dtype=torch.float32)


def _fit(f: Tensor, y: Tensor, num_classes: int, l2: float, max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression, mean cross-entropy + ``l2 * ||W||^2``, full-batch LBFGS from zero (convex)."""
    w = torch.zeros(f.shape[1], num_classes, dtype=f.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=f.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(f @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _accuracy(f: Tensor, y: Tensor, w: Tensor, b: Tensor) -> float:
    return float(((f @ w + b).argmax(1) == y).double().mean()) if len(y) else float("nan")


def count_baseline(
    train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], seed: int = 0
) -> dict:
    """Multinomial logistic regression on standardised per-channel spike counts.

    Features are standardised with the *train* mean/std (constant channels map to 0).  One model is fitted on the
    train split per L2 strength in :data:`L2_GRID` (pure torch, float64, full-batch LBFGS from zero: the problem is
    convex, so the fit is deterministic; ``seed`` only fixes torch's RNG for reproducibility of anything stochastic).
    The strength with the best validation accuracy is kept (ties: the stronger one); the test split is only evaluated.

    Returns ``{"train_accuracy", "val_accuracy", "test_accuracy", "l2"}``.
    """
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    ftr, fva, fte = (count_features(x).double() for x in (xtr, xva, xte))
    ytr, yva, yte = ytr.long(), yva.long(), yte.long()
    if len(ytr) == 0:
        raise ValueError("train split is empty")
    num_classes = int(max(int(y.max()) for y in (ytr, yva, yte) if len(y))) + 1
    mu, sd = ftr.mean(0), ftr.std(0, unbiased=False)
    sd = torch.where(sd > 1e-8, sd, torch.ones_like(sd))
    ftr, fva, fte = ((f - mu) / sd for f in (ftr, fva, fte))

    # The problem is tiny: one intra-op thread avoids OpenMP spin-wait slowdowns (10x) on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            best = None
            for l2 in L2_GRID:
                w, b = _fit(ftr, ytr, num_classes, l2)
                va = _accuracy(fva, yva, w, b)
                if best is None or va >= best[0]:
                    best = (va, l2, w, b)
    finally:
        torch.set_num_threads(threads)
    va, l2, w, b = best
    return {
        "train_accuracy": _accuracy(ftr, ytr, w, b),
        "val_accuracy": va,
        "test_accuracy": _accuracy(fte, yte, w, b),
        "l2": l2,
    }
