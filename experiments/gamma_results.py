"""Tables and figures of the SpikingGamma results (docs/results.md) from finished runs.

    python experiments/gamma_results.py

Reads (each part is skipped when its runs are missing):
* ``runs/gamma_speech_digits``, ``runs/gamma_event_digits``: the sweeps of experiments/gamma_{speech,event}_digits.yaml
  (test accuracy, hidden spikes per test sample, training time per run from each run's metrics.json);
* ``runs/gamma_frames_{bptt,online,online_fixed,lif}/frames.csv``: ``spiketime eval --frames`` of the spoken-digits
  models;
* ``runs/gamma_gain``: the sweep of experiments/gamma_gain.yaml (gain weight 0: the event-digits sweep's BPTT runs).
Prints markdown tables (mean ± std over seeds) and writes docs/img/gamma_frames.png and docs/img/gamma_gain.png.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

RUNS = Path("runs")
IMG = Path("docs/img")


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = [x * scale for x in values]
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{digits}f} ± {sd:.{digits}f}" + ("" if len(v) == 3 else f" (n={len(v)})")


def sweep_metrics(sweep: str) -> dict[tuple[str, str], list[dict]]:
    """metrics.json of every finished run of ``experiments/<sweep>.yaml``, by (grid row, method), in sweep order."""
    from spiketime.app.sweep import expand, load_sweep

    out: dict[tuple[str, str], list[dict]] = {}
    for run in expand(load_sweep(Path("experiments") / f"{sweep}.yaml")):
        f = RUNS / sweep / "runs" / run["name"] / "metrics.json"
        if f.is_file():
            out.setdefault((run["row"], run["method"]), []).append(json.loads(f.read_text()))
    return out


def method_table(sweep: str) -> None:
    runs = sweep_metrics(sweep)
    if not runs:
        return
    print(f"\n{sweep}\n")
    print("| method | test accuracy (%) | hidden spikes per test sample | training time (min) |")
    print("|---|---|---|---|")
    for (_, method), ms in runs.items():
        print(
            f"| {method} | {mean_std([m['test_accuracy'] for m in ms], 100)} | "
            f"{mean_std([m['spikes_per_sample'] for m in ms], digits=0) if all('spikes_per_sample' in m for m in ms) else '–'} | "
            f"{mean_std([m['train_seconds'] / 60 for m in ms])} |"
        )


def frames_part() -> None:
    curves = {}
    for name, label in (
        ("bptt", "SpikingGamma, BPTT"),
        ("online", "SpikingGamma, online"),
        ("online_fixed", "SpikingGamma, online, fixed taus"),
        ("lif", "LIF + axonal delays, BPTT"),
    ):
        f = RUNS / f"gamma_frames_{name}" / "frames.csv"
        if not f.is_file():
            continue
        acc: dict[int, list[float]] = defaultdict(list)
        spikes: dict[int, list[float]] = defaultdict(list)
        for r in csv.DictReader(f.open()):
            acc[int(r["frames"])].append(float(r["accuracy"]))
            if r["spikes_per_sample"]:
                spikes[int(r["frames"])].append(float(r["spikes_per_sample"]))
        curves[label] = (acc, spikes)
    if not curves:
        return
    frames = sorted(next(iter(curves.values()))[0])
    print("\nspoken digits, trained at 500 frames, run at other frame counts: test accuracy (%)\n")
    print("| frames (dt) | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for n in frames:
        print(f"| {n} ({1000 / n:.3g} ms) | " + " | ".join(mean_std(acc[n], 100) for acc, _ in curves.values()) + " |")
    print("\nchange from 500 frames, per seed then mean ± std (points)\n")
    print("| frames | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for n in frames:
        cells = [mean_std([a - b for a, b in zip(acc[n], acc[500])], 100) for acc, _ in curves.values()]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\nhidden spikes per test sample\n")
    print("| frames | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for n in frames:
        print(
            f"| {n} | "
            + " | ".join(mean_std(sp[n], digits=0) if sp.get(n) else "–" for _, sp in curves.values())
            + " |"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (acc, _) in curves.items():
        m = [100 * statistics.mean(acc[n]) for n in frames]
        s = [100 * (statistics.stdev(acc[n]) if len(acc[n]) > 1 else 0.0) for n in frames]
        ax.errorbar(frames, m, yerr=s, marker="o", ms=4, capsize=3, label=label)
    ax.axvline(500, color="grey", ls=":", lw=1)
    ax.set(
        xscale="log",
        xlabel="frames for the same 1 s (trained at 500)",
        ylabel="test accuracy (%)",
        title="spoken digits: one model, other time resolutions",
    )
    ax.set_xticks(frames, [str(n) for n in frames])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / "gamma_frames.png", dpi=120)
    print(f"-> {IMG / 'gamma_frames.png'}")


def gain_part() -> None:
    runs = sweep_metrics("gamma_gain")
    if not runs:
        return
    rows = [(float(row.split("=")[1]), ms) for (row, _), ms in runs.items()]
    no_gain = sweep_metrics("gamma_event_digits").get(("all", "SpikingGamma, BPTT"))  # the same config at weight 0
    if no_gain:
        rows.insert(0, (0.0, no_gain))
    print("\nevent digits, gain weight: test accuracy and hidden spikes per test sample\n")
    print("| train.gain_weight | test accuracy (%) | hidden spikes per test sample |")
    print("|---|---|---|")
    for g, ms in rows:
        print(
            f"| {g:g} | {mean_std([m['test_accuracy'] for m in ms], 100)} | "
            f"{mean_std([m['spikes_per_sample'] for m in ms], digits=0)} |"
        )
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    silent = [g for g, ms in rows if not any(m["spikes_per_sample"] for m in ms)]  # no point on a log axis
    rows = [(g, ms) for g, ms in rows if g not in silent]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [statistics.mean(m["spikes_per_sample"] for m in ms) for _, ms in rows]
    ys = [100 * statistics.mean(m["test_accuracy"] for m in ms) for _, ms in rows]
    for _, ms in rows:
        ax.scatter(
            [m["spikes_per_sample"] for m in ms], [100 * m["test_accuracy"] for m in ms], s=10, color="grey", alpha=0.6
        )
    ax.plot(xs, ys, marker="o")
    for (g, _), x, y in zip(rows, xs, ys):
        ax.annotate(f"G={g:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize="small")
    ax.set(
        xscale="log",
        xlabel="hidden spikes per test sample",
        ylabel="test accuracy (%)",
        title="event digits: sparsity against accuracy (gain loss)",
    )
    ax.minorticks_off()
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    if silent:
        ax.text(
            0.02,
            0.04,
            f"G = {', '.join(f'{g:g}' for g in silent)}: no spikes, at chance (not shown)",
            transform=ax.transAxes,
            fontsize="small",
        )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / "gamma_gain.png", dpi=120)
    print(f"-> {IMG / 'gamma_gain.png'}")


if __name__ == "__main__":
    method_table("gamma_speech_digits")
    frames_part()
    method_table("gamma_event_digits")
    gain_part()
