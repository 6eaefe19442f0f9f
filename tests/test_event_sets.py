"""Event datasets as training splits: real-format files on disk -> binned, carved, normalised splits -> training."""

import json

import numpy as np
import pytest
import torch

from spiketime.app.cli.main import main
from spiketime.app.config import ConfigError, DataConfig
from spiketime.app.splits import load_splits, make_split
from spiketime.data.formats import write_shd


def _fake_shd(folder, prefix="shd", n_train=120, n_test=40, classes=4, speakers=6, seed=0):
    """Tiny SHD-layout files: class k fires channels 10k..10k+9 in a burst at (k+1)*50 ms (timing and place)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, spk in (("train", n_train, range(speakers)), ("test", n_test, range(speakers, speakers + 2))):
        times, units, labels, spks = [], [], [], []
        for i in range(n):
            k = int(rng.integers(classes))
            u = rng.integers(0, 700, 30)  # background
            t = rng.uniform(0, 0.45, 30)
            u2 = 10 * k + rng.integers(0, 10, 40)
            t2 = (k + 1) * 0.05 + rng.normal(0, 0.003, 40).clip(-0.04, 0.04)
            tt, uu = np.concatenate([t, t2]), np.concatenate([u, u2])
            o = np.argsort(tt)
            times.append(tt[o])
            units.append(uu[o])
            labels.append(k)
            spks.append(list(spk)[i % len(spk)])
        write_shd(
            folder / f"{prefix}_{split}.h5", times, units, labels, speakers=spks, keys=[f"c{k}" for k in range(classes)]
        )
    return folder


def _cfg(folder, **kw):
    return DataConfig(task="shd", path=str(folder), dt=10.0, duration=500.0, channels=140, **kw)


def test_shd_files_become_binned_splits_with_validation_by_speaker(tmp_path):
    folder = _fake_shd(tmp_path / "shd")
    s = load_splits(_cfg(folder, val_fraction=0.2))
    assert s.num_classes == 20 and s.channels == 140
    assert s.train.x.shape[1:] == (50, 140) and s.train.x.dtype == torch.uint8
    assert len(s.train) + len(s.val) == 120 and len(s.test) == 40
    assert s.train.mask.shape == s.train.x.shape[:2]
    # every sample keeps its 70 spikes (none fall outside 500 ms)
    assert torch.all(s.train.x.sum((1, 2)) == 70)
    # the held-out validation speaker is a whole speaker: 1 of 6 speakers = 20 samples
    assert len(s.val) == 20
    # test split alone equals the test split of the full load
    t = make_split(_cfg(folder, val_fraction=0.2), "test")
    assert torch.equal(t.x, s.test.x) and torch.equal(t.y, s.test.y)


def test_norm_drives_the_count_baseline_to_chance_on_event_files(tmp_path):
    from spiketime.learning.baseline import count_baseline

    folder = _fake_shd(tmp_path / "shd", n_train=400, n_test=200)
    acc = {}
    for level in ("whole", "norm"):
        s = load_splits(_cfg(folder, rate_norm=level))
        acc[level] = count_baseline((s.train.x, s.train.y), (s.val.x, s.val.y), (s.test.x, s.test.y))["test_accuracy"]
    assert acc["whole"] > 0.9 and acc["norm"] <= 0.25 + 0.05


def test_bad_channel_downsampling_names_the_key(tmp_path):
    folder = _fake_shd(tmp_path / "shd")
    with pytest.raises(ConfigError, match="data.channels"):
        load_splits(DataConfig(task="shd", path=str(folder), dt=10.0, duration=500.0, channels=16))


def test_missing_real_dataset_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKETIME_DATA", str(tmp_path / "cache"))
    code = main(["train", "--set", "data.task=shd", "--set", "data.channels=140", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "shd" in err and str(tmp_path / "cache") in err
    assert not (tmp_path / "r").exists()


def test_train_on_shd_format_files(tmp_path, capsys):
    folder = _fake_shd(tmp_path / "shd")
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--set",
            "data.task=shd",
            "--set",
            f"data.path={folder}",
            "--set",
            "data.dt=10",
            "--set",
            "data.duration=500",
            "--set",
            "data.channels=140",
            "--set",
            "model.hidden=[16]",
            "--set",
            "model.delay_max=50",
            "--set",
            "train.epochs=2",
            "--set",
            "train.progress=false",
        ]
    )
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_classes"] == 20 and m["config"]["data"]["task"] == "shd"
    ev = tmp_path / "ev"
    assert main(["eval", "--checkpoint", str(out), "--perturb", "reverse", "--out", str(ev)]) == 0
    assert (ev / "perturb_reverse.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["speech_digits", "event_digits"])
def test_count_baseline_on_norm_is_at_chance_on_the_builtin_sets(task, tmp_path):
    """The honesty test of rate normalisation on both built-in sets (small versions made here; the full-size
    figures are the count-baseline column of docs/data.md)."""
    from spiketime.data.event_digits import make_event_digits
    from spiketime.data.speech_digits import make_speech_digits
    from spiketime.learning.baseline import count_baseline

    root = tmp_path / task
    if task == "speech_digits":
        make_speech_digits(root, size=800, progress=False)
        kw = dict(dt=10.0, duration=1000.0, channels=140, val_fraction=0.2)
    else:
        make_event_digits(root, limit=400, repeats=2, progress=False)
        kw = dict(dt=5.0, duration=300.0, pool=2, val_fraction=0.2)
    acc = {}
    for level in ("whole", "norm"):
        s = load_splits(DataConfig(task=task, path=str(root), rate_norm=level, **kw))
        acc[level] = count_baseline((s.train.x, s.train.y), (s.val.x, s.val.y), (s.test.x, s.test.y))["test_accuracy"]
        chance = 1 / s.num_classes
    assert acc["whole"] > chance + 0.3  # counts are informative before normalisation
    assert acc["norm"] <= chance + 0.05
