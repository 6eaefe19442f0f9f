"""Training memory of SpikingGamma against sequence length: BPTT vs the online learner (``gamma_online``).

    python benchmarks/gamma_memory.py --T 250,500,1000,2000,3000 --out docs/gamma_memory.csv

Memory is what autograd keeps for the backward pass, measured exactly with
:func:`spiketime.app.bench.saved_tensor_bytes` (distinct storages saved for backward, parameters left out):

* BPTT: one forward pass over all ``T`` steps, the ``per_step`` loss and its backward pass.
* online: one step's graph (:func:`spiketime.learning.gamma_online.run_sequence` on one step; the graph of every
  step has the same tensors) plus the state carried between steps (bucket and sigma-delta states, after ``T``
  steps). The online learner never holds more than this, at any ``T``.

The network is the spoken-digits one of ``experiments/gamma_speech_digits.yaml`` (140 inputs, 128 hidden, 20
classes, 5 buckets) on random input spikes at 20 Hz; time per training step is the median of ``--repeats`` runs.
Writes a CSV (and a PNG next to it) and prints a table with the BPTT / online memory ratio.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from spiketime.app.bench import saved_tensor_bytes
from spiketime.learning.gamma_online import run_sequence
from spiketime.learning.losses import readout_loss
from spiketime.nn.gamma import GammaNetwork


def state_bytes(state: tuple) -> int:
    """Bytes of every tensor in a network state."""
    return sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(state) if torch.is_tensor(t))


def measure(T: int, batch: int, n_in: int, hidden: int, n_out: int, dt: float, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, batch, n_in, generator=g) < 0.02 * dt).float()  # 20 Hz at dt ms per step
    y = torch.randint(0, n_out, (batch,), generator=g)
    model = GammaNetwork(n_in, n_out, [hidden], dt, tau_1=10.0)
    params = list(model.parameters())

    def bptt() -> None:
        model.zero_grad(set_to_none=True)
        logits, _ = model(x)
        readout_loss(logits, y, "per_step").backward()

    def online() -> None:
        model.zero_grad(set_to_none=True)
        run_sequence(model, x, y)

    bptt_bytes = saved_tensor_bytes(bptt, params)
    one_step = saved_tensor_bytes(lambda: run_sequence(model, x[-1:], y), params)
    with torch.no_grad():
        _, state, _ = model.run(x)
    online_bytes = one_step + state_bytes(state)
    times = {}
    for name, fn in (("bptt", bptt), ("online", online)):
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
    return {
        "T": T,
        "batch": batch,
        "bptt_MB": bptt_bytes / 2**20,
        "online_MB": online_bytes / 2**20,
        "ratio": bptt_bytes / online_bytes,
        "bptt_s": times["bptt"],
        "online_s": times["online"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--T", default="250,500,1000,2000,3000", help="sequence lengths (comma-separated)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-in", type=int, default=140)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--n-out", type=int, default=20)
    p.add_argument("--duration", type=float, default=1000.0, help="ms covered by every T (dt = duration / T)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="docs/gamma_memory.csv")
    a = p.parse_args()
    rows = []
    print(
        "| T | BPTT saved MB | online MB (one step + state) | BPTT / online | BPTT s per batch | online s per batch |"
    )
    print("|---|---|---|---|---|---|")
    for T in (int(v) for v in a.T.split(",")):
        r = measure(T, a.batch, a.n_in, a.hidden, a.n_out, a.duration / T, a.repeats)
        rows.append(r)
        print(
            f"| {T} | {r['bptt_MB']:.1f} | {r['online_MB']:.2f} | {r['ratio']:.0f}x | {r['bptt_s']:.2f} | "
            f"{r['online_s']:.2f} |",
            flush=True,
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    Ts = [r["T"] for r in rows]
    ax.plot(Ts, [r["bptt_MB"] for r in rows], marker="o", label="BPTT (saved for backward)")
    ax.plot(Ts, [r["online_MB"] for r in rows], marker="o", label="gamma_online (one step + state)")
    ax.set(
        xlabel="time steps T (same 1 s)",
        ylabel="training memory (MB)",
        yscale="log",
        title=f"SpikingGamma training memory, batch {a.batch}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png.with_suffix(".tmp.png"), dpi=120)
    png.with_suffix(".tmp.png").replace(png)
    print(f"-> {out}, {png}")


if __name__ == "__main__":
    main()
