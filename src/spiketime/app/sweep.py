"""``spiketime sweep``: a grid of config overrides x methods x seeds, run in local processes or on Ray.

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

Executors: ``local`` (``jobs`` processes) or ``ray`` (one Ray task of ``cpus_per_run`` CPUs per run).
Both call :func:`_execute` for each run and collect results as runs finish; the first run that
fails stops the sweep with one line naming it (its traceback goes to ``OUT/runs/<name>/error.txt``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import statistics
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from spiketime.app.config import Config, ConfigError, apply, first_line, from_dict, validate
from spiketime.app.rundir import ERROR_FILE, check_out_dir
from spiketime.files import atomic_write_text
from spiketime.progress import progress_bar

COMMANDS = ("train", "baseline")
EXECUTORS = ("local", "ray")
RAY_HINT = 'pip install "spiketime[ray]"'
# what an executor yields, in the order runs finish: (run, its metrics or the exception it raised)
Finished = Iterator[tuple[dict[str, Any], "dict[str, Any] | BaseException"]]


class RunFailed(Exception):
    """A run of the sweep raised something other than a ConfigError; the message is one line."""


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
    return {
        "name": raw.get("name", p.stem),
        "base": base,
        "grid": grid,
        "methods": methods,
        "seeds": seeds,
        "seed_keys": seed_keys,
        "path": p,
    }


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
                runs.append(
                    {
                        "row": row_name,
                        "method": method,
                        "seed": seed,
                        "command": spec["command"],
                        "config": validate(cfg).to_dict(),
                        "name": cfg.name,
                    }
                )
    return runs


def _execute(run: dict[str, Any], out: str, threads: int) -> dict[str, Any]:
    """Run one sweep entry in this process (a worker); returns its metrics."""
    import torch

    torch.set_num_threads(threads)
    cfg: Config = validate(from_dict(run["config"]))
    run_dir = Path(out) / "runs" / run["name"]
    if run["command"] == "baseline":
        from spiketime.app.fit import run_baseline

        return run_baseline(cfg, run_dir)
    from spiketime.app.fit import fit

    return fit(cfg, run_dir, resume=True, command=f"spiketime train --config {run_dir / 'config.yaml'}")


def run_sweep(
    path: str | Path,
    out: str | Path | None = None,
    jobs: int = 1,
    markdown: str | Path | None = None,
    executor: str = "local",
    cpus_per_run: float = 1,
    ray_address: str | None = None,
    collect: bool = False,
) -> Path:
    """Run the sweep's unfinished runs and write ``results.csv`` and ``table.md``; ``collect``: run nothing,
    tabulate the runs already finished (a cell with fewer seeds than the sweep's says ``(n=k)``)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if cpus_per_run <= 0:
        raise ConfigError(f"--cpus-per-run must be positive, got {cpus_per_run}")
    sweep = load_sweep(path)
    runs = expand(sweep)
    ray = _import_ray() if executor == "ray" and not collect else None  # fail before anything is written
    out = Path(out) if out else Path("runs") / f"sweep-{sweep['name']}"
    if collect and not (out / "runs").is_dir():
        raise ConfigError(f"{out}: no finished runs to collect (expected {out / 'runs'})")
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for run in runs:
        m = out / "runs" / run["name"] / "metrics.json"
        if m.is_file():
            results[run["name"]] = json.loads(m.read_text())
        elif not collect:
            todo.append(run)
    ray_started = _ray_connect(ray, ray_address, cpus_per_run) if ray is not None and todo else False
    try:
        if ray is not None:  # an absolute OUT: Ray workers need not share the driver's working directory
            finished = _ray_runs(ray, todo, str(out.resolve()), cpus_per_run)
        else:
            finished = _local_runs(todo, str(out), jobs)
        with progress_bar(
            not collect, f"sweep {sweep['name']}", len(runs), "run", initial=len(runs) - len(todo)
        ) as bar:
            try:
                for run, result in finished:
                    if isinstance(result, BaseException):
                        _fail(run, result, out)
                    results[run["name"]] = result
                    (out / "runs" / run["name"] / ERROR_FILE).unlink(missing_ok=True)
                    bar.update()
            finally:
                finished.close()  # cancels the runs not finished yet
    finally:
        if ray_started:
            ray.shutdown()
    write_results(sweep, runs, results, out, markdown)
    return out


def _local_runs(todo: list[dict[str, Any]], out: str, jobs: int) -> Finished:
    """(run, metrics or the exception it raised), in the order runs finish, from ``jobs`` local processes."""
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    if jobs <= 1:
        for run in todo:
            try:
                result = _execute(run, out, threads)
            except Exception as e:
                result = e
            yield run, result
        return
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_execute, run, out, threads): run for run in todo}
        for f in as_completed(futures):
            error = f.exception()
            yield futures[f], f.result() if error is None else error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray: {RAY_HINT}") from None
    return ray


