"""Memory kept across time steps against T, one line per (library, learner), from ``spiketime bench`` JSONs:
BPTT's saved activations grow with T, the online learner's state does not.

    python benchmarks/plot_memory.py benchmarks/results/cpu.json benchmarks/results/cpu-online.json \
        --out docs/img/memory_online.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spiketime.files import atomic_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="bench JSON files")
    ap.add_argument("--out", default="docs/img/memory_online.png", help="PNG to write")
    args = ap.parse_args()
    lines: dict[str, list[tuple[int, float]]] = {}
    for f in args.files:
        for r in json.loads(Path(f).read_text())["rows"]:
            if r["library"] == "matmul floor" or r.get("saved_bytes") is None:  # skipped rows have none
                continue
            label = f"{r['library']} ({r['learner']})" if r["library"] == "spiketime" else f"{r['library']} (bptt)"
            lines.setdefault(label, []).append((r["T"], r["saved_bytes"] / 2**20))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", lw=3 if "online" in label else 1.5, label=label)
    ax.set_xlabel("T (time steps of 1 ms)")
    ax.set_ylabel("MB kept across time steps")
    ax.set_title("700-256-256-20, batch 32: BPTT activations vs online state", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(args.out)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
