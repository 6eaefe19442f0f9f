"""Progress on stderr (issue 16, "no silent minutes"): batch-level bars inside every learner's epochs, the
validation and test passes, eval, data generation; ``--quiet`` prints nothing on stderr."""

import re

import pytest
from tqdm import tqdm

from spiketime.app.cli.main import main

LEARNERS = {
    "bptt": [],
    "online": ["train.learner=online", "train.loss=per_step"],
    "gamma_online": ["model.type=gamma", "model.delays=none", "train.learner=gamma_online", "train.loss=per_step"],
}


class _Eager(tqdm):
    """A tqdm bar that draws every update (the default redraws at most every 0.1 s)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("mininterval", 0)
        super().__init__(*args, **kwargs)


@pytest.fixture
def eager(monkeypatch):
    """Bars draw every update and every time step inside a batch."""
    monkeypatch.setattr("spiketime.progress.tqdm", _Eager)
    monkeypatch.setattr("spiketime.progress.REFRESH_S", 0.0)


def _sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def _train(tmp_path, tiny_sets, capsys, learner: str, *extra: str) -> str:
    """A one-epoch tiny run of ``learner`` with progress on; its stderr."""
    capsys.readouterr()
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / learner),
            *tiny_sets,
            *_sets([*LEARNERS[learner], "train.epochs=1", "train.progress=true"]),
            *extra,
        ]
    )
    assert code == 0
    return capsys.readouterr().err


@pytest.mark.parametrize("learner", LEARNERS)
def test_training_shows_batches_inside_the_epoch(learner, tmp_path, tiny_sets, capsys, eager):
    err = _train(tmp_path, tiny_sets, capsys, learner)
    # 60 training samples in batches of 16: the inner bar counts 4 batches, with a running loss
    assert re.search(r"train: .*\b3/4 \[.*batch/s, loss=\d", err), err
    assert "validation" in err and "test split" in err and "writing plots" in err
    assert "run: 100%" in err and "1/1" in err  # the epoch bar stays
    if learner != "bptt":  # one sequence is learnt step by step: the bar moves inside it
        assert re.search(r"step \d+/40", err), err


@pytest.mark.parametrize("learner", LEARNERS)
def test_quiet_training_prints_nothing_on_stderr(learner, tmp_path, tiny_sets, capsys):
    assert _train(tmp_path, tiny_sets, capsys, learner, "--quiet") == ""


def test_progress_false_prints_nothing_on_stderr(tmp_path, tiny_sets, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), *tiny_sets, "--set", "train.epochs=1"]) == 0
    assert capsys.readouterr().err == ""  # TINY sets train.progress=false


@pytest.fixture
def run_dir(tmp_path, tiny_sets, capsys):
    """A finished tiny run (quiet)."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *tiny_sets, "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    return out


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], r"run: .*1/1 \[.*batch"),
        (["--perturb", "delete", "--levels", "0,0.5"], r"delete: .*2/2 \[.*level"),
        (["--frames", "20,40"], r"frames: .*2/2 \[.*resolution"),
        (["--hardware", "int8"], r"deployed: .*1/1 \[.*batch"),
    ],
    ids=["plain", "perturb", "frames", "hardware"],
)
def test_eval_shows_progress_unless_quiet(args, needle, run_dir, tmp_path, capsys, eager):
    assert main(["eval", "--checkpoint", str(run_dir), *args, "--out", str(tmp_path / "ev")]) == 0
    out, err = capsys.readouterr()
    assert re.search(needle, err), err
    assert "test_accuracy" in out or "delete" in out
    assert main(["eval", "--checkpoint", str(run_dir), *args, "--out", str(tmp_path / "ev2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_eval_over_several_checkpoints_has_an_outer_bar(run_dir, tmp_path, capsys, eager):
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run_dir / "best.pt"),
                str(run_dir / "checkpoint.pt"),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    assert re.search(r"checkpoints: .*2/2 \[.*checkpoint", capsys.readouterr().err)


def test_baseline_quiet(tiny_sets, tmp_path, capsys):
    assert main(["baseline", *tiny_sets, "--out", str(tmp_path / "bl"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "test_accuracy=" in out


def test_data_generation_shows_a_bar_unless_quiet(tmp_path, capsys, eager):
    pytest.importorskip("espeakng_loader")
    pytest.importorskip("scipy")
    assert main(["data", "speech-digits", "--size", "tiny", "--out", str(tmp_path / "a"), "--jobs", "1"]) == 0
    assert re.search(r"speech digits: .*40/40 \[.*sample", capsys.readouterr().err)
    assert (
        main(["data", "speech-digits", "--size", "tiny", "--out", str(tmp_path / "b"), "--jobs", "1", "--quiet"]) == 0
    )
    assert capsys.readouterr().err == ""


def test_quiet_training_silences_the_generation_of_a_built_in_set(tmp_path, monkeypatch, capsys):
    """The spoken digits are made on first use inside ``train``: its bar follows train.progress / --quiet."""
    import spiketime.data.speech_digits as sd

    seen = []

    def fake(out_dir, **kw):
        seen.append(kw.get("progress", True))
        raise KeyboardInterrupt  # stop right there

    monkeypatch.setenv("SPIKETIME_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(sd, "make_speech_digits", fake)
    for flags in (["--quiet"], []):
        assert main(["train", "--set", "data.task=speech_digits", "--out", str(tmp_path / "r"), *flags]) == 130
    assert seen == [False, True]


def test_first_kernel_build_is_announced(tmp_path, monkeypatch, capsys):
    from spiketime.kernels import cpu

    if cpu.library() is None:
        pytest.skip("no C compiler")
    try:
        for cache, progress, said in [("a", False, False), ("a", True, False), ("b", True, True)]:
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))  # a: built by the first call; b: fresh
            cpu.library.cache_clear()
            cpu.prepare(progress=progress)
            assert ("compiling the CPU kernels" in capsys.readouterr().err) == said
            cpu.prepare(progress=True)  # loaded: nothing more to say
            assert capsys.readouterr().err == ""
    finally:
        monkeypatch.undo()
        cpu.library.cache_clear()
        cpu.library()
