"""Training loop (BPTT, or ``train.learner: online``: :mod:`spiketime.learning.online`, or ``train.learner:
gamma_online``: :mod:`spiketime.learning.gamma_online`), evaluation, checkpoints and the run directory.

``model.type`` picks the network (:func:`build_model`): ``lif`` (:class:`SpikingNetwork`, whose forward returns
``(y, state)``) or ``gamma`` (:class:`GammaNetwork`, ``(logits, hidden spikes)``); both give the readout trace
``[T, B, C]`` first, so one loop serves both, and for ``gamma`` the loss gains
``train.gain_weight * spike_rate(spikes)`` (:func:`spiketime.learning.losses.spike_rate`).

Every epoch ends by writing ``OUT/checkpoint.pt`` (model, optimiser, scheduler, history, early-stop
counters) atomically, and ``OUT/best.pt`` when the validation accuracy improved. The batch order of
epoch ``e`` is drawn from a generator seeded by ``(train.seed, e)``, so a run resumed from any
checkpoint replays exactly the epochs an uninterrupted run would have (bit-identical on CPU).
Model selection uses the validation split only; the test split is evaluated once, at the end,
with the best-validation model.

Under ``torchrun`` (see :mod:`spiketime.learning.distributed`) the model is wrapped in
DistributedDataParallel, every rank trains on its slice of each global batch of ``train.batch_size``
samples, and only rank 0 writes files. ``train.precision`` runs the forward pass and loss under
``torch.autocast`` (bf16 or fp16; fp16 with a ``GradScaler`` whose state is checkpointed).
"""

from __future__ import annotations

import contextlib
import math
import os
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
from spiketime.data.event_sets import frame_shape
from spiketime.learning.distributed import World, all_sum, broadcast, rank_slice, session, wrap
from spiketime.learning.losses import class_scores, readout_loss, spike_rate
from spiketime.learning.sam import perturbed
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork
from spiketime.rundir import git_commit, torch_save_atomic, versions, write_json, write_yaml

CHECKPOINT, BEST, METRICS = "checkpoint.pt", "best.pt", "metrics.json"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Model = SpikingNetwork | GammaNetwork


def build_model(cfg: Config, n_in: int, n_out: int) -> Model:
    """The network of ``cfg.model.type`` at time step ``cfg.data.dt``, weights seeded by ``train.seed``."""
    m = cfg.model
    if m.type == "gamma":
        return GammaNetwork(n_in, n_out, list(m.hidden), cfg.data.dt, K=m.buckets, tau_1=m.bucket_tau,
                            factor=m.bucket_factor, bucket_weights=m.bucket_weights, learn_taus=m.learn_bucket_tau,
                            theta0=m.sd_theta, tau_ref=m.tau_ref, tau_th=m.tau_th, m_f=m.threshold_gain,
                            seed=cfg.train.seed, weight_scale=m.weight_scale, conv=list(m.conv),
                            input_shape=frame_shape(cfg.data) if m.conv else None, conv_kernel=m.conv_kernel,
                            conv_stride=m.conv_stride)
    return SpikingNetwork(n_in, n_out, m, cfg.data.dt, seed=cfg.train.seed)


def hidden_spikes(model: torch.nn.Module, aux: Any) -> list[torch.Tensor] | None:
    """The hidden spike trains of a forward pass's second output: ``GammaNetwork`` returns them (a list),
    ``SpikingNetwork`` returns its state (None here)."""
    net = getattr(model, "module", model)
    return aux if isinstance(net, GammaNetwork) else None


def build_optimizer(model: Model, cfg: Config) -> torch.optim.Optimizer:
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


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to the dtype of ``precision`` (``bf16``, ``fp16``) on ``device``'s type; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=PRECISIONS[precision])


def build_scaler(cfg: Config, device: str | None = None) -> torch.amp.GradScaler:
    """The loss scaler: enabled for ``train.precision: fp16``, a pass-through otherwise."""
    dev = torch.device(device or cfg.train.device).type
    return torch.amp.GradScaler(dev, enabled=cfg.train.precision == "fp16")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s batch order, seeded by ``(train.seed, epoch)`` (every learner, every rank)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def epoch_mean_loss(total: float, n: int, epoch: int) -> float:
    """``total / n``, the epoch's mean training loss; a one-line error when training diverged."""
    if not math.isfinite(total):
        raise FloatingPointError(f"training loss became {total} in epoch {epoch + 1}; lower train.lr")
    return total / n


def batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Index batches over ``n`` samples, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def time_major(x: torch.Tensor, device: str) -> torch.Tensor:
    """``[B, T, C]`` samples -> ``[T, B, C]`` float on ``device``."""
    return x.to(device=device, dtype=torch.float32).transpose(0, 1).contiguous()