def _ray_connect(ray: Any, address: str | None, cpus: float) -> bool:
    """Connect to Ray unless this process already is; True if this call connected (and must shut down).

    ``ray.init(address)``: with ``address=None`` Ray tries ``$RAY_ADDRESS``, then the cluster last
    started on this machine, else starts a local instance; ``"auto"`` requires a running cluster;
    ``"local"`` always starts a new local instance; ``HOST:PORT`` or ``ray://HOST:PORT`` connects there.
    """
    if ray.is_initialized():
        started = False
    else:
        try:
            ray.init(address=address)
        except Exception as e:  # ConnectionError (no cluster), ValueError (bad address), RuntimeError, ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"Ray (--ray-address {address or 'default'}): {first}") from None
        started = True
    total = ray.cluster_resources().get("CPU", 0)
    if total < cpus:
        if started:
            ray.shutdown()
        raise ConfigError(f"--cpus-per-run {cpus:g} is more than the {total:g} CPUs of the Ray cluster")
    return started


def _ray_runs(ray: Any, todo: list[dict[str, Any]], out: str, cpus: float) -> Finished:
    """(run, metrics or the exception it raised), in the order runs finish, one Ray task per run."""
    task = ray.remote(num_cpus=cpus)(_execute)
    refs = {task.remote(run, out, max(1, int(cpus))): run for run in todo}
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as e:
                result = e
            yield refs.pop(done[0]), result
    finally:
        for ref in refs:  # not finished: cancel (an interrupted train run keeps its checkpoint)
            try:
                ray.cancel(ref)
            except Exception:
                pass


def _fail(run: dict[str, Any], error: BaseException, out: Path) -> None:
    """Raise one line naming the failed run; its full traceback goes to the run's error.txt."""
    cause = getattr(error, "cause", None)  # a Ray task error wraps what the run raised
    cause = cause if isinstance(cause, BaseException) else error
    run_dir = out / "runs" / run["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if cause is not error:  # Ray's text of the remote traceback, without its terminal colours
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    else:
        detail = "".join(traceback.format_exception(error))
    atomic_write_text(run_dir / ERROR_FILE, detail)
    first = first_line(cause)
    if isinstance(cause, ConfigError):
        raise ConfigError(f"sweep run {run['name']}: {first}") from None
    raise RunFailed(
        f"sweep run {run['name']} failed: {type(cause).__name__}"
        f"{': ' + first if first else ''} (traceback in {run_dir / ERROR_FILE})"
    ) from None


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def write_results(
    sweep: dict[str, Any],
    runs: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    out: Path,
    markdown: str | Path | None,
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "method", "seed", "test_accuracy", "val_accuracy", "chance", "epochs", "train_seconds"])
    runs = [r for r in runs if r["name"] in results]  # all of them, unless collecting an unfinished sweep
    n_seeds = len(sweep["seeds"])
    for r in runs:
        m = results[r["name"]]
        w.writerow(
            [
                r["row"],
                r["method"],
                r["seed"],
                m["test_accuracy"],
                m["val_accuracy"],
                1.0 / m["num_classes"],
                m.get("epochs", ""),
                m.get("train_seconds", ""),
            ]
        )
    atomic_write_text(out / "results.csv", buf.getvalue())
    rows = list(dict.fromkeys(r["row"] for r in runs))
    methods = list(sweep["methods"])
    acc: dict[tuple[str, str], list[float]] = {(row, m): [] for row in rows for m in methods}
    for r in runs:
        acc[(r["row"], r["method"])].append(results[r["name"]]["test_accuracy"])

    def cell(values: list[float]) -> str:
        return _mean_std(values) + (f" (n={len(values)})" if 0 < len(values) < n_seeds else "")

    lines = [f"| {' | '.join(['setting', *methods])} |", f"|{'---|' * (len(methods) + 1)}"]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(cell(acc[(row, m)]) for m in methods) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    if markdown:
        atomic_write_text(Path(markdown), table)
    print(table)
