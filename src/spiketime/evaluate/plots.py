"""Figures for training runs: learning curves, spike rasters, learned-delay histograms.

Headless: every function selects matplotlib's ``Agg`` backend through an explicit
``Figure`` + ``FigureCanvasAgg`` (pyplot and its global figure registry are not used, so
nothing is shown, no display is needed and the caller's pyplot backend is left alone).
Figures are written atomically: saved to a temporary file in the target directory, then
moved into place with ``os.replace``, so a reader never sees a half-written PNG.
The format follows the file suffix (``.png`` unless told otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spiketime.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_delay_histogram", "plot_learning_curves", "plot_perturbation", "plot_raster"]


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_atomic(fig: Figure, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=120)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor (any device / dtype, bfloat16 included)
        x = x.detach().to("cpu")
        x = (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def plot_learning_curves(history: list[dict], path: Path | str) -> Figure:
    """Two panels against ``epoch`` (integer ticks): loss (``train_loss``, ``val_loss``) and accuracy
    (``train_accuracy``, ``val_accuracy``). Entries missing a key (or holding ``None``) are skipped for that
    curve; a single epoch is drawn as labelled points on an axis of epochs 0 to 2. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(9.0, 3.5)
    ax_loss, ax_acc = fig.subplots(1, 2)

    def series(key: str) -> tuple[list[Any], list[float]] | None:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None and "epoch" in h]
        return ([p[0] for p in pts], [float(p[1]) for p in pts]) if pts else None

    epochs = sorted({h["epoch"] for h in history if "epoch" in h})
    for ax, keys, title in (
        (ax_loss, ("train_loss", "val_loss"), "loss"),
        (ax_acc, ("train_accuracy", "val_accuracy"), "accuracy"),
    ):
        for key in keys:
            s = series(key)
            if s:
                label = "train" if key.startswith("train") else "validation"
                ax.plot(*s, marker="o", ms=3 if len(s[0]) > 1 else 6, label=label)
                if len(s[0]) == 1:  # one point: say its value
                    ax.annotate(f"{s[1][0]:.3g}", (s[0][0], s[1][0]), textcoords="offset points", xytext=(6, 4))
        ax.set(xlabel="epoch", ylabel=title, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not history:
        ax_loss.text(0.5, 0.5, "no history", ha="center", va="center", transform=ax_loss.transAxes)
    _save_atomic(fig, path)
    return fig


def plot_raster(layers: dict[str, Any], dt: float, path: Path | str, title: str = "") -> None:
    """Spike raster of one sample, one panel per layer (in dict order: input, hidden, output).

    Each value is ``[T, N]`` with 0/1 spikes; a dot at ``(t * dt, n)`` (ms) for every nonzero
    entry.  A panel whose layer has no spikes says so.
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (ms), got {dt!r}")
    names = list(layers)
    fig = _new_figure(8.0, 1.0 + 1.8 * max(1, len(names)))
    axes = fig.subplots(max(1, len(names)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        s = _to_numpy(layers[name])
        if s.ndim != 2:
            raise ValueError(f"layers[{name!r}] must have shape [T, N], got {s.shape}")
        t_idx, n_idx = np.nonzero(s)
        ax.scatter(t_idx * dt, n_idx, s=6, marker="|" if len(t_idx) < 5000 else ".", color="k")
        ax.set_xlim(0, s.shape[0] * dt)
        ax.set_ylim(-0.5, max(s.shape[1], 1) - 0.5)
        ax.set_ylabel(f"{name}\nneuron")
        if len(t_idx) == 0:
            ax.text(0.5, 0.5, "no spikes", ha="center", va="center", transform=ax.transAxes)
    if not names:
        axes[0].text(0.5, 0.5, "no layers", ha="center", va="center", transform=axes[0].transAxes)
    axes[-1].set_xlabel("time (ms)")
    if title:
        fig.suptitle(title)
    _save_atomic(fig, path)


def plot_delay_histogram(delays: dict[str, Any], delay_max: float, path: Path | str) -> Figure:
    """One histogram of the learned delays (ms) per layer, on ``[0, delay_max]`` (a dashed line marks
    ``delay_max``, the largest delay allowed). With an empty dict, writes a figure that says "no learnable
    delays". Returns the figure."""
    names = list(delays)
    n = max(1, len(names))
    fig = _new_figure(min(4.0 * n, 16.0), 3.2)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if not names:
        axes[0].text(
            0.5, 0.5, "no learnable delays", ha="center", va="center", transform=axes[0].transAxes, fontsize=14
        )
        axes[0].set_axis_off()
    hi = float(delay_max) if delay_max and delay_max > 0 else 1.0
    for ax, name in zip(axes, names):
        d = _to_numpy(delays[name]).astype(np.float64).ravel()
        lo_r = min(0.0, float(d.min())) if d.size else 0.0
        hi_r = max(hi, float(d.max())) if d.size else hi  # never drop out-of-range delays
        ax.hist(d, bins=min(50, max(10, int(np.sqrt(d.size)))), range=(lo_r, hi_r), color="tab:blue", edgecolor="white")
        ax.axvline(hi, color="gray", lw=1, ls="--", label=f"delay_max {hi:g} ms")
        ax.set(xlabel="delay (ms)", ylabel="count", title=f"{name} (n={d.size})")
        if d.size:
            ax.axvline(float(d.mean()), color="tab:red", lw=1, label=f"mean {d.mean():.2f} ms")
        ax.legend(fontsize=8)
    _save_atomic(fig, path)
    return fig


def plot_perturbation(
    curves: dict[str, tuple[list[float], list[float]]],
    xlabel: str,
    path: Path | str,
    chance: float | None = None,
    title: str = "",
) -> None:
    """Accuracy against perturbation level, one line per model: ``curves[label] = (levels, accuracies)``."""
    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    for label, (levels, acc) in curves.items():
        ax.plot(levels, acc, marker="o", ms=4, label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
    ax.set(xlabel=xlabel, ylabel="test accuracy", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save_atomic(fig, path)
