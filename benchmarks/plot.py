"""Plot ``spiketime bench`` JSON files: ms per training step against T (log-log), one line per library/backend,
one panel per file.

    python benchmarks/plot.py                                   # every benchmarks/results/*.json
    python benchmarks/plot.py benchmarks/results/gpu-fp32-none.json --out docs/img/bench-gpu.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

HERE = Path(__file__).resolve().parent
STYLE = {
    "spiketime": dict(color="black", lw=2.2, marker="o", zorder=5),
    "matmul floor": dict(color="grey", lw=1.2, ls="--", marker="", zorder=1),
}


def _title(data: dict) -> str:
    b, d = data["bench"], data.get("device_info", {})
    where = d.get("gpu") or d.get("cpu") or b["device"]
    threads = "" if b["device"] == "cuda" else f", {d.get('torch_threads', '?')} threads"
    return (
        f"{where}{threads}\n{b['device']} {b['precision']}, batch {b['batch']}, "
        f"spiketime delays: {b['delays']}, learner {b['learner']}"
    )


def plot(files: list[Path], out: Path) -> Path:
    datas = [json.loads(f.read_text()) for f in files]
    n = len(datas)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax, data, f in zip(axes.flat, datas, files):
        lines: dict[str, list[tuple[int, float]]] = {}
        for r in data["rows"]:
            if r["status"] == "ok" and r["ms"] is not None:
                lines.setdefault(r["name"], []).append((r["T"], r["ms"]))
        for name, pts in lines.items():
            pts.sort()
            ts, ms = zip(*pts)
            ax.plot(ts, ms, label=name, **STYLE.get(name, dict(marker="o", ms=4, lw=1.2)))
        skipped = sorted({r["name"] for r in data["rows"] if r["status"] != "ok"} - set(lines))
        if skipped:
            ax.text(
                0.02,
                0.98,
                "skipped: " + ", ".join(skipped),
                transform=ax.transAxes,
                va="top",
                fontsize=7,
                color="firebrick",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ts_all = sorted({t for pts in lines.values() for t, _ in pts})
        if ts_all:
            ax.set_xticks(ts_all, [str(t) for t in ts_all])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("T (time steps of 1 ms)")
        ax.set_ylabel("ms per training step (fwd + bwd)")
        ax.set_title(_title(data), fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.annotate(f.name, (1.0, -0.16), xycoords="axes fraction", ha="right", fontsize=6, color="grey")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("One BPTT step of 700-256-256-20 (LIF, LI readout), SHD-like input", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help="bench JSON files (default: benchmarks/results/*.json)")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img" / "performance.png", help="PNG to write")
    args = p.parse_args(argv)
    files = args.files or sorted((HERE / "results").glob("*.json"))
    if not files:
        print("plot.py: error: no JSON files (run benchmarks/run_cpu.sh or run_gpu.sh first)", file=sys.stderr)
        return 2
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"plot.py: error: {missing[0]}: not found", file=sys.stderr)
        return 2
    print(f"-> {plot(files, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
