"""Faults a user meets in practice (issue 16): checkpoints that would run code, reused run directories, OS and
device faults, non-finite numbers, and the CLI boundary that turns every failure into one line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from spiketime.app import fit as trainer
from spiketime.app.cli.main import main
from spiketime.app.rundir import check_out_dir
from spiketime.files import atomic_write_text, write_json

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spiketime: error: "), lines[0]
    assert "Traceback" not in err
    for s in needles:
        assert s in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run(tmp_path_factory, tiny_sets) -> Path:
    """One finished tiny run (1 epoch), shared read-only by the tests of this module that copy it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *tiny_sets, "--set", "train.epochs=1"]) == 0
    return out


class _Payload:
    """Unpickling this object creates the file ``path`` (what a malicious shared checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ------------------------------------------------------------------ 1. checkpoints cannot execute code


@pytest.mark.parametrize("command", ["eval", "export", "resume"])
def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(command, run, tmp_path, capsys):
    import shutil

    victim = tmp_path / "victim"
    shutil.copytree(run, victim)
    marker = tmp_path / "PAYLOAD_RAN"
    for name in ("best.pt", "checkpoint.pt"):
        ckpt = torch.load(victim / name, weights_only=True)
        ckpt["extra"] = _Payload(marker)
        torch.save(ckpt, victim / name)
    # the payload is real: an unsafe load runs it
    torch.load(victim / "best.pt", weights_only=False)
    assert marker.is_file()
    marker.unlink()
    args = {
        "eval": ["eval", "--checkpoint", victim / "best.pt", "--out", tmp_path / "ev"],
        "export": ["export", victim, "--nir", tmp_path / "m.nir"],
        "resume": ["train", "--resume", victim],
    }[command]
    code, _, err = _cli(args, capsys)
    assert code == 2
    _one_line(err, "refused", "could run code")
    assert not marker.exists()
    assert not (tmp_path / "ev").exists() and not (tmp_path / "m.nir").exists()


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    from spiketime.app.config import ConfigError

    marker = tmp_path / "ran"
    torch.save({"config": {}, "model": {}, "n_in": 1, "n_out": 2, "x": _Payload(marker)}, tmp_path / "c.pt")
    with pytest.raises(ConfigError, match="c.pt: refused"):
        trainer.load_checkpoint(tmp_path / "c.pt")
    assert not marker.exists()


# ------------------------------------------------------------------ 2. a run directory is never silently reused


def test_existing_run_is_refused_and_overwrite_starts_clean(tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    assert _cli(["train", "--out", out, *tiny_sets], capsys)[0] == 0
    trained = json.loads((out / "metrics.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = _cli(["train", "--out", out, *tiny_sets, "--set", "train.epochs=0"], capsys)
    assert code == 2
    _one_line(err, f"{out} holds a run: use --resume {out}, or --overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    # --overwrite with 0 epochs reports the untrained model, as a fresh directory does (not the old best.pt)
    code, stdout, _ = _cli(["train", "--out", out, *tiny_sets, "--set", "train.epochs=0", "--overwrite"], capsys)
    fresh = tmp_path / "fresh"
    assert _cli(["train", "--out", fresh, *tiny_sets, "--set", "train.epochs=0"], capsys)[0] == 0
    m, f = (json.loads((d / "metrics.json").read_text()) for d in (out, fresh))
    assert code == 0 and m["epochs"] == 0 and not (out / "best.pt").exists()
    assert m["test_accuracy"] == f["test_accuracy"] and m["history"] == []
    assert trained["epochs"] == 3
    # another model in the same folder: refused too, then --overwrite trains it (no load_state_dict crash)
    code, _, err = _cli(["train", "--out", out, *tiny_sets, "--set", "model.hidden=[12]"], capsys)
    assert code == 2 and "holds a run" in err
    code, _, _ = _cli(["train", "--out", out, *tiny_sets, "--set", "model.hidden=[12]", "--overwrite"], capsys)
    assert code == 0 and yaml.safe_load((out / "config.yaml").read_text())["model"]["hidden"] == [12]


def test_overwrite_keeps_files_that_are_not_the_runs(tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    assert _cli(["train", "--out", out, *tiny_sets, "--set", "train.epochs=1"], capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    assert _cli(["train", "--out", out, *tiny_sets, "--set", "train.epochs=1", "--overwrite"], capsys)[0] == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_with_another_model_says_what_differs(run, tmp_path, capsys):
    import shutil

    d = tmp_path / "edited"
    shutil.copytree(run, d)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["model"]["hidden"] = [16]
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _cli(["train", "--resume", d], capsys)
    assert code == 2
    _one_line(err, "checkpoint.pt: holds another model", "model.hidden: [8] vs [16]")
    # a checkpoint of another model type put in place of the run's own
    g = tmp_path / "gamma"
    sets = [
        "--set",
        "model.type=gamma",
        "--set",
        "data.channels=6",
        "--set",
        "data.num_classes=3",
        "--set",
        "data.duration=40",
        "--set",
        "data.n_train=20",
        "--set",
        "data.n_val=10",
        "--set",
        "data.n_test=10",
        "--set",
        "model.hidden=[8]",
        "--set",
        "train.epochs=1",
        "--quiet",
    ]
    assert _cli(["train", "--out", g, *sets], capsys)[0] == 0
    d2 = tmp_path / "swapped"
    shutil.copytree(run, d2)
    shutil.copy(g / "checkpoint.pt", d2 / "checkpoint.pt")
    code, _, err = _cli(["train", "--resume", d2], capsys)
    assert code == 2
    _one_line(err, "holds another model", "model.type: 'gamma' vs 'lif'")


def test_state_that_does_not_fit_names_the_tensor(run, tmp_path):
    from spiketime.app.config import ConfigError

    ckpt = trainer.load_checkpoint(run)
    key = next(k for k in ckpt["model"] if k.endswith("weight"))
    ckpt["model"][key] = torch.zeros(3, 3)
    with pytest.raises(ConfigError) as e:
        trainer.model_from_checkpoint(ckpt, source="x.pt")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("x.pt: does not fit the model") and key in msg and "[3, 3]" in msg


def test_run_name_cannot_leave_the_runs_folder(tmp_path, tiny_sets, capsys, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for bad in ("../../x", "../x", "/abs", "a/b", ".hidden", ".."):
        code, _, err = _cli(["train", *tiny_sets, "--set", f"name={bad}"], capsys)
        assert code == 2, bad
        _one_line(err, "name: expected")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]  # nothing written anywhere
    code, stdout, _ = _cli(["train", *tiny_sets, "--set", "name=ok-name_1.2", "--set", "train.epochs=1"], capsys)
    assert code == 0 and len(list((work / "runs").glob("*-ok-name_1.2"))) == 1


def test_stale_tmp_files_are_removed_on_the_next_start(run, tmp_path, capsys):
    import shutil

    d = tmp_path / "killed"
    shutil.copytree(run, d)
    for name in (".checkpoint.pt.abc123.tmp", ".metrics.json.x.tmp"):
        (d / name).write_bytes(b"torn")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2  # one more epoch to resume
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _cli(["train", "--resume", d], capsys)[0] == 0
    assert not list(d.glob("*.tmp"))


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_follow_the_umask(mask, mode, tmp_path, tiny_sets, capsys):
    old = os.umask(mask)
    try:
        assert _cli(["train", "--out", tmp_path / "r", *tiny_sets, "--set", "train.epochs=1"], capsys)[0] == 0
        atomic_write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").iterdir()] + [tmp_path / "plain.txt"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}, [(p.name, oct(p.stat().st_mode)) for p in files]


# ------------------------------------------------------------------ 3. one line for every OS and device fault


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "device,needle",
    [
        ("cuda", "'cuda' requested, but this torch build has no CUDA"),
        ("cuda:1", "'cuda:1' requested"),
        ("foo", "train.device: expected cpu, cuda or cuda:N, got 'foo'"),
    ],
)
def test_unavailable_device_is_one_line_and_leaves_no_directory(device, needle, tmp_path, tiny_sets, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(["train", "--out", out, *tiny_sets, "--set", f"train.device={device}"], capsys)
    assert code == 2
    _one_line(err, needle)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_readme_bf16_cuda_command_on_a_cpu_machine(tmp_path, tiny_sets, capsys):
    code, _, err = _cli(
        ["train", "--out", tmp_path / "r", *tiny_sets, "--set", "train.precision=bf16", "--set", "train.device=cuda"],
        capsys,
    )
    assert code == 2
    _one_line(err, "train.device")
    code, _, err = _cli(["bench", "--device", "cuda", "--T", "10", "--peers", "none"], capsys)
    assert code == 2
    _one_line(err, "--device: 'cuda' requested")


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write: a read-only one for a normal user, /proc/sys (read-only for root)."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        return d / "out"
    if not Path("/proc/sys").is_dir() or os.access("/proc/sys", os.W_OK):
        pytest.skip("no folder that root cannot write")
    return Path("/proc/sys/spiketime-test-out")


def _out_cases(tmp_path: Path, run: Path) -> dict[str, Path]:
    f = tmp_path / "a_file"
    f.write_text("x")
    return {"is a file": f, "under a file": f / "sub", "not writable": _unwritable(tmp_path)}


@pytest.mark.parametrize("command", ["train", "eval", "export", "baseline"])
@pytest.mark.parametrize("case", ["is a file", "under a file", "not writable"])
def test_bad_out_is_one_line_before_any_work(command, case, run, tmp_path, tiny_sets, capsys, monkeypatch):
    out = _out_cases(tmp_path, run)[case]
    expected = {"is a file": "is a file", "under a file": "a_file is a file", "not writable": "cannot write"}[case]
    monkeypatch.setattr(trainer, "train_epoch", lambda *a, **k: pytest.fail("training started"))
    args = {
        "train": ["train", "--out", out, *tiny_sets],
        "eval": ["eval", "--checkpoint", run, "--out", out],
        "export": ["export", run, "--nir", out / "m.nir" if case == "not writable" else out],
        "baseline": ["baseline", *tiny_sets, "--out", out],
    }[command]
    if command == "export" and case == "is a file":
        args = ["export", run, "--nir", out / "m.nir"]
    code, _, err = _cli(args, capsys)
    assert code == 2
    _one_line(err, str(out) if command != "export" else "--nir")
    if command != "export":
        assert expected in err
    assert not (tmp_path / "a_file").is_dir()


def test_resume_into_unwritable_or_file(run, tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    code, _, err = _cli(["train", "--resume", f], capsys)
    assert code == 2
    _one_line(err, "--resume", "is a file")


def test_audio_to_spikes_checks_out_before_encoding(tmp_path, capsys, monkeypatch):
    from spiketime.data import speech_digits

    wavs = tmp_path / "wav"
    wavs.mkdir()
    (tmp_path / "labels.csv").write_text("file,label\n")
    monkeypatch.setattr(speech_digits, "_run", lambda *a, **k: pytest.fail("encoding started"))
    existing = tmp_path / "existing"
    existing.mkdir()
    code, _, err = _cli(
        ["data", "audio-to-spikes", wavs, "--labels", tmp_path / "labels.csv", "--out", existing], capsys
    )
    assert code == 2
    _one_line(err, str(existing), "is a directory")
    with pytest.raises(Exception, match="is a directory"):  # the library checks first too
        speech_digits.audio_to_spikes(wavs, tmp_path / "labels.csv", existing)


def test_audio_to_spikes_says_how_many_wavs_are_skipped(tmp_path, capsys):
    pytest.importorskip("scipy")
    import wave

    import h5py
    import numpy as np

    wavs = tmp_path / "wav"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav", "c.wav"):
        with wave.open(str(wavs / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((3000 * rng.standard_normal(4000)).astype("<i2").tobytes())
    (tmp_path / "labels.csv").write_text("file,label\na.wav,1\n")
    code, out, err = _cli(
        [
            "data",
            "audio-to-spikes",
            wavs,
            "--labels",
            tmp_path / "labels.csv",
            "--out",
            tmp_path / "o.h5",
            "--jobs",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert "2 WAV file(s)" in err and "skipped" in err and "b.wav" in err
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["labels"][:].tolist() == [1]


@pytest.mark.parametrize(
    "args",
    [
        ["data", "speech-digits", "--jobs", "-3"],
        ["data", "event-digits", "--jobs", "0"],
        ["sweep", "x.yaml", "--jobs", "-1"],
    ],
)
def test_jobs_must_be_positive(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--jobs" in err and "integer >= 1" in err


def test_data_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    for cmd in ("speech-digits", "event-digits"):
        code, _, err = _cli(["data", cmd, "--out", f], capsys)
        assert code == 2
        _one_line(err, "is a file")


def test_unexpected_error_is_one_line_with_traceback_in_the_run_directory(tmp_path, tiny_sets, capsys, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(trainer, "train_epoch", broken)
    out = tmp_path / "run"
    code, _, err = _cli(["train", "--out", out, *tiny_sets], capsys)
    assert code == 1
    line = _one_line(err, "RuntimeError: kernel exploded", f"traceback in {out / 'error.txt'}")
    assert "second line" not in line
    log = (out / "error.txt").read_text()
    assert "Traceback" in log and "broken" in log and "kernel exploded" in log


def test_unexpected_error_without_an_output_folder_logs_to_a_temp_file(tmp_path, capsys, monkeypatch):
    from spiketime.data import formats

    monkeypatch.setattr(formats, "inspect", lambda p: 1 / 0)
    code, _, err = _cli(["data", "inspect", tmp_path], capsys)
    assert code == 1
    line = _one_line(err, "ZeroDivisionError", "traceback in ")
    log = Path(line.split("traceback in ")[1].rstrip(")"))
    assert "ZeroDivisionError" in log.read_text()
    log.unlink()


def test_disk_full_while_writing_a_checkpoint_is_one_line_exit_2(tmp_path, tiny_sets, capsys, monkeypatch):
    import errno

    def full(obj, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(trainer, "torch_save_atomic", full)
    code, _, err = _cli(["train", "--out", tmp_path / "r", *tiny_sets], capsys)
    assert code == 2
    line = _one_line(err, "best.pt: No space left on device", "error.txt")
    log = Path(line.split("traceback in ")[1].rstrip(")"))
    assert log == tmp_path / "r" / "error.txt" and "No space left on device" in log.read_text()  # it exists


def test_bad_input_after_the_folder_was_made_leaves_no_directory(tmp_path, tiny_sets, capsys, monkeypatch):
    from spiketime.app.config import ConfigError

    def bad(*a, **k):
        raise ConfigError("data.path: something the data loader found")

    out = tmp_path / "new"
    monkeypatch.setattr(trainer, "build_optimizer", bad)
    code, _, err = _cli(["train", "--out", out, *tiny_sets], capsys)
    assert code == 2 and not out.exists()


# ------------------------------------------------------------------ 4. numbers that are numbers


@pytest.mark.parametrize(
    "item",
    [
        "train.lr=.inf",
        "model.tau_mem=.inf",
        "train.lr=nan",
        "model.tau_syn=-.inf",
        "train.grad_clip=.nan",
        "data.dt=inf",
    ],
)
def test_non_finite_values_are_refused(item, tmp_path, capsys):
    code, _, err = _cli(["train", "--out", tmp_path / "r", "--set", item], capsys)
    assert code == 2
    _one_line(err, item.split("=")[0], "expected a finite number")
    assert not (tmp_path / "r").exists()


def test_non_finite_value_in_a_config_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  lr: .inf\n")
    code, _, err = _cli(["train", "--config", tmp_path / "c.yaml"], capsys)
    assert code == 2
    _one_line(err, "train.lr: expected a finite number")


def test_metrics_json_is_always_valid_json(tmp_path):
    write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}}
    assert "NaN" not in text and "Infinity" not in text


# ------------------------------------------------------------------ 6. threads


def test_threads_are_set_and_recorded(tmp_path, tiny_sets, capsys):
    before = torch.get_num_threads()
    try:
        code, _, _ = _cli(
            ["train", "--out", tmp_path / "r", *tiny_sets, "--set", "train.threads=1", "--set", "train.epochs=1"],
            capsys,
        )
        assert code == 0
        m = json.loads((tmp_path / "r" / "metrics.json").read_text())
        assert m["threads"] == 1 and m["config"]["train"]["threads"] == 1
    finally:
        torch.set_num_threads(before)
    code, _, err = _cli(["train", "--set", "train.threads=0"], capsys)
    assert code == 2 and "train.threads" in err


# ------------------------------------------------------------------ 7. --help


def test_help_is_quick_and_says_each_default_once():
    code = (
        "import sys\nfrom spiketime.app.cli.main import main\n"
        "for cmd in ([], ['train'], ['eval'], ['baseline'], ['data'], ['data', 'speech-digits'], ['sweep'],"
        " ['export']):\n"
        "    try:\n        main([*cmd, '--help'])\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, 'torch imported for --help'\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    assert "--overwrite" in res.stdout and "(default: 0)" in res.stdout
    for line in res.stdout.splitlines():
        assert line.count("default") <= 1, line
        assert "(default: None)" not in line and "(default: [])" not in line, line


def test_check_out_dir_leaves_nothing_behind(tmp_path):
    check_out_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
