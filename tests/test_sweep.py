"""``spiketime sweep``: grid x methods x seeds, results.csv, the table, resume, --jobs, --executor ray, bad files."""

import csv
import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY
from spiketime.app.cli.main import main

COLUMNS = ["row", "method", "seed", "test_accuracy", "val_accuracy", "chance", "epochs", "train_seconds"]
METHODS = {"count baseline": {"command": "baseline"}, "LIF": {"set": {"model.delays": "none"}}}


def tiny_base(**train) -> dict:
    """conftest.TINY (``section.key=value`` strings) as a nested ``base`` mapping."""
    base: dict = {}
    for item in TINY:
        key, _, raw = item.partition("=")
        section, _, sub = key.partition(".")
        base.setdefault(section, {})[sub] = yaml.safe_load(raw)
    base["train"].update(train)
    return base


def write_sweep(path: Path, **body) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The 2 variants x 2 methods x 2 seeds sweep, run once for the tests of this module."""
    d = tmp_path_factory.mktemp("sweep")
    path = write_sweep(
        d / "variants.yaml",
        name="variants",
        base=tiny_base(epochs=1),
        grid={"data.variant": ["rate", "timing"]},
        methods=METHODS,
        seeds=[0, 1],
    )
    out, md = d / "out", d / "copy.md"
    code = main(["sweep", str(path), "--out", str(out), "--markdown", str(md)])
    return {"code": code, "path": path, "out": out, "md": md}


def test_sweep_results_csv(sweep):
    assert sweep["code"] == 0
    header, rows = read_csv(sweep["out"] / "results.csv")
    assert header == COLUMNS
    assert len(rows) == 2 * 2 * 2
    keys = {(r["row"], r["method"], int(r["seed"])) for r in rows}
    assert keys == {
        (row, m, s) for row in ("data.variant=rate", "data.variant=timing") for m in METHODS for s in (0, 1)
    }
    for r in rows:
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and 0.0 <= float(r["val_accuracy"]) <= 1.0
        assert float(r["chance"]) == pytest.approx(1 / 3)
        if r["method"] == "LIF":
            assert int(r["epochs"]) == 1 and float(r["train_seconds"]) > 0
        else:  # the count baseline has no epochs
            assert r["epochs"] == "" and r["train_seconds"] == ""


def test_sweep_run_dirs_and_seeds(sweep):
    runs = sorted((sweep["out"] / "runs").iterdir())
    assert len(runs) == 8
    _, rows = read_csv(sweep["out"] / "results.csv")
    by_name = {}
    for r in rows:
        name = f"{r['row'].replace('=', '-')}__{r['method'].replace(' ', '-').lower()}__seed{r['seed']}"
        by_name[name] = r
    assert sorted(by_name) == [p.name for p in runs]
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        r = by_name[run.name]
        seed = int(r["seed"])
        # the seed goes into every seed key; the grid value and the method's overrides are applied
        assert m["seed"] == seed and m["config"]["train"]["seed"] == seed and m["config"]["data"]["seed"] == seed
        assert m["config"]["data"]["variant"] == r["row"].split("=")[1]
        assert m["config"]["train"]["epochs"] == 1 and m["config"]["train"]["progress"] is False
        assert m["test_accuracy"] == float(r["test_accuracy"]) and m["val_accuracy"] == float(r["val_accuracy"])
        if r["method"] == "LIF":
            assert m["config"]["model"]["delays"] == "none" and (run / "config.yaml").is_file()
        else:
            assert m["config"]["model"]["delays"] == "axonal"  # the base default, untouched


def test_sweep_table_matches_csv(sweep):
    table = (sweep["out"] / "table.md").read_text()
    assert sweep["md"].read_text() == table
    lines = table.strip().splitlines()
    assert lines[0] == "| setting | count baseline | LIF |"
    assert lines[1] == "|---|---|---|"
    assert len(lines) == 2 + 2  # header, separator, one line per grid value
    _, rows = read_csv(sweep["out"] / "results.csv")
    for line, row in zip(lines[2:], ("data.variant=rate", "data.variant=timing")):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row and len(cells) == 1 + len(METHODS)
        for cell, method in zip(cells[1:], METHODS):
            accs = [float(r["test_accuracy"]) for r in rows if r["row"] == row and r["method"] == method]
            assert len(accs) == 2
            assert cell == mean_std(accs)
            mean, std = cell.split(" ± ")
            assert 0.0 <= float(mean) <= 100.0 and float(std) >= 0.0


def test_sweep_rerun_skips_finished_runs(sweep, capsys):
    out = sweep["out"]
    metrics = sorted(out.glob("runs/*/metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in metrics}
    table = (out / "table.md").read_text()
    csv_text = (out / "results.csv").read_text()
    assert main(["sweep", str(sweep["path"]), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in metrics} == before
    assert (out / "table.md").read_text() == table and (out / "results.csv").read_text() == csv_text
    assert table.strip() in capsys.readouterr().out

    # an interrupted sweep: a run without metrics.json is run again (from its checkpoint), the others are kept
    lost = out / "runs" / "data.variant-timing__lif__seed1" / "metrics.json"
    acc = json.loads(lost.read_text())["test_accuracy"]
    lost.unlink()
    assert main(["sweep", str(sweep["path"]), "--out", str(out)]) == 0
    assert json.loads(lost.read_text())["test_accuracy"] == acc
    assert {p: p.stat().st_mtime_ns for p in metrics if p != lost} == {p: t for p, t in before.items() if p != lost}
    assert (out / "table.md").read_text() == table


def test_collect_tabulates_finished_runs_only(sweep, tmp_path, capsys):
    """--collect runs nothing: a cell missing one seed says (n=1), a cell with none says –."""
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(sweep["out"] / "runs", out / "runs")
    shutil.rmtree(out / "runs" / "data.variant-timing__lif__seed1")
    shutil.rmtree(out / "runs" / "data.variant-rate__lif__seed0")
    shutil.rmtree(out / "runs" / "data.variant-rate__lif__seed1")
    assert main(["sweep", str(sweep["path"]), "--out", str(out), "--collect"]) == 0
    assert not (out / "runs" / "data.variant-timing__lif__seed1").exists()  # nothing was run
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 5
    table = (out / "table.md").read_text().splitlines()
    timing = next(line for line in table if line.startswith("| data.variant=timing"))
    rate = next(line for line in table if line.startswith("| data.variant=rate"))
    acc = json.loads((out / "runs" / "data.variant-timing__lif__seed0" / "metrics.json").read_text())["test_accuracy"]
    assert timing.endswith(f"| {100 * acc:.1f} ± 0.0 (n=1) |")
    assert rate.endswith("| – |") and "(n=" not in rate
    assert main(["sweep", str(sweep["path"]), "--out", str(tmp_path / "none"), "--collect"]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_sweep_jobs_2_matches_jobs_1(tmp_path):
    path = write_sweep(tmp_path / "small.yaml", base=tiny_base(epochs=1), methods={"LIF": {}}, seeds=[0, 1])
    accs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert main(["sweep", str(path), "--out", str(out), "--jobs", str(jobs)]) == 0
        _, rows = read_csv(out / "results.csv")
        assert [(r["row"], r["method"], r["seed"]) for r in rows] == [("all", "LIF", "0"), ("all", "LIF", "1")]
        accs[jobs] = [(r["test_accuracy"], r["val_accuracy"]) for r in rows]
    assert accs[2] == accs[1]


BAD = {
    "grid value not a list": ({"grid": {"data.variant": "rate"}}, "grid must map config keys to non-empty lists"),
    "empty grid list": ({"grid": {"data.variant": []}}, "grid must map config keys to non-empty lists"),
    "unknown top-level key": ({"gird": {"data.variant": ["rate"]}}, "unknown sweep keys ['gird']"),
    "unknown method command": ({"methods": {"x": {"command": "evaluate"}}}, "method 'x': command must be one of"),
    "bad config key in grid": ({"grid": {"model.hiden": [[8]]}}, "'model.hiden'"),
    "bad value in grid": ({"grid": {"data.variant": ["rate", "spikes"]}}, "data.variant: expected rate | timing"),
    "bad key in a method": ({"methods": {"x": {"set": {"train.lrr": 0.1}}}}, "'train.lrr'"),
    "seeds not integers": ({"seeds": ["a"]}, "seeds must be a non-empty list of integers"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_file_exits_2_with_one_line(tmp_path, capsys, case):
    body, expected = BAD[case]
    path = write_sweep(tmp_path / "bad.yaml", base=tiny_base(epochs=1), **body)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("spiketime: error: ") and expected in err, err
    assert not out.exists()  # nothing runs before the whole sweep is checked


def test_missing_sweep_file_exits_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"spiketime: error: {tmp_path / 'nope.yaml'}: sweep file not found"


# --executor ray: the missing-Ray error, failing runs named in one line, and the same results as local


def error_line(err: str) -> str:
    """The one error line printed after the progress bar (which also goes to stderr); no traceback."""
    lines = err.strip().splitlines()
    assert not any("Traceback" in line or "RayTaskError" in line for line in lines), err
    assert sum("error" in line.lower() for line in lines) == 1, err
    return lines[-1]


def test_executor_ray_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = write_sweep(tmp_path / "small.yaml", base=tiny_base(epochs=1), methods={"LIF": {}}, seeds=[0])
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err == 'spiketime: error: --executor ray needs Ray: pip install "spiketime[ray]"\n'
    assert not out.exists()


def test_failing_run_is_named_in_one_line(tmp_path, capsys):
    """A run that only the data generator rejects: the runs before it are kept, the error names it."""
    path = write_sweep(
        tmp_path / "classes.yaml",
        base=tiny_base(epochs=1),
        grid={"data.num_classes": [3, 10]},
        methods={"LIF": {}},
        seeds=[0],
    )
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith(
        "spiketime: error: sweep run data.num-classes-10__lif__seed0: data: num_classes=10 is too many"
    )
    assert (out / "runs" / "data.num-classes-3__lif__seed0" / "metrics.json").is_file()
    assert "num_classes=10" in (out / "runs" / "data.num-classes-10__lif__seed0" / "error.txt").read_text()
    assert not (out / "results.csv").exists()


def test_crashing_run_is_named_in_one_line(tmp_path, capsys, monkeypatch):
    """Any other exception: exit 1, one line with the run and the error, the traceback in error.txt."""
    import spiketime.app.sweep

    def crash(run, out, threads):
        raise RuntimeError("worker exploded\nsecond line")

    monkeypatch.setattr(spiketime.app.sweep, "_execute", crash)
    path = write_sweep(tmp_path / "small.yaml", base=tiny_base(epochs=1), methods={"LIF": {}}, seeds=[0, 1])
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    err = error_line(capsys.readouterr().err)
    error_txt = out / "runs" / "all__lif__seed0" / "error.txt"
    assert (
        err
        == f"spiketime: error: sweep run all__lif__seed0 failed: RuntimeError: worker exploded (traceback in {error_txt})"
    )
    assert "Traceback" in error_txt.read_text() and "in crash" in error_txt.read_text()
    assert not (out / "runs" / "all__lif__seed1").exists()  # the sweep stops at the first failure


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs, used by the sweeps below (which therefore do not start their own)."""
    try:  # not installed, or installed without a dependency: skip (importorskip lets the latter error)
        import ray
    except ImportError as e:
        pytest.skip(f"ray is not importable: {e}")
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # never a cluster named by $RAY_ADDRESS
    yield ray
    ray.shutdown()


