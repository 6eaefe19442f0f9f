"""The report of ``spiketime bench``: the machine it ran on and the table of its rows."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import torch

from spiketime.app.bench_peers import PEERS, SPIKETIME

# --------------------------------------------------------------------------------------------- reporting


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_info(device: str) -> dict[str, Any]:
    """Where the numbers come from: torch/CUDA versions, CPU and GPU names, threads, peer versions, git commit."""
    from spiketime.app.rundir import git_commit, versions

    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions(),
        "peers": {p: _version(p) for p in PEERS},
        "git_commit": git_commit(),
    }
    if device == "cuda" and torch.cuda.is_available():
        i = torch.cuda.current_device()
        info.update(
            gpu=torch.cuda.get_device_name(i),
            gpu_capability=list(torch.cuda.get_device_capability(i)),
            gpu_memory_bytes=torch.cuda.get_device_properties(i).total_memory,
        )
    return info


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: library/backend, T, ms/step, ratio to spiketime and to the matmul floor, saved memory."""
    cuda = any(r["cuda_peak_bytes"] is not None for r in rows)
    head = ["library/backend", "T", "ms/step", "vs spiketime", "vs floor", "saved MB", "saved KB/step"]
    head += ["CUDA peak MB"] if cuda else []
    head += ["spikes = spiketime"]
    lines = []
    for r in rows:
        if r["status"] != "ok":
            lines.append([r["name"], str(r["T"]), f"skipped: {r['reason']}"])
            continue
        cells = [
            r["name"],
            str(r["T"]),
            _f(r["ms"], ".2f"),
            _f(r["ratio_spiketime"], ".2f"),
            _f(r["ratio_floor"], ".2f"),
            _f(None if r["saved_bytes"] is None else r["saved_bytes"] / 2**20, ".1f"),
            _f(None if r["saved_bytes_per_step"] is None else r["saved_bytes_per_step"] / 2**10, ".1f"),
        ]
        if cuda:
            cells.append(_f(None if r["cuda_peak_bytes"] is None else r["cuda_peak_bytes"] / 2**20, ".0f"))
        cells.append(
            "(ref)"
            if r["library"] == SPIKETIME
            else "-"
            if r["spike_agreement"] is None
            else f"{100 * r['spike_agreement']:.2f}%"
        )
        lines.append(cells)
    widths = [len(h) for h in head]
    for cells in lines:
        if len(cells) == len(head):
            widths = [max(w, len(c)) for w, c in zip(widths, cells)]
        else:
            widths[:2] = [max(w, len(c)) for w, c in zip(widths[:2], cells[:2])]

    def fmt(cells: list[str]) -> str:
        if len(cells) < len(head):  # skipped row: the reason spans the rest
            return f"{cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]}"
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    prev_T = None
    for r, cells in zip(rows, lines):
        if prev_T is not None and r["T"] != prev_T:
            out.append("")
        prev_T = r["T"]
        out.append(fmt(cells))
    if any(r["learner"] == "online" and r["library"] == SPIKETIME for r in rows):
        out += [
            "",
            "learner online: spiketime's saved MB (KB/step) is the online learner's state (eligibility "
            "traces, delay ring buffers, neuron states, gradient accumulators), which does not grow with T; "
            "loss per_step; the matmul floor is BPTT's.",
        ]
    return "\n".join(out)
