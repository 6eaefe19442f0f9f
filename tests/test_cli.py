"""The spiketime command: a full tiny run, resume exactness, and every bad-input case (exit 2, one line)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from spiketime.app.cli.main import main

ENV = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def _run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_complete_run_directory(tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _run_cli(["train", "--out", str(out), *tiny_sets], capsys)
    assert code == 0 and "test_accuracy=" in stdout
    for name in (
        "config.yaml",
        "metrics.json",
        "report.md",
        "checkpoint.pt",
        "best.pt",
        "learning_curves.png",
        "raster.png",
        "delays.png",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "val_accuracy",
        "num_classes",
        "train_seconds",
        "epochs",
        "seed",
        "history",
        "config",
        "versions",
        "git_commit",
    ):
        assert key in m, key
    assert m["num_classes"] == 3 and m["epochs"] == 3 and len(m["history"]) == 3
    assert set(m["history"][0]) >= {"train_loss", "val_accuracy", "seconds"}
    assert set(m["versions"]) >= {"python", "torch", "spiketime"}
    assert 0.0 <= m["test_accuracy"] <= 1.0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["hidden"] == [8] and cfg["data"]["task"] == "ccisi"
    assert "spiketime train --config" in (out / "report.md").read_text()
    # the resolved config reproduces the run exactly
    code, _, _ = _run_cli(["train", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again")], capsys)
    m2 = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert code == 0 and m2["test_accuracy"] == m["test_accuracy"]
    assert [h["train_loss"] for h in m2["history"]] == [h["train_loss"] for h in m["history"]]
    # eval of the best checkpoint on the config's test split gives the run's test accuracy
    code, _, _ = _run_cli(["eval", "--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "ev")], capsys)
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert code == 0 and ev["test_accuracy"] == m["test_accuracy"]
    # hidden spikes per test sample, counted from the best model's hidden layers
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.app.splits import make_split

    model, rcfg = model_from_checkpoint(load_checkpoint(out / "best.pt"))
    test = make_split(rcfg.data, "test")
    with torch.no_grad():
        _, _, outputs = model.run(test.x.float().transpose(0, 1))
    count = sum(float(h.sum()) for h in outputs[:-1]) / len(test)
    assert count > 0 and m["spikes_per_sample"] == pytest.approx(count) == ev["spikes_per_sample"]


def test_eval_data_file_and_baseline(tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    assert _run_cli(["train", "--out", str(out), *tiny_sets, "--set", "train.epochs=1"], capsys)[0] == 0
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, 40, 6, generator=g) < 0.05).float()
    y = torch.randint(0, 3, (20,), generator=g)
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    code, _, _ = _run_cli(
        ["eval", "--checkpoint", str(out), "--data", str(tmp_path / "d.pt"), "--out", str(tmp_path / "ev")], capsys
    )
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert code == 0 and ev["samples"] == 20
    code, _, _ = _run_cli(["baseline", *tiny_sets, "--out", str(tmp_path / "bl")], capsys)
    bl = json.loads((tmp_path / "bl" / "metrics.json").read_text())
    assert code == 0 and {"test_accuracy", "val_accuracy", "num_classes"} <= set(bl)


def _metrics_wo_time(path):
    m = json.loads(Path(path).read_text())
    return (
        m["test_accuracy"],
        m["val_accuracy"],
        m["epochs"],
        m["best_epoch"],
        [(h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in m["history"]],
    )


def test_resume_after_kill_9_is_exact(tmp_path, tiny_sets):
    sets = [*tiny_sets, "--set", "train.epochs=8", "--set", "data.n_train=200", "--set", "train.early_stop=false"]
    full = tmp_path / "full"
    subprocess.run(
        [sys.executable, "-m", "spiketime", "train", "--out", str(full), *sets],
        env=ENV,
        check=True,
        capture_output=True,
    )
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spiketime", "train", "--out", str(cut), *sets],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (cut / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (cut / "checkpoint.pt").exists(), "the run never wrote a checkpoint"
    assert not (cut / "metrics.json").exists(), "the run finished before it could be killed: test is vacuous"
    epoch_at_kill = torch.load(cut / "checkpoint.pt", weights_only=True)["state"]["epoch"]
    assert 1 <= epoch_at_kill < 8
    res = subprocess.run(
        [sys.executable, "-m", "spiketime", "train", "--resume", str(cut)], env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert _metrics_wo_time(cut / "metrics.json") == _metrics_wo_time(full / "metrics.json")
    a = torch.load(full / "best.pt", weights_only=True)["model"]
    b = torch.load(cut / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(cut.glob(".*.tmp")), "temporary files left behind"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from spiketime import files as rundir

    target = tmp_path / "checkpoint.pt"
    rundir.torch_save_atomic({"a": 1}, target)

    def torn_save(obj, f):
        Path(f).write_bytes(b"half a checkp")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)  # rundir imports torch lazily
    with pytest.raises(KeyboardInterrupt):
        rundir.torch_save_atomic({"a": 2}, target)
    assert torch.load(target, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def _write(path, text):
    path.write_text(text)
    return str(path)


BAD = {
    "missing config": (lambda d: ["train", "--config", str(d / "nope.yaml")], "nope.yaml: config file not found"),
    "malformed yaml": (
        lambda d: ["train", "--config", _write(d / "bad.yaml", "data: [1, 2\n  model: {")],
        "bad.yaml: not valid YAML",
    ),
    "not a mapping": (
        lambda d: ["train", "--config", _write(d / "list.yaml", "- 1\n- 2\n")],
        "list.yaml: expected a mapping",
    ),
    "unknown section": (
        lambda d: ["train", "--config", _write(d / "sec.yaml", "optim: {lr: 1}\n")],
        "unknown section 'optim'",
    ),
    "unknown key in file": (
        lambda d: ["train", "--config", _write(d / "key.yaml", "model: {hiden: [3]}\n")],
        "unknown config key 'model.hiden'",
    ),
    "unknown --set key": (lambda d: ["train", "--set", "train.epoch=3"], "unknown config key 'train.epoch'"),
    "unknown --set section": (lambda d: ["train", "--set", "optim.lr=3"], "unknown config key 'optim.lr'"),
    "--set without =": (lambda d: ["train", "--set", "train.epochs"], "expected key.sub=value"),
    "wrong type int": (lambda d: ["train", "--set", "train.epochs=abc"], "train.epochs: expected int"),
    "wrong type bool": (lambda d: ["train", "--set", "train.early_stop=maybe"], "train.early_stop: expected bool"),
    "wrong choice": (
        lambda d: ["train", "--set", "model.delays=dendritic"],
        "model.delays: expected none | axonal | synaptic",
    ),
    "negative dt": (lambda d: ["train", "--set", "data.dt=-1"], "data.dt: expected a positive time step"),
    "delay_max below dt": (
        lambda d: ["train", "--set", "data.dt=2", "--set", "model.delay_max=1"],
        "model.delay_max: expected at least data.dt",
    ),
    "negative epochs": (lambda d: ["train", "--set", "train.epochs=-3"], "train.epochs: expected an integer >= 0"),
    "missing checkpoint": (lambda d: ["eval", "--checkpoint", str(d / "none.pt")], "none.pt: checkpoint not found"),
    "garbage checkpoint": (
        lambda d: ["eval", "--checkpoint", _write(d / "junk.pt", "not a checkpoint")],
        "junk.pt: not a readable spiketime checkpoint",
    ),
    "foreign checkpoint": (
        lambda d: ["eval", "--checkpoint", str(_torch_save(d / "other.pt"))],
        "other.pt: not a spiketime checkpoint",
    ),
    "missing resume dir": (lambda d: ["train", "--resume", str(d / "gone")], "gone: resume directory not found"),
    "resume dir not a run": (lambda d: ["train", "--resume", str(d)], "not a run to resume"),
    "missing data file": (
        lambda d: ["eval", "--checkpoint", str(d / "none.pt"), "--data", "x.npz"],
        "checkpoint not found",
    ),
    "missing sweep file": (lambda d: ["sweep", str(d / "sw.yaml")], "sw.yaml: sweep file not found"),
}


def _torch_save(path):
    torch.save({"weights": torch.zeros(2)}, path)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_args, expected = BAD[case]
    code, out, err = _run_cli(make_args(tmp_path), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spiketime: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "an error left a run directory behind"


def test_argparse_errors_are_one_line_exit_2():
    res = subprocess.run(
        [sys.executable, "-m", "spiketime", "train", "--bogus"], env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "spiketime", "train", "--set", "data.dt=0"], env=ENV, capture_output=True, text=True
    )
    assert (
        res.returncode == 2 and res.stderr.strip() == "spiketime: error: data.dt: expected a positive time step in ms"
    )


@pytest.mark.parametrize("cmd", ["train", "eval", "baseline", "sweep"])
def test_help_lists_options_with_defaults(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and ("default" in out or cmd == "sweep")
