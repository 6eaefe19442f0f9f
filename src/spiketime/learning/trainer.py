"""Training loop (BPTT), evaluation, checkpoints and the run directory.

Every epoch ends by writing ``OUT/checkpoint.pt`` (model, optimiser, scheduler, history, early-stop
counters) atomically, and ``OUT/best.pt`` when the validation accuracy improved. The batch order of
epoch ``e`` is drawn from a generator seeded by ``(train.seed, e)``, so a run resumed from any
checkpoint replays exactly the epochs an uninterrupted run would have (bit-identical on CPU).
Model selection uses the validation split only; the test split is evaluated once, at the end,
with the best-validation model.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from spiketime.config import Config, ConfigError, from_dict, validate
from spiketime.data.datasets import Split, Splits, load_splits
from spiketime.learning.losses import class_scores, readout_loss
from spiketime.nn.network import SpikingNetwork
from spiketime.rundir import git_commit, torch_save_atomic, versions, write_json, write_yaml

CHECKPOINT, BEST, METRICS = "checkpoint.pt", "best.pt", "metrics.json"


def build_model(cfg: Config, n_in: int, n_out: int) -> SpikingNetwork:
    return SpikingNetwork(n_in, n_out, cfg.model, cfg.data.dt, seed=cfg.train.seed)


def build_optimizer(model: SpikingNetwork, cfg: Config) -> torch.optim.Optimizer:
    """Adam with separate learning rates for weights, time constants and delays."""
    lrs = {"weights": cfg.train.lr, "time_constants": cfg.train.lr_tau, "delays": cfg.train.lr_delay}
    groups = [{"params": ps, "lr": lrs[k], "name": k} for k, ps in model.param_groups().items() if ps]
    return torch.optim.Adam(groups)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Config) -> torch.optim.lr_scheduler.LRScheduler | None:
    t = cfg.train
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(t.epochs, 1))
    if t.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.step_size, gamma=t.gamma)
    return None


def batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Index batches over ``n`` samples, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def time_major(x: torch.Tensor, device: str) -> torch.Tensor:
    """``[B, T, C]`` samples -> ``[T, B, C]`` float on ``device``."""
    return x.to(device=device, dtype=torch.float32).transpose(0, 1).contiguous()


@torch.no_grad()
def evaluate(model: SpikingNetwork, data: Split, loss: str, batch_size: int = 256, device: str = "cpu",
             transform: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``data``; ``transform(x [B, T, C], mask [B, T] | None)`` (e.g. a
    perturbation) is applied to every batch first."""
    model.eval()
    correct, total_loss = 0, 0.0
    for idx in batches(len(data), batch_size):
        xb = data.x[idx]
        if transform is not None:
            xb = transform(xb, data.mask[idx] if data.mask is not None else None)
        x, y = time_major(xb, device), data.y[idx].to(device)
        out, _ = model(x)
        total_loss += readout_loss(out, y, loss).item() * len(idx)
        correct += (class_scores(out, loss).argmax(dim=1) == y).sum().item()
    return {"accuracy": correct / len(data), "loss": total_loss / len(data)}


