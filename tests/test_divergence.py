"""A training loss that becomes nan or inf stops every learner at that batch (issue 16), before the optimiser
steps with its gradient; the last checkpoint stays the previous epoch's."""

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from spiketime.app import config
from spiketime.app import fit as trainer
from spiketime.errors import TrainingDiverged

LEARNERS = {
    "bptt": [],
    "online": ["train.learner=online", "train.loss=per_step"],
    "gamma_online": ["model.type=gamma", "model.delays=none", "train.learner=gamma_online", "train.loss=per_step"],
}


def _poison(monkeypatch: pytest.MonkeyPatch, epoch: int, batch: int) -> list[int]:
    """Make the training loss nan in 1-based ``epoch``, ``batch`` (every learner's loss goes through
    ``F.cross_entropy`` and every learner's batches through ``trainer.batches``); returns a list that counts the
    optimiser steps taken with a parameter gradient that is not finite."""
    where = {"epoch": 0, "batch": 0}
    batches, cross_entropy, step = trainer.batches, F.cross_entropy, torch.optim.Adam.step
    bad_steps: list[int] = []

    def counted(n, batch_size, generator=None):
        where["epoch"] += 1
        for where["batch"], idx in enumerate(batches(n, batch_size, generator), 1):
            yield idx
        where["batch"] = 0  # validation and test passes are not training batches

    def poisoned(*args, **kwargs):
        out = cross_entropy(*args, **kwargs)
        return out * math.nan if (where["epoch"], where["batch"]) == (epoch, batch) else out

    def checked_step(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if any(not torch.isfinite(gr).all() for gr in grads):
            bad_steps.append(where["batch"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(trainer, "batches", counted)
    monkeypatch.setattr(F, "cross_entropy", poisoned)
    monkeypatch.setattr(torch.optim.Adam, "step", checked_step)
    return bad_steps


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_nan_loss_stops_training_at_that_batch(learner, tmp_path, monkeypatch):
    cfg = config.load(None, [*TINY, *LEARNERS[learner]])  # 60 samples in batches of 16: 4 batches per epoch
    bad_steps = _poison(monkeypatch, epoch=2, batch=3)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        trainer.fit(cfg, out, command="test")
    err = e.value
    assert (err.epoch, err.batch, err.batches) == (2, 3, 4) and math.isnan(err.value)
    assert str(err) == "training loss became nan in epoch 2, batch 3 of 4; lower train.lr"
    assert isinstance(err, FloatingPointError) and bad_steps == []  # never stepped with a nan gradient
    ckpt = torch.load(out / trainer.CHECKPOINT, weights_only=True)
    assert ckpt["state"]["epoch"] == 1 and len(ckpt["state"]["history"]) == 1  # epoch 1's, untouched
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert not (out / trainer.METRICS).exists()


def test_a_nan_loss_in_the_first_batch_writes_no_checkpoint(tmp_path, monkeypatch):
    _poison(monkeypatch, epoch=1, batch=1)
    with pytest.raises(TrainingDiverged) as e:
        trainer.fit(config.load(None, TINY), tmp_path / "run", command="test")
    assert (e.value.epoch, e.value.batch) == (1, 1)
    assert not (tmp_path / "run" / trainer.CHECKPOINT).exists()


def test_a_huge_learning_rate_diverges_in_its_batch():
    """Real divergence (no patching): gamma_online at lr 1e30 without clipping; the error names the batch."""
    cfg = config.load(None, [*TINY, *LEARNERS["gamma_online"], "train.lr=1e30", "train.grad_clip=null"])
    from spiketime.app.splits import load_splits

    splits = load_splits(cfg.data, progress=False)
    model = trainer.build_model(cfg, splits.channels, splits.num_classes)
    opt = trainer.build_optimizer(model, cfg)
    with pytest.raises(TrainingDiverged) as e:
        for epoch in range(cfg.train.epochs):
            trainer.train_epoch(model, opt, splits.train, cfg, epoch)
    assert e.value.batch is not None and 1 <= e.value.batch <= e.value.batches == 4
    assert not math.isfinite(e.value.value)


def test_epoch_mean_loss_is_still_the_last_check():
    with pytest.raises(TrainingDiverged, match=r"^training loss became inf in epoch 3; lower the learning rate$") as e:
        trainer.epoch_mean_loss(math.inf, 10, 2)
    assert (e.value.epoch, e.value.batch) == (3, None)
    assert trainer.epoch_mean_loss(5.0, 10, 0) == 0.5


def test_the_error_pickles_with_its_attributes():
    err = pickle.loads(pickle.dumps(TrainingDiverged(math.inf, 2, 3, 10)))
    assert (err.value, err.epoch, err.batch, err.batches) == (math.inf, 2, 3, 10)
    assert str(err) == "training loss became inf in epoch 2, batch 3 of 10; lower the learning rate"


def test_the_cli_says_where_the_last_good_epoch_is(tmp_path, monkeypatch, capsys):
    """``spiketime train`` turns the divergence into one line (exit 1) that names the batch and the checkpoint of
    the last finished epoch; metrics.json is not written."""
    from spiketime.app.cli.main import main

    _poison(monkeypatch, epoch=2, batch=3)
    out = tmp_path / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["train", "--out", str(out), *sets]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("spiketime: error: training loss became nan in epoch 2, batch 3 of 4")
    assert f"the last good epoch (1) is in {out / 'checkpoint.pt'}" in err[0]
    assert not (out / "metrics.json").exists() and (out / "best.pt").is_file()
