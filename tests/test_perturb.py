"""Perturbations at evaluation: identity at level 0, what each keeps and what it changes, the eval CLI sweep."""

import csv
import json

import pytest
import torch

from spiketime.app.cli.main import main
from spiketime.evaluate.perturb import check_level, perturb


def _spikes(seed=0, b=8, t=200, c=10, p=0.05):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, c, generator=g) < p).float()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["jitter", "neuron_jitter", "delete", "reverse"])
def test_level_zero_is_identity(kind):
    x = _spikes()
    assert torch.equal(perturb(x, kind, 0, 1.0, _gen()), x)


def test_jitter_moves_spikes_by_about_sigma_and_keeps_counts_inside():
    x = torch.zeros(1, 1000, 1)
    x[0, 500, 0] = 200.0  # 200 spikes in one bin
    y = perturb(x, "jitter", 5.0, 1.0, _gen())
    t = torch.arange(1000.0)
    w = y[0, :, 0]
    assert w.sum() == 200
    mean = (w * t).sum() / w.sum()
    sd = ((w * (t - mean) ** 2).sum() / w.sum()).sqrt()
    assert abs(mean - 500.5) < 1.5 and 4.0 < sd < 6.0  # uniform position in bin + N(0, 5^2)


def test_jitter_is_in_ms_not_bins():
    x = torch.zeros(1, 1000, 1)
    x[0, 500, 0] = 200.0
    y = perturb(x, "jitter", 10.0, 2.0, _gen())  # 10 ms at dt = 2 ms is 5 bins
    t = torch.arange(1000.0)
    w = y[0, :, 0]
    sd = ((w * (t - (w * t).sum() / w.sum()) ** 2).sum() / w.sum()).sqrt()
    assert 4.0 < sd < 6.0


def test_neuron_jitter_keeps_intervals_within_a_channel():
    x = torch.zeros(50, 300, 1)
    x[:, 100, 0] = 1
    x[:, 130, 0] = 1  # an interval of 30 bins
    y = perturb(x, "neuron_jitter", 20.0, 1.0, _gen())
    diffs, moved = [], 0
    for b in range(50):
        ts = y[b, :, 0].nonzero().flatten()
        if len(ts) == 2:
            diffs.append(int(ts[1] - ts[0]))
            moved += int(ts[0] != 100)
    assert all(d in (29, 30, 31) for d in diffs) and moved > 25
    z = perturb(x, "jitter", 20.0, 1.0, _gen())  # per-spike jitter destroys the interval
    zd = [int(z[b, :, 0].nonzero().flatten().diff()[0]) for b in range(50) if z[b, :, 0].sum() == 2]
    assert sum(d not in (29, 30, 31) for d in zd) > 35


def test_delete_removes_the_expected_fraction():
    x = _spikes(p=0.2, b=20)
    y = perturb(x, "delete", 0.3, 1.0, _gen())
    assert (y <= x).all()
    assert abs(float(y.sum() / x.sum()) - 0.7) < 0.03


def test_reverse_flips_within_the_valid_length():
    x = torch.zeros(2, 10, 1)
    x[0, 1, 0] = 1
    x[1, 1, 0] = 1
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :10] = True
    mask[1, :4] = True  # sample 1 lasts 4 bins, then padding
    y = perturb(x, "reverse", 1, 1.0, _gen(), mask)
    assert y[0, 8, 0] == 1 and y[1, 2, 0] == 1 and y.sum() == 2
    assert torch.equal(perturb(y, "reverse", 1, 1.0, _gen(), mask), x)


def test_bad_levels_are_rejected():
    for kind, level in (("delete", 1.5), ("jitter", -1), ("reverse", 0.5), ("shuffle", 1)):
        with pytest.raises(ValueError):
            check_level(kind, level)


def test_eval_cli_writes_one_curve_per_checkpoint(tmp_path, tiny_sets, capsys):
    runs = []
    for delays in ("none", "axonal"):
        out = tmp_path / delays
        assert main(["train", "--out", str(out), *tiny_sets, "--set", f"model.delays={delays}"]) == 0
        runs.append(str(out))
    capsys.readouterr()
    ev = tmp_path / "ev"
    code = main(["eval", "--checkpoint", *runs, "--perturb", "jitter", "--levels", "0,2,10", "--out", str(ev)])
    assert code == 0
    rows = list(csv.DictReader(open(ev / "perturb_jitter.csv")))
    assert [(r["label"], float(r["level"])) for r in rows] == [(l, v) for l in ("none", "axonal") for v in (0, 2, 10)]
    assert (ev / "perturb_jitter.png").stat().st_size > 1000
    m = json.loads((ev / "metrics.json").read_text())
    # level 0 reproduces the unperturbed test accuracy of each run
    for r, run in zip(m["results"], runs):
        assert r["accuracies"][0] == json.loads(open(f"{run}/metrics.json").read())["test_accuracy"]


def test_eval_cli_rejects_bad_levels(tmp_path, tiny_sets, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), *tiny_sets, "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--perturb", "delete", "--levels", "0,2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--levels" in err and "delete" in err
    assert main(["eval", "--checkpoint", str(out), "--levels", "0,1"]) == 2
    assert "--perturb" in capsys.readouterr().err