@torch.no_grad()
def evaluate(model: Model, data: Split, loss: str, batch_size: int = 256, device: str = "cpu",
             transform: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
             precision: str = "fp32", world: World | None = None) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``data``; ``transform(x [B, T, C], mask [B, T] | None)`` (e.g. a
    perturbation) is applied to every batch first. ``precision`` autocasts the forward pass; with a multi-process
    ``world`` each rank evaluates its share of ``data`` and the sums are all-reduced (same result on every rank).
    ``spikes_per_sample`` is the mean over samples of the total hidden spike count ``sum_{l, t, n} s_l[t, b, n]``
    (hidden layers only, for a LIF and a gamma network alike; a LIF readout's spikes are not counted)."""
    model.eval()
    net = getattr(model, "module", model)  # the network inside a DDP wrapper
    correct, total_loss, spikes = 0, 0.0, 0.0
    mine = rank_slice(torch.arange(len(data)), world) if world is not None else torch.arange(len(data))
    for i in range(0, len(mine), batch_size):
        idx = mine[i:i + batch_size]
        xb = data.x[idx]
        if transform is not None:
            xb = transform(xb, data.mask[idx] if data.mask is not None else None)
        x, y = time_major(xb, device), data.y[idx].to(device)
        with autocast(device, precision):
            out, _, outputs = net.run(x)
            hidden = outputs[:-1]
            batch_loss = readout_loss(out, y, loss)
        total_loss += batch_loss.item() * len(idx)
        correct += (class_scores(out, loss).argmax(dim=1) == y).sum().item()
        spikes += sum(float(h.sum()) for h in hidden)
    if world is not None and world.active:
        correct, total_loss, spikes = all_sum([correct, total_loss, spikes], world)
    return {"accuracy": correct / len(data), "loss": total_loss / len(data), "spikes_per_sample": spikes / len(data)}


def train_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, data: Split, cfg: Config, epoch: int,
                scaler: torch.amp.GradScaler | None = None, world: World | None = None) -> float:
    """One BPTT epoch; returns the mean training loss over all samples.

    ``model`` is a :class:`SpikingNetwork` or, with a multi-process ``world``, its DDP wrapper: each rank then
    backpropagates ``(sum of its per-sample losses) * world.size / len(global batch)``, which DDP's mean over
    ranks turns into the gradient of the global batch's mean loss (also for a short last batch, and for a
    rank whose slice is empty: its loss is an empty sum, 0, still connected to every parameter).
    ``train.learner: online`` runs :func:`spiketime.learning.online.train_epoch` instead (one process only),
    ``gamma_online`` :func:`spiketime.learning.gamma_online.train_epoch`. For ``model.type: gamma`` the loss is
    ``readout_loss + train.gain_weight * spike_rate(hidden spikes)``. ``train.sam_rho > 0``: each batch is run
    twice, the second time at the SAM/ASAM-perturbed weights (:mod:`spiketime.learning.sam`), whose gradient the
    optimiser steps with; the reported loss is the first pass's.
    """
    model.train()
    t = cfg.train
    world = world or World(device=t.device)
    device = world.device
    if t.learner == "online":
        from spiketime.learning.online import train_epoch as online_epoch

        return online_epoch(getattr(model, "module", model), opt, data, cfg, epoch, device)
    if t.learner == "gamma_online":
        from spiketime.learning.gamma_online import train_epoch as gamma_online_epoch

        return gamma_online_epoch(getattr(model, "module", model), opt, data, cfg, epoch, device)
    scaler = scaler or build_scaler(cfg, device)
    net = getattr(model, "module", model)  # the SpikingNetwork inside a DDP wrapper
    total = 0.0
    for idx in batches(len(data), t.batch_size, epoch_generator(t.seed, epoch)):
        mine = rank_slice(idx, world)
        x, y = time_major(data.x[mine], device), data.y[mine].to(device)

        def backward() -> tuple[torch.Tensor, torch.Tensor | None]:
            """Forward, loss and backward of this batch at the current weights: ``(loss, summed)``."""
            summed = None
            with autocast(device, t.precision):
                out, aux = model(x)
                spikes = hidden_spikes(model, aux) if t.gain_weight > 0 else None
                if world.active:
                    summed = readout_loss(out, y, t.loss, reduction="sum")
                    if spikes is not None:
                        summed = summed + t.gain_weight * spike_rate(spikes, reduction="sum")
                    loss = summed * (world.size / len(idx))
                else:
                    loss = readout_loss(out, y, t.loss)
                    if spikes is not None:
                        loss = loss + t.gain_weight * spike_rate(spikes)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            return loss, summed

        loss, summed = backward()
        if t.sam_rho > 0:  # SAM / ASAM: the step uses the gradient at the perturbed weights
            with perturbed(net, t.sam_rho, t.sam_adaptive):
                backward()
        if t.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
        scaler.step(opt)
        scaler.update()
        net.project_()
        total += summed.item() if world.active else loss.item() * len(idx)
    if world.active:
        (total,) = all_sum([total], world)
    return epoch_mean_loss(total, len(data), epoch)


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


