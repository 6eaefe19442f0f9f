"""The run directory's plots and ``report.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spiketime.app.config import TIMING_TASKS, Config
from spiketime.data.datasets import Splits
from spiketime.evaluate.plots import plot_delay_histogram, plot_learning_curves, plot_raster
from spiketime.files import atomic_write_text
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork

PLOTS = {"learning_curves": "learning_curves.png", "raster": "raster.png", "delays": "delays.png"}


@torch.no_grad()
def write_plots(
    model: SpikingNetwork | GammaNetwork, splits: Splits, cfg: Config, history: list[dict], out: Path
) -> None:
    """Learning curves, a spike raster of the first test sample per layer, histogram of learned delays."""
    model.eval().cpu()
    plot_learning_curves(history, out / PLOTS["learning_curves"])
    x = splits.test.x[:1].float().transpose(0, 1)  # [T, 1, C]
    _, _, outputs = model.run(x)  # hidden spikes per layer, then the readout
    layers = {"input": x[:, 0]}
    for i, h in enumerate(outputs[:-1]):
        layers[f"hidden {i + 1}"] = h[:, 0]
    if cfg.model.readout == "lif":
        layers["output"] = outputs[-1][:, 0]
    label = int(splits.test.y[0])
    plot_raster(layers, cfg.data.dt, out / PLOTS["raster"], title=f"test sample 0 (class {label})")
    if cfg.model.type != "gamma":  # a gamma network's delays are its buckets (no learned delays)
        plot_delay_histogram(model.learned_delays(), cfg.model.delay_max, out / PLOTS["delays"])


def write_report(metrics: dict[str, Any], out: Path) -> None:
    """A short markdown report: what was trained, the results, the command that reproduces it."""
    c = metrics["config"]
    d, m, t = c["data"], c["model"], c["train"]
    delays = (
        "no delays"
        if m["delays"] == "none"
        else f"learnable {m['delays']} delays (<= {m['delay_max']} ms, {m['delay_mode']} gradient)"
    )
    gamma = m.get("type", "lif") == "gamma"
    conv = [f"conv{ch}" for ch in m.get("conv", [])] if gamma else []
    sizes = "-".join(map(str, [metrics.get("inputs", d["channels"]), *conv, *m["hidden"], metrics["num_classes"]]))
    if gamma:
        what = (
            f"a SpikingGamma network {sizes} ({m['buckets']} gamma buckets from {m['bucket_tau']} ms, factor "
            f"{m['bucket_factor']}{' learnable' if m['learn_bucket_tau'] else ' fixed'}, sigma-delta neurons)"
        )
    else:
        what = (
            f"a LIF network {sizes} ({m['readout'].upper()} readout, {delays}, tau_mem {m['tau_mem']} ms"
            f"{' learnable' if m['learn_tau'] else ' fixed'})"
        )
    task = (
        f"the {d['variant']} variant of the {d['task'].upper()} task"
        if d["task"] in TIMING_TASKS
        else f"the {d['task']} data"
    )
    lines = [
        f"# {c['name']}",
        "",
        f"Trained {what} with {t['learner'].upper()} on {task} ({d['duration']} ms at dt = {d['dt']} ms, "
        f"{metrics['num_classes']} classes), seed {metrics['seed']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy (best-validation model) | {metrics['test_accuracy']:.4f} |",
        f"| validation accuracy | {metrics['val_accuracy']:.4f} |",
        f"| chance | {metrics['chance']:.4f} |",
        f"| epochs run (best) | {metrics['epochs']} ({metrics['best_epoch']}) |",
        f"| training time | {metrics['train_seconds']:.1f} s |",
        *(
            [f"| hidden spikes per test sample | {metrics['spikes_per_sample']:.1f} |"]
            if "spikes_per_sample" in metrics
            else []
        ),  # absent from runs made before it was recorded
        "",
        f"![learning curves]({PLOTS['learning_curves']})",
        f"![spike raster]({PLOTS['raster']})",
        *([] if gamma else [f"![learned delays]({PLOTS['delays']})"]),
        "",
        "Reproduce (same seed, same numbers on CPU):",
        "",
        "```",
        f"spiketime train --config {out / 'config.yaml'} --out {out}-again",
        "```",
        "",
        f"Run as `{metrics['command']}`; spiketime {metrics['versions']['spiketime']}, torch "
        f"{metrics['versions']['torch']}, git commit {metrics['git_commit']}.",
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines))
