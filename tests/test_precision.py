"""Mixed-precision training (train.precision: bf16 / fp16 under torch.autocast; fp16 with a GradScaler)."""

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import interrupt_after_first_checkpoint, one_line
from spiketime.app import config
from spiketime.app import fit as trainer
from spiketime.app.config import ConfigError
from spiketime.learning.bptt import autocast
from spiketime.learning.losses import readout_loss
from spiketime.surrogate import FastSigmoid, spike

# a tiny timing-only CCISI task that fp32 learns above chance (1/3) in a few epochs
TINY = [
    "data.channels=6",
    "data.num_classes=3",
    "data.duration=40",
    "data.noise=0",
    "data.n_train=120",
    "data.n_val=60",
    "data.n_test=30",
    "model.hidden=[16]",
    "model.delay_max=8",
    "train.epochs=4",
    "train.batch_size=16",
    "train.lr=0.05",
    "train.early_stop=false",
    "train.progress=false",
]
ACC_TOL = 0.15  # |val accuracy - fp32's| after 4 epochs, on 60 validation samples (9 samples)


def _fit(out: Path, precision: str, extra: list[str] = ()) -> dict:
    cfg = config.load(None, [*TINY, f"train.precision={precision}", *extra])
    return trainer.fit(cfg, out, command="test")


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory) -> dict:
    """metrics of the fp32 run, plus ``out``: its run directory."""
    out = tmp_path_factory.mktemp("fp32") / "run"
    return {**_fit(out, "fp32"), "out": out}


def test_bad_precision_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        config.load(None, ["train.precision=fp8"])
    one_line(e, "train.precision", "fp32 | bf16 | fp16", "fp8")
    cfg = config.Config()
    cfg.train.precision = "half"  # set in code, past the type check: validate still names the key
    with pytest.raises(ConfigError) as e:
        config.validate(cfg)
    one_line(e, "train.precision")
    assert config.Config().train.precision == "fp32"


def test_fp32_checkpoint_has_no_scaler(fp32_run):
    assert fp32_run["config"]["train"]["precision"] == "fp32"
    assert torch.load(fp32_run["out"] / trainer.CHECKPOINT, weights_only=True)["scaler"] is None


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_trains_like_fp32(tmp_path, precision, fp32_run):
    m = _fit(tmp_path / "run", precision)
    losses = [h["train_loss"] for h in m["history"]]
    assert all(math.isfinite(v) for v in losses + [h["val_loss"] for h in m["history"]])
    assert losses[-1] < losses[0] - 0.1, losses  # it learns
    assert m["config"]["train"]["precision"] == precision  # recorded in metrics.json via the config
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["train"]["precision"] == precision
    acc32 = fp32_run["history"][-1]["val_accuracy"]
    assert abs(m["history"][-1]["val_accuracy"] - acc32) <= ACC_TOL, (m["history"][-1]["val_accuracy"], acc32)
    assert acc32 > 0.45  # fp32 itself is well above chance (1/3): the comparison means something
    ckpt = torch.load(tmp_path / "run" / trainer.CHECKPOINT, weights_only=True)
    if precision == "fp16":  # loss scaling is on and its state is checkpointed
        assert set(ckpt["scaler"]) >= {"scale", "_growth_tracker"} and ckpt["scaler"]["scale"] > 1
        assert ckpt["scaler"]["_growth_tracker"] > 0  # steps were taken through the scaler
    else:
        assert ckpt["scaler"] is None


def test_fp16_resume_restores_the_scaler_exactly(tmp_path, monkeypatch):
    extra = ["train.epochs=3", "data.n_train=64"]
    full = _fit(tmp_path / "full", "fp16", extra)
    interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", "fp16", extra)
    monkeypatch.undo()
    assert torch.load(tmp_path / "cut" / trainer.CHECKPOINT, weights_only=True)["state"]["epoch"] == 1
    cfg = config.load(tmp_path / "cut" / "config.yaml")
    resumed = trainer.fit(cfg, tmp_path / "cut", resume=True, command="test")
    a = torch.load(tmp_path / "full" / trainer.CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "cut" / trainer.CHECKPOINT, weights_only=True)
    assert b["scaler"] == a["scaler"]  # e.g. _growth_tracker counts steps across the interruption
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_spike_function_under_autocast(dtype):
    # the custom autograd Function sees low-precision inputs: exact step forward, surrogate backward, same dtype
    x = torch.linspace(-1, 1, 41).to(dtype).requires_grad_()
    s = FastSigmoid()
    with torch.autocast("cpu", dtype=dtype):
        out = spike(x, s)
    assert out.dtype == dtype and torch.equal(out, (x > 0).to(dtype))
    g = torch.rand(41).to(dtype)
    out.backward(g)
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, (g * s.grad(x.detach())).to(dtype))


@pytest.mark.parametrize("backend", ["reference", "auto"])  # the spike autograd Function; the fused scan op
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_gradients_reach_every_parameter(precision, backend):
    cfg = config.load(None, [*TINY, f"model.backend={backend}"])
    model = trainer.build_model(cfg, 6, 3)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(40, 16, 6, generator=g) < 0.1).float()
    y = torch.randint(0, 3, (16,), generator=g)
    grads = {}
    for p in ("fp32", precision):
        model.zero_grad(set_to_none=True)
        with autocast("cpu", p):
            out, _ = model(x)
            loss = readout_loss(out, y, cfg.train.loss)
        loss.backward()
        grads[p] = {n: q.grad for n, q in model.named_parameters() if q.requires_grad}
    names = {n for n, q in model.named_parameters() if q.requires_grad}
    assert any("delays" in n for n in names) and any("log_tau" in n for n in names)
    for n in names:
        ref, low = grads["fp32"][n], grads[precision][n]
        assert low is not None and low.dtype == torch.float32 and torch.isfinite(low).all(), n
        assert ref.norm() > 0, n
        cos = torch.nn.functional.cosine_similarity(low.flatten(), ref.flatten(), dim=0)
        assert cos > 0.9, (n, cos.item())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_evaluate_under_autocast_matches_fp32(fp32_run, precision):
    model, cfg = trainer.model_from_checkpoint(trainer.load_checkpoint(fp32_run["out"] / trainer.BEST))
    from spiketime.app.splits import load_splits

    val = load_splits(cfg.data).val
    ref = trainer.evaluate(model, val, cfg.train.loss)
    assert ref["accuracy"] == fp32_run["val_accuracy"]
    low = trainer.evaluate(model, val, cfg.train.loss, precision=precision)
    assert abs(low["accuracy"] - ref["accuracy"]) <= ACC_TOL and low["loss"] == pytest.approx(ref["loss"], rel=0.1)
