"""``spiketime sweep``: grid x methods x seeds, results.csv, the mean ± std table, resume, --jobs, bad files."""

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import TINY
from spiketime.cli.main import main

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
    path = write_sweep(d / "variants.yaml", name="variants", base=tiny_base(epochs=1),
                       grid={"data.variant": ["rate", "timing"]}, methods=METHODS, seeds=[0, 1])
    out, md = d / "out", d / "copy.md"
    code = main(["sweep", str(path), "--out", str(out), "--markdown", str(md)])
    return {"code": code, "path": path, "out": out, "md": md}


def test_sweep_results_csv(sweep):
    assert sweep["code"] == 0
    header, rows = read_csv(sweep["out"] / "results.csv")
    assert header == COLUMNS
    assert len(rows) == 2 * 2 * 2
    keys = {(r["row"], r["method"], int(r["seed"])) for r in rows}
    assert keys == {(row, m, s) for row in ("data.variant=rate", "data.variant=timing") for m in METHODS for s in (0, 1)}
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