def train_epoch(model: SpikingNetwork, opt: torch.optim.Optimizer, data: Split, cfg: Config, epoch: int) -> float:
    """One BPTT epoch; returns the mean training loss."""
    model.train()
    t = cfg.train
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([t.seed, epoch]).generate_state(1)[0]))
    total = 0.0
    for idx in batches(len(data), t.batch_size, g):
        x, y = time_major(data.x[idx], t.device), data.y[idx].to(t.device)
        out, _ = model(x)
        loss = readout_loss(out, y, t.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        model.project_()
        total += loss.item() * len(idx)
    if not math.isfinite(total):
        raise FloatingPointError(f"training loss became {total} in epoch {epoch + 1}; lower train.lr")
    return total / len(data)


def default_out(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a spiketime checkpoint; a one-line :class:`ConfigError` if missing or unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / BEST
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for torn or foreign files
        raise ConfigError(f"{p}: not a readable spiketime checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or not {"config", "model", "n_in", "n_out"} <= set(ckpt):
        raise ConfigError(f"{p}: not a spiketime checkpoint (expected keys config, model, n_in, n_out)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], cfg: Config | None = None) -> tuple[SpikingNetwork, Config]:
    """Rebuild the model of a checkpoint (optionally under a changed config, e.g. another ``data.dt``)."""
    cfg = cfg or validate(from_dict(ckpt["config"]))
    model = build_model(cfg, ckpt["n_in"], ckpt["n_out"])
    model.load_state_dict(ckpt["model"])
    return model, cfg


def fit(cfg: Config, out: Path, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (continuing its checkpoint when ``resume``)."""
    t = cfg.train
    torch.manual_seed(t.seed)
    splits = load_splits(cfg.data)  # data errors come before the run directory exists
    out.mkdir(parents=True, exist_ok=True)
    n_in, n_out = splits.channels, splits.num_classes
    model = build_model(cfg, n_in, n_out).to(t.device)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    state = {"epoch": 0, "history": [], "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": 0.0}
    if resume and (out / CHECKPOINT).is_file():
        ckpt = load_checkpoint(out / CHECKPOINT)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
    else:
        write_yaml(out / "config.yaml", cfg.to_dict())
    command = command or "spiketime " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    bar = tqdm(range(state["epoch"], t.epochs), initial=state["epoch"], total=t.epochs, desc=cfg.name,
               unit="epoch", disable=not t.progress, file=sys.stderr, dynamic_ncols=True)
    for epoch in bar:
        if t.early_stop and state["bad_epochs"] >= t.patience:
            break
        start = time.perf_counter()
        train_loss = train_epoch(model, opt, splits.train, cfg, epoch)
        if sched is not None:
            sched.step()
        val = evaluate(model, splits.val, t.loss, device=t.device)
        seconds = time.perf_counter() - start
        state["train_seconds"] += seconds
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
                                 "val_accuracy": val["accuracy"], "seconds": seconds})
        improved = val["accuracy"] > state["best_val"]
        if improved:
            state.update(best_val=val["accuracy"], best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        common = {"config": cfg.to_dict(), "n_in": n_in, "n_out": n_out, "model": model.state_dict()}
        if improved:
            torch_save_atomic({**common, "epoch": epoch + 1, "val_accuracy": val["accuracy"]}, out / BEST)
        torch_save_atomic({**common, "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict() if sched is not None else None, "state": state},
                          out / CHECKPOINT)
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val['accuracy']:.3f}", best=f"{state['best_val']:.3f}")
    bar.close()
    stopped_early = t.early_stop and state["bad_epochs"] >= t.patience and state["epoch"] < t.epochs
    return finalize(cfg, out, splits, state, stopped_early, command)


def finalize(cfg: Config, out: Path, splits: Splits, state: dict[str, Any], stopped_early: bool, command: str) -> dict[str, Any]:
    """Evaluate the best-validation model on the test split; write metrics.json, plots and report.md."""
    from spiketime.evaluate.report import write_plots, write_report

    t = cfg.train
    if (out / BEST).is_file():
        model, _ = model_from_checkpoint(load_checkpoint(out / BEST), cfg)
    else:  # epochs == 0: the untrained model
        model = build_model(cfg, splits.channels, splits.num_classes)
    model.to(t.device)
    val = evaluate(model, splits.val, t.loss, device=t.device)
    test = evaluate(model, splits.test, t.loss, device=t.device)
    metrics = {
        "test_accuracy": test["accuracy"],
        "val_accuracy": val["accuracy"],
        "test_loss": test["loss"],
        "num_classes": splits.num_classes,
        "chance": 1.0 / splits.num_classes,
        "train_seconds": state["train_seconds"],
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": stopped_early,
        "seed": t.seed,
        "learner": t.learner,
        "history": state["history"],
        "config": cfg.to_dict(),
        "versions": versions(),
        "git_commit": git_commit(),
        "command": command,
    }
    write_plots(model, splits, cfg, state["history"], out)
    write_json(out / METRICS, metrics)
    write_report(metrics, out)
    return metrics


def run_baseline(cfg: Config, out: Path) -> dict[str, Any]:
    """The count baseline on ``cfg``'s data: logistic regression on per-channel spike counts -> metrics.json."""
    from spiketime.learning.baseline import count_baseline

    s = load_splits(cfg.data)
    res = count_baseline((s.train.x, s.train.y), (s.val.x, s.val.y), (s.test.x, s.test.y), seed=cfg.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**res, "model": "logistic regression on per-channel spike counts", "num_classes": s.num_classes,
               "chance": 1.0 / s.num_classes, "seed": cfg.train.seed, "config": cfg.to_dict(),
               "versions": versions(), "git_commit": git_commit()}
    write_json(out / METRICS, metrics)
    return metrics
