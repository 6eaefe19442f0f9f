"""Tables and figure of the SAST and hardware-aware results (docs/results.md "SAST") from the finished sweeps.

    OMP_NUM_THREADS=1 spiketime sweep experiments/sast_event_digits.yaml --jobs 2 --out runs/sast_event_digits
    OMP_NUM_THREADS=1 spiketime sweep experiments/sast_speech_digits.yaml --jobs 2 --out runs/sast_speech_digits
    python experiments/sast_results.py

For each sweep, every finished run's best checkpoint is evaluated on the test split (held-out images / speakers)
by ``spiketime eval`` in each deployment setting of :data:`SETTINGS`. That is one command per setting for all
the sweep's checkpoints, written to ``runs/<sweep>/eval_<setting>/metrics.json``; a setting whose file exists is
not run again. The script prints markdown tables (mean ± std over seeds) and writes
``docs/sast_<sweep>_results.csv`` (one line per run and setting) and ``docs/img/sast_swap.png``.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RUNS = Path("runs")
DOCS = Path("docs")
SWEEPS = {"sast_event_digits": "event digits", "sast_speech_digits": "spoken digits"}
# (column, eval options): the trained network, then deployment settings (no fine-tuning in any)
SETTINGS = {
    "hard": ["--hard"],
    "int8": ["--hardware", "int8"],
    "int4": ["--hardware", "int4"],
    "int8_m16": ["--hardware", "int8", "--membrane-bits", "16"],
    "int4_m16": ["--hardware", "int4", "--membrane-bits", "16"],
    "int4_pt_m12": ["--hardware", "int4", "--quant", "per_tensor", "--membrane-bits", "12"],
}
LABELS = {
    "trained": "as trained (smooth spikes)",
    "hard": "hard swap",
    "int8": "INT8",
    "int4": "INT4",
    "int8_m16": "INT8, 16-bit membrane",
    "int4_m16": "INT4, 16-bit membrane",
    "int4_pt_m12": "INT4 per tensor, 12-bit membrane",
}


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = [x * scale for x in values]
    if not v:
        return "–"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{digits}f} ± {sd:.{digits}f}" + ("" if len(v) == 3 else f" (n={len(v)})")


def finished_runs(sweep: str) -> list[dict]:
    """(row, method, seed, run directory, training metrics) of every finished run, in sweep order."""
    from spiketime.app.sweep import expand, load_sweep

    out = []
    for run in expand(load_sweep(Path("experiments") / f"{sweep}.yaml")):
        d = RUNS / sweep / "runs" / run["name"]
        if (d / "metrics.json").is_file() and (d / "best.pt").is_file():
            out.append(
                {
                    "row": run["row"],
                    "method": run["method"],
                    "seed": run["seed"],
                    "dir": d,
                    "metrics": json.loads((d / "metrics.json").read_text()),
                }
            )
    return out


def evaluate(sweep: str, runs: list[dict], setting: str) -> dict[str, dict]:
    """``spiketime eval`` of every run in ``setting`` (cached in runs/<sweep>/eval_<setting>), by run directory."""
    out = RUNS / sweep / f"eval_{setting}"
    f = out / "metrics.json"
    dirs = [str(r["dir"]) for r in runs]
    if not f.is_file() or [r["checkpoint"] for r in json.loads(f.read_text())["results"]] != dirs:
        cmd = [sys.executable, "-m", "spiketime", "eval", "--checkpoint", *dirs, *SETTINGS[setting], "--out", str(out)]
        print("$", " ".join(cmd[1:]), file=sys.stderr)
        subprocess.run(cmd, check=True, env={**os.environ, "MPLBACKEND": "Agg"}, stdout=subprocess.DEVNULL)
    return {r["checkpoint"]: r for r in json.loads(f.read_text())["results"]}


def main() -> None:
    swap_points = {}
    for sweep, title in SWEEPS.items():
        runs = finished_runs(sweep)
        if not runs:
            continue
        evals = {s: evaluate(sweep, runs, s) for s in SETTINGS}
        rows = []
        for r in runs:
            row = {"row": r["row"], "method": r["method"], "seed": r["seed"], "trained": r["metrics"]["test_accuracy"]}
            for s, res in evals.items():
                e = res[str(r["dir"])]
                row[s] = e["test_accuracy"]
                if s == "int8_m16":
                    row.update(
                        synops_per_sample=e["synops_per_sample"],
                        activation_sparsity=e["activation_sparsity"],
                        footprint_bytes=e["footprint_bytes"],
                    )
                if s == "hard":
                    row["hard_spikes_per_sample"] = e["spikes_per_sample"]
            rows.append(row)
        with open(DOCS / f"{sweep}_results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["row"], row["method"]), []).append(row)
        print(f"\n{title} ({sweep}): test accuracy (%)\n")
        cols = ["trained", *SETTINGS]
        print("| setting | method | " + " | ".join(LABELS[c] for c in cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for (grid_row, method), g in groups.items():
            print(f"| {grid_row} | {method} | " + " | ".join(mean_std([x[c] for x in g], 100) for c in cols) + " |")
        print(f"\n{title} ({sweep}): cost per test sample, INT8 weights and 16-bit membranes\n")
        print(
            "| setting | method | SynOps per sample | activation sparsity (%) | hidden spikes per sample (hard, "
            "float) | parameter footprint (bytes) |"
        )
        print("|---|---|---|---|---|---|")
        for (grid_row, method), g in groups.items():
            print(
                f"| {grid_row} | {method} | {mean_std([x['synops_per_sample'] for x in g], digits=0)} | "
                f"{mean_std([x['activation_sparsity'] for x in g], 100, 2)} | "
                f"{mean_std([x['hard_spikes_per_sample'] for x in g], digits=0)} | "
                f"{g[0]['footprint_bytes']:,} |"
            )
        swap_points[title] = groups
    if swap_points:
        plot(swap_points)


def plot(swap_points: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(swap_points), figsize=(5.5 * len(swap_points), 4), squeeze=False)
    cols = ["trained", *SETTINGS]
    for ax, (title, groups) in zip(axes[0], swap_points.items()):
        width = 0.8 / len(groups)
        for i, ((grid_row, method), g) in enumerate(groups.items()):
            means = [100 * statistics.mean(x[c] for x in g) for c in cols]
            sds = [100 * (statistics.stdev(x[c] for x in g) if len(g) > 1 else 0.0) for c in cols]
            label = method if grid_row == "all" else f"{method}, {grid_row.replace('model.spike_steepness=', 'k=')}"
            ax.bar([j + i * width for j in range(len(cols))], means, width, yerr=sds, label=label, capsize=2)
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(cols))],
            [LABELS[c] for c in cols],
            rotation=30,
            ha="right",
            fontsize=8,
        )
        lo = min(100 * min(x[c] for g in groups.values() for x in g for c in cols) - 5, 80)
        ax.set_ylim(max(lo, 0), 100)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    (DOCS / "img").mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS / "img" / "sast_swap.png", dpi=120)
    print(f"-> {DOCS / 'img' / 'sast_swap.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
