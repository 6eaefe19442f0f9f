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
import pickle
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from spiketime.config import Config, ConfigError, first_line, from_dict, validate
from spiketime.data.datasets import Split, Splits, load_splits
from spiketime.data.event_sets import frame_shape
from spiketime.learning.distributed import World, all_sum, broadcast, check_device, rank_slice, session, wrap
from spiketime.learning.losses import TrainingDiverged, class_scores, readout_loss, spike_rate
from spiketime.learning.sam import perturbed
from spiketime.nn.gamma import GammaNetwork
from spiketime.nn.network import SpikingNetwork
from spiketime.progress import EpochMonitor, n_batches, progress_bar, status
from spiketime.rundir import (check_new_run, clear_run, git_commit, remove_stale_tmp, torch_save_atomic, versions,
                              write_json, write_yaml)

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
    """``total / n``, the epoch's mean training loss (``epoch`` 0-based); :class:`TrainingDiverged` (one line)
    when it is not finite (the last check: every learner checks each batch's loss before it steps)."""
    if not math.isfinite(total):
        raise TrainingDiverged(total, epoch + 1)
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
             precision: str = "fp32", world: World | None = None, progress: bool = False,
             desc: str = "eval") -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``data``; ``transform(x [B, T, C], mask [B, T] | None)`` (e.g. a
    perturbation) is applied to every batch first. ``precision`` autocasts the forward pass; with a multi-process
    ``world`` each rank evaluates its share of ``data`` and the sums are all-reduced (same result on every rank).
    ``spikes_per_sample`` is the mean over samples of the total hidden spike count ``sum_{l, t, n} s_l[t, b, n]``
    (hidden layers only, for a LIF and a gamma network alike; a LIF readout's spikes are not counted).
    ``progress``: a bar ``desc`` over the batches on stderr, gone when done."""
    model.eval()
    net = getattr(model, "module", model)  # the network inside a DDP wrapper
    correct, total_loss, spikes = 0, 0.0, 0.0
    mine = rank_slice(torch.arange(len(data)), world) if world is not None else torch.arange(len(data))
    for i in progress_bar(progress, desc, n_batches(len(mine), batch_size), "batch", leave=False,
                          iterable=range(0, len(mine), batch_size)):
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
                scaler: torch.amp.GradScaler | None = None, world: World | None = None,
                progress: bool = False) -> float:
    """One BPTT epoch; returns the mean training loss over all samples.

    Every learner checks each batch's loss before the optimiser steps with its gradient and raises
    :class:`TrainingDiverged` (epoch, batch) when it is nan or inf (under torchrun: the global batch's loss, so
    every rank stops alike). ``progress``: a bar over the epoch's batches on stderr (:class:`EpochMonitor`).

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

        return online_epoch(getattr(model, "module", model), opt, data, cfg, epoch, device, progress)
    if t.learner == "gamma_online":
        from spiketime.learning.gamma_online import train_epoch as gamma_online_epoch

        return gamma_online_epoch(getattr(model, "module", model), opt, data, cfg, epoch, device, progress)
    scaler = scaler or build_scaler(cfg, device)
    net = getattr(model, "module", model)  # the SpikingNetwork inside a DDP wrapper
    total = 0.0
    monitor = EpochMonitor(progress, epoch + 1, n_batches(len(data), t.batch_size))
    for idx in monitor.over(batches(len(data), t.batch_size, epoch_generator(t.seed, epoch))):
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
        # the batch's summed loss (global under torchrun), checked before any step uses its gradient
        batch_sum = monitor.check(all_sum([summed.item()], world)[0] if world.active else loss.item() * len(idx))
        if t.sam_rho > 0:  # SAM / ASAM: the step uses the gradient at the perturbed weights
            with perturbed(net, t.sam_rho, t.sam_adaptive):
                backward()
        if t.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
        scaler.step(opt)
        scaler.update()
        net.project_()
        total += batch_sum
        monitor.done(batch_sum, len(idx))
    return epoch_mean_loss(total, len(data), epoch)


def default_out(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a spiketime checkpoint (a run directory means its ``best.pt``) with ``torch.load(weights_only=True)``:
    tensors, numbers, strings, lists and dicts only, so a file that carries pickled code is refused, never run.
    Every failure is a one-line :class:`ConfigError` naming the file."""
    p = Path(path)
    if p.is_dir():
        p = p / BEST
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a pickle of objects at all: garbage or a torn file
            raise ConfigError(f"{p}: not a readable spiketime checkpoint (UnpicklingError)") from None
        # weights_only met a global it does not allow: code, or some other library's object
        raise ConfigError(f"{p}: refused: it holds pickled Python objects besides tensors and plain data (loading "
                          "it could run code); spiketime checkpoints hold only tensors, numbers, strings, lists "
                          "and dicts") from None
    except Exception as e:  # torch raises many types for torn or foreign files
        raise ConfigError(f"{p}: not a readable spiketime checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or not {"config", "model", "n_in", "n_out"} <= set(ckpt):
        raise ConfigError(f"{p}: not a spiketime checkpoint (expected keys config, model, n_in, n_out)")
    return ckpt


def _shape(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def load_model_state(model: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)``, with a one-line :class:`ConfigError` naming ``source`` and the first
    tensor that is missing, unexpected or of another shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = ([f"{k} has shape {_shape(state[k])} there, {_shape(own[k])} in the model" for k in shapes[:2]]
                 + [f"it lacks {k}" for k in missing[:2]] + [f"it has {k}, which the model has not" for k in unexpected[:2]])
        more = len(missing) + len(unexpected) + len(shapes) - len(parts)
        raise ConfigError(f"{source}: does not fit the model: {'; '.join(parts)}{f' (and {more} more)' if more else ''}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"{source}: does not fit the model ({first_line(e)})") from None


def config_differences(a: dict[str, Any], b: dict[str, Any], sections: tuple[str, ...] = ("model", "data")) -> list[str]:
    """``section.key: A vs B`` for every key of ``sections`` whose values differ between config dicts ``a``, ``b``."""
    out = []
    for sec in sections:
        sa, sb = a.get(sec) or {}, b.get(sec) or {}
        for key in dict.fromkeys([*sa, *sb]):
            if sa.get(key) != sb.get(key):
                out.append(f"{sec}.{key}: {sa.get(key)!r} vs {sb.get(key)!r}")
    return out


def model_from_checkpoint(ckpt: dict[str, Any], cfg: Config | None = None, source: str = "checkpoint") -> tuple[Model, Config]:
    """Rebuild the model of a checkpoint (optionally under a changed config, e.g. another ``data.dt``: the model
    is built at that time step, and a :class:`GammaNetwork` computes every decay ``exp(-dt / tau)`` from its
    learned taus). A state that does not fit is a one-line :class:`ConfigError` naming ``source``."""
    cfg = cfg or validate(from_dict(ckpt["config"], f"{source} (config)"))
    model = build_model(cfg, ckpt["n_in"], ckpt["n_out"])
    load_model_state(model, ckpt["model"], source)
    return model, cfg


def fit(cfg: Config, out: Path, resume: bool = False, command: str | None = None,
        overwrite: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (continuing its checkpoint when ``resume``).

    A folder that holds another run is refused unless ``resume`` or ``overwrite`` (which removes that run's files
    once the data has loaded: :func:`spiketime.rundir.clear_run`); temporary files left by a killed write are
    removed. ``train.threads`` sets torch's CPU threads for the run (restored afterwards); the count used is
    recorded in metrics.json.
    Under torchrun (``WORLD_SIZE`` > 1) this joins the process group for the run and leaves it at the end;
    every rank returns the metrics rank 0 wrote."""
    check_device(cfg.train.device)
    if not resume and os.environ.get("RANK", "0") in ("", "0"):
        check_new_run(out, overwrite)
    threads = torch.get_num_threads()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    try:
        with session(cfg.train.device) as world:
            return _fit(cfg, out, resume, command, world, overwrite)
    finally:
        torch.set_num_threads(threads)  # the caller's count again


def _command(world: World) -> str:
    """The command line that started this run (as ``torchrun ... -m spiketime`` under torchrun)."""
    cmd = "spiketime " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if world.active:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world.size))
        cmd = f"torchrun --nproc_per_node {per_node} -m {cmd}"
    return cmd