def model_from_checkpoint(ckpt: dict[str, Any], cfg: Config | None = None) -> tuple[Model, Config]:
    """Rebuild the model of a checkpoint (optionally under a changed config, e.g. another ``data.dt``: the model
    is built at that time step, and a :class:`GammaNetwork` computes every decay ``exp(-dt / tau)`` from its
    learned taus)."""
    cfg = cfg or validate(from_dict(ckpt["config"]))
    model = build_model(cfg, ckpt["n_in"], ckpt["n_out"])
    model.load_state_dict(ckpt["model"])
    return model, cfg


def fit(cfg: Config, out: Path, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (continuing its checkpoint when ``resume``).

    Under torchrun (``WORLD_SIZE`` > 1) this joins the process group for the run and leaves it at the end;
    every rank returns the metrics rank 0 wrote."""
    with session(cfg.train.device) as world:
        return _fit(cfg, out, resume, command, world)


def _command(world: World) -> str:
    """The command line that started this run (as ``torchrun ... -m spiketime`` under torchrun)."""
    cmd = "spiketime " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if world.active:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world.size))
        cmd = f"torchrun --nproc_per_node {per_node} -m {cmd}"
    return cmd


def _fit(cfg: Config, out: Path, resume: bool, command: str | None, world: World) -> dict[str, Any]:
    t = cfg.train
    device = world.device
    if t.learner in ("online", "gamma_online") and world.active:
        raise ConfigError(f"train.learner: {t.learner} runs in one process, not under torchrun (its optimiser "
                          "steps inside each sequence, with no gradient all-reduce)")
    torch.manual_seed(t.seed)
    splits = load_splits(cfg.data)  # data errors come before the run directory exists
    out = Path(broadcast(str(out), world))  # rank 0's: default run names hold a timestamp
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    resuming = broadcast(resume and (out / CHECKPOINT).is_file(), world)
    n_in, n_out = splits.channels, splits.num_classes
    model = build_model(cfg, n_in, n_out).to(device)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    scaler = build_scaler(cfg, device)
    state = {"epoch": 0, "history": [], "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": 0.0}
    if resuming:
        ckpt = load_checkpoint(out / CHECKPOINT)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
    elif world.is_main:
        write_yaml(out / "config.yaml", cfg.to_dict())
    command = command or _command(world)
    ddp = wrap(model, world)

    bar = tqdm(range(state["epoch"], t.epochs), initial=state["epoch"], total=t.epochs, desc=cfg.name,
               unit="epoch", disable=not (t.progress and world.is_main), file=sys.stderr, dynamic_ncols=True)
    for epoch in bar:
        if t.early_stop and state["bad_epochs"] >= t.patience:
            break
        start = time.perf_counter()
        train_loss = train_epoch(ddp, opt, splits.train, cfg, epoch, scaler, world)
        if sched is not None:
            sched.step()
        val = evaluate(model, splits.val, t.loss, device=device, precision=t.precision, world=world)
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
        if world.is_main:
            common = {"config": cfg.to_dict(), "n_in": n_in, "n_out": n_out, "model": model.state_dict()}
            if improved:
                torch_save_atomic({**common, "epoch": epoch + 1, "val_accuracy": val["accuracy"]}, out / BEST)
            torch_save_atomic({**common, "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict() if sched is not None else None,
                               "scaler": scaler.state_dict() if scaler.is_enabled() else None, "state": state},
                              out / CHECKPOINT)
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val['accuracy']:.3f}", best=f"{state['best_val']:.3f}")
    bar.close()
    stopped_early = t.early_stop and state["bad_epochs"] >= t.patience and state["epoch"] < t.epochs
    metrics = finalize(cfg, out, splits, state, stopped_early, command, world) if world.is_main else None
    return broadcast(metrics, world)


def finalize(cfg: Config, out: Path, splits: Splits, state: dict[str, Any], stopped_early: bool, command: str,
             world: World | None = None) -> dict[str, Any]:
    """Evaluate the best-validation model on the test split; write metrics.json, plots and report.md
    (call on rank 0 only under torchrun; ``world`` gives the device and the recorded ``world_size``)."""
    from spiketime.evaluate.report import write_plots, write_report

    t = cfg.train
    world = world or World(device=t.device)
    device = world.device
    if (out / BEST).is_file():
        model, _ = model_from_checkpoint(load_checkpoint(out / BEST), cfg)
    else:  # epochs == 0: the untrained model
        model = build_model(cfg, splits.channels, splits.num_classes)
    model.to(device)
    val = evaluate(model, splits.val, t.loss, device=device, precision=t.precision)
    test = evaluate(model, splits.test, t.loss, device=device, precision=t.precision)
    metrics = {
        "test_accuracy": test["accuracy"],
        "val_accuracy": val["accuracy"],
        "test_loss": test["loss"],
        "spikes_per_sample": test["spikes_per_sample"],
        "num_classes": splits.num_classes,
        "inputs": splits.channels,
        "chance": 1.0 / splits.num_classes,
        "train_seconds": state["train_seconds"],
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": stopped_early,
        "seed": t.seed,
        "learner": t.learner,
        "world_size": world.size,
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