@pytest.mark.slow  # 20-40 s with the start of Ray on 2 busy cores: two sweeps of 2 runs
def test_executor_ray_matches_local(tmp_path, local_ray, capsys):
    path = write_sweep(tmp_path / "small.yaml", base=tiny_base(epochs=1), methods={"LIF": {}}, seeds=[0, 1])
    tables, rows = {}, {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        assert main(["sweep", str(path), "--out", str(out), "--executor", executor]) == 0
        header, rows[executor] = read_csv(out / "results.csv")
        assert header == COLUMNS
        tables[executor] = (out / "table.md").read_text()
        assert sorted(p.name for p in (out / "runs").iterdir()) == ["all__lif__seed0", "all__lif__seed1"]
    assert local_ray.is_initialized()  # the sweep used the running instance and left it running
    assert tables["ray"] == tables["local"]
    assert [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows["ray"]] == [
        {k: v for k, v in r.items() if k != "train_seconds"} for r in rows["local"]
    ]
    assert [r["seed"] for r in rows["ray"]] == ["0", "1"]

    # resume: nothing is left to run, so nothing is submitted and the same files are written
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert (tmp_path / "ray" / "table.md").read_text() == tables["local"]


def test_executor_ray_failing_run_is_one_line(tmp_path, local_ray, capsys):
    path = write_sweep(
        tmp_path / "classes.yaml",
        base=tiny_base(epochs=1),
        grid={"data.num_classes": [10]},
        methods={"LIF": {}},
        seeds=[0],
    )
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--executor", "ray"]) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith("spiketime: error: sweep run data.num-classes-10__lif__seed0: data: num_classes=10 ")
    detail = (out / "runs" / "data.num-classes-10__lif__seed0" / "error.txt").read_text()
    assert "in _execute" in detail and "num_classes=10 is too many" in detail and "\x1b[" not in detail


def test_cpus_per_run_more_than_the_cluster(tmp_path, local_ray, capsys):
    path = write_sweep(tmp_path / "small.yaml", base=tiny_base(epochs=1), methods={"LIF": {}}, seeds=[0])
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--executor", "ray", "--cpus-per-run", "4"]) == 2
    assert capsys.readouterr().err == "spiketime: error: --cpus-per-run 4 is more than the 2 CPUs of the Ray cluster\n"
