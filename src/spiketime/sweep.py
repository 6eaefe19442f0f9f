"""``spiketime sweep``: a grid of config overrides x methods x seeds, run in local processes.

Sweep file (YAML)::

    name: timing_table
    base: {data: {...}, model: {...}, train: {...}}   # or base: path/to/config.yaml
    grid:                                             # every combination is one row of the table
      data.task: [isi, ccisi, coincidence]
      data.variant: [rate, timing]
    methods:                                          # columns; each a command and its overrides
      count baseline: {command: baseline}
      LIF + axonal delays: {set: {model.delays: axonal}}
    seeds: [0, 1, 2]                                  # set into every key of seed_keys
    seed_keys: [train.seed, data.seed]

Every run gets ``OUT/runs/<row>__<method>__seed<k>/metrics.json``; runs whose metrics exist are
skipped, so an interrupted sweep continues where it stopped. ``OUT/results.csv`` has one line per
run, ``OUT/table.md`` the mean ± std test accuracy per row and method.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from spiketime.config import Config, ConfigError, apply, from_dict, validate
from spiketime.rundir import atomic_write_text

COMMANDS = ("train", "baseline")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def load_sweep(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: sweep file not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        raise ConfigError(f"{p}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping with base, grid, methods, seeds")
    unknown = set(raw) - {"name", "base", "grid", "methods", "seeds", "seed_keys"}
    if unknown:
        raise ConfigError(f"{p}: unknown sweep keys {sorted(unknown)}")
    base = raw.get("base") or {}
    if isinstance(base, str):
        base_path = (p.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.is_file():
            raise ConfigError(f"{p}: base config {base_path} not found")
        try:
            base = yaml.safe_load(base_path.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{base_path}: not valid YAML") from None
    grid = raw.get("grid") or {}
    methods = raw.get("methods") or {"train": {"command": "train"}}
    seeds = raw.get("seeds", [0])
    seed_keys = raw.get("seed_keys", ["train.seed", "data.seed"])
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{p}: grid must map config keys to non-empty lists")
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise ConfigError(f"{p}: seeds must be a non-empty list of integers")
    if not isinstance(seed_keys, list) or not all(isinstance(k, str) for k in seed_keys):
        raise ConfigError(f"{p}: seed_keys must be a list of config keys")
    if set(seed_keys) & set(grid):
        raise ConfigError(f"{p}: {sorted(set(seed_keys) & set(grid))} set both by grid and by seeds")
    if not isinstance(methods, dict):
        raise ConfigError(f"{p}: methods must map names to {{command, set}}")
    for name, m in methods.items():
        m = {} if m is None else m
        if not isinstance(m, dict) or set(m) - {"command", "set"}:
            raise ConfigError(f"{p}: method {name!r}: expected a mapping with keys command and set")
        if m.get("command", "train") not in COMMANDS:
            raise ConfigError(f"{p}: method {name!r}: command must be one of {COMMANDS}")
        if not isinstance(m.get("set") or {}, dict):
            raise ConfigError(f"{p}: method {name!r}: set must map config keys to values")
        methods[name] = {"command": m.get("command", "train"), "set": m.get("set") or {}}
    slugs = [_slug(str(n)) for n in methods]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"{p}: method names must differ in more than case and punctuation")
    return {"name": raw.get("name", p.stem), "base": base, "grid": grid, "methods": methods, "seeds": seeds,
            "seed_keys": seed_keys, "path": p}


def expand(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """All runs: one per grid point x method x seed, each with its validated config."""
    keys = list(sweep["grid"])
    runs = []
    for values in itertools.product(*(sweep["grid"][k] for k in keys)):
        row = dict(zip(keys, values))
        row_name = ",".join(f"{k}={v}" for k, v in row.items()) or "all"
        for method, spec in sweep["methods"].items():
            for seed in sweep["seeds"]:
                cfg = from_dict(sweep["base"], f"{sweep['path']} (base)")
                for k, v in {**row, **spec["set"]}.items():
                    apply(cfg, k, v)
                for k in sweep["seed_keys"]:
                    apply(cfg, k, seed)
                cfg.name = f"{_slug(row_name)}__{_slug(method)}__seed{seed}"
                cfg.train.progress = False
                runs.append({"row": row_name, "method": method, "seed": seed, "command": spec["command"],
                             "config": validate(cfg).to_dict(), "name": cfg.name})
    return runs


def _execute(run: dict[str, Any], out: str, threads: int) -> dict[str, Any]:
    """Run one sweep entry in this process (a worker); returns its metrics."""
    import torch

    torch.set_num_threads(threads)
    cfg: Config = validate(from_dict(run["config"]))
    run_dir = Path(out) / "runs" / run["name"]
    if run["command"] == "baseline":
        from spiketime.learning.trainer import run_baseline

        return run_baseline(cfg, run_dir)
    from spiketime.learning.trainer import fit

    return fit(cfg, run_dir, resume=True, command=f"spiketime train --config {run_dir / 'config.yaml'}")


def run_sweep(path: str | Path, out: str | Path | None = None, jobs: int = 1, markdown: str | Path | None = None) -> Path:
    sweep = load_sweep(path)
    runs = expand(sweep)
    out = Path(out) if out else Path("runs") / f"sweep-{sweep['name']}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for run in runs:
        m = out / "runs" / run["name"] / "metrics.json"
        if m.is_file():
            results[run["name"]] = json.loads(m.read_text())
        else:
            todo.append(run)
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {sweep['name']}", unit="run") as bar:
        if jobs <= 1:
            for run in todo:
                results[run["name"]] = _execute(run, str(out), threads)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(_execute, run, str(out), threads): run for run in todo}
                for f in as_completed(futures):
                    results[futures[f]["name"]] = f.result()
                    bar.update()
    write_results(sweep, runs, results, out, markdown)
    return out


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def write_results(sweep: dict[str, Any], runs: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                  out: Path, markdown: str | Path | None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "method", "seed", "test_accuracy", "val_accuracy", "chance", "epochs", "train_seconds"])
    for r in runs:
        m = results[r["name"]]
        w.writerow([r["row"], r["method"], r["seed"], m["test_accuracy"], m["val_accuracy"],
                    1.0 / m["num_classes"], m.get("epochs", ""), m.get("train_seconds", "")])
    atomic_write_text(out / "results.csv", buf.getvalue())
    rows = list(dict.fromkeys(r["row"] for r in runs))
    methods = list(sweep["methods"])
    acc = {(r["row"], r["method"]): [] for r in runs}
    for r in runs:
        acc[(r["row"], r["method"])].append(results[r["name"]]["test_accuracy"])
    lines = [f"| {' | '.join(['setting', *methods])} |", f"|{'---|' * (len(methods) + 1)}"]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(_mean_std(acc[(row, m)]) for m in methods) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    if markdown:
        atomic_write_text(Path(markdown), table)
    print(table)