def _resume_state(out: Path, cfg: Config, n_in: int, n_out: int) -> dict[str, Any]:
    """``out``'s checkpoint.pt, checked against the run's config.yaml (``cfg``) and data: one line saying what
    differs when it holds another model (type, sizes, delays...) or was trained on data of other dimensions."""
    path = out / CHECKPOINT
    ckpt = load_checkpoint(path)
    if not {"optimizer", "state"} <= set(ckpt):
        raise ConfigError(f"{path}: holds no training state (optimizer, state): not a checkpoint to resume from")
    diffs = config_differences(ckpt["config"], cfg.to_dict(), ("model",))
    dims = [f"{k}: {a} vs {b}" for k, a, b in (("inputs", ckpt["n_in"], n_in), ("classes", ckpt["n_out"], n_out))
            if a != b]
    if diffs or dims:
        shown = (diffs + dims)[:3]
        more = len(diffs) + len(dims) - len(shown)
        raise ConfigError(f"{path}: holds another model than {out / 'config.yaml'} describes (checkpoint vs config: "
                          f"{'; '.join(shown)}{f'; and {more} more' if more else ''})")
    return ckpt


def _fit(cfg: Config, out: Path, resume: bool, command: str | None, world: World,
         overwrite: bool = False) -> dict[str, Any]:
    t = cfg.train
    device = world.device
    if t.learner in ("online", "gamma_online") and world.active:
        raise ConfigError(f"train.learner: {t.learner} runs in one process, not under torchrun (its optimiser "
                          "steps inside each sequence, with no gradient all-reduce)")
    torch.manual_seed(t.seed)
    splits = load_splits(cfg.data, progress=t.progress and world.is_main)  # data errors come before the run dir
    out = Path(broadcast(str(out), world))  # rank 0's: default run names hold a timestamp
    if world.is_main:
        if overwrite and not resume:
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(out)
    resuming = broadcast(resume and (out / CHECKPOINT).is_file(), world)
    n_in, n_out = splits.channels, splits.num_classes
    model = build_model(cfg, n_in, n_out).to(device)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    scaler = build_scaler(cfg, device)
    state = {"epoch": 0, "history": [], "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": 0.0}
    if resuming:
        ckpt = _resume_state(out, cfg, n_in, n_out)
        load_model_state(model, ckpt["model"], str(out / CHECKPOINT))
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise ConfigError(f"{out / CHECKPOINT}: its optimiser state does not fit the model "
                              f"({first_line(e)})") from None
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
    elif world.is_main:
        write_yaml(out / "config.yaml", cfg.to_dict())
    command = command or _command(world)
    ddp = wrap(model, world)

    show = t.progress and world.is_main  # bars and stage lines on stderr (rank 0 only)
    if torch.device(device).type == "cpu":
        from spiketime.kernels.cpu import prepare

        prepare(show)  # a first use compiles the C kernels: say so, before the bars
    bar = progress_bar(show, cfg.name, t.epochs, "epoch", iterable=range(state["epoch"], t.epochs),
                       initial=state["epoch"])
    for epoch in bar:
        if t.early_stop and state["bad_epochs"] >= t.patience:
            break
        start = time.perf_counter()
        train_loss = train_epoch(ddp, opt, splits.train, cfg, epoch, scaler, world, progress=show)
        if sched is not None:
            sched.step()
        val = evaluate(model, splits.val, t.loss, device=device, precision=t.precision, world=world, progress=show,
                       desc="validation")
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
    show = t.progress and world.is_main
    status(show, f"{cfg.name}: evaluating the best-validation model (epoch {state['best_epoch']})")
    val = evaluate(model, splits.val, t.loss, device=device, precision=t.precision, progress=show,
                   desc="validation split")
    test = evaluate(model, splits.test, t.loss, device=device, precision=t.precision, progress=show,
                    desc="test split")
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
        "threads": torch.get_num_threads(),
        "history": state["history"],
        "config": cfg.to_dict(),
        "versions": versions(),
        "git_commit": git_commit(),
        "command": command,
    }
    status(show, f"{cfg.name}: writing plots and report.md")
    write_plots(model, splits, cfg, state["history"], out)
    write_json(out / METRICS, metrics)
    write_report(metrics, out)
    return metrics


def run_baseline(cfg: Config, out: Path, progress: bool = True) -> dict[str, Any]:
    """The count baseline on ``cfg``'s data: logistic regression on per-channel spike counts -> metrics.json
    (``progress``: the bar of a built-in event set generated on first use)."""
    from spiketime.learning.baseline import count_baseline

    s = load_splits(cfg.data, progress)
    res = count_baseline((s.train.x, s.train.y), (s.val.x, s.val.y), (s.test.x, s.test.y), seed=cfg.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**res, "model": "logistic regression on per-channel spike counts", "num_classes": s.num_classes,
               "chance": 1.0 / s.num_classes, "seed": cfg.train.seed, "config": cfg.to_dict(),
               "versions": versions(), "git_commit": git_commit()}
    write_json(out / METRICS, metrics)
    return metrics
