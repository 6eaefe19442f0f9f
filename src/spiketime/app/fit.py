"""The fit loop of ``spiketime train``: data, model and optimiser from a config, epochs of the chosen learner,
checkpoints, resume, early stopping, the final report.

``train.learner`` picks the library learner an epoch runs (:func:`train_epoch`): ``bptt``
(:func:`spiketime.learning.bptt.bptt_step`), ``online`` (:class:`spiketime.learning.online.OnlineLearner`) or
``gamma_online`` (:func:`spiketime.learning.gamma_online.run_sequence`); ``model.type`` the network
(:func:`spiketime.app.factories.build_model`). For ``gamma`` the loss gains ``train.gain_weight *
spike_rate(spikes)`` (:func:`spiketime.learning.losses.spike_rate`).

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

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from spiketime import kernels
from spiketime.app.checkpoints import (
    BEST,
    CHECKPOINT,
    METRICS,
    config_differences,
    load_checkpoint,
    load_model_state,
    model_from_checkpoint,
)
from spiketime.app.config import Config, ConfigError, first_line
from spiketime.app.factories import build_model, build_optimizer, build_scaler, build_scheduler
from spiketime.app.rundir import check_new_run, clear_run, git_commit, remove_stale_tmp, versions
from spiketime.app.splits import load_splits
from spiketime.data.datasets import Split, Splits
from spiketime.errors import TrainingDiverged
from spiketime.files import torch_save_atomic, write_json, write_yaml
from spiketime.learning.bptt import batches, bptt_step, epoch_generator, epoch_mean_loss, evaluate, time_major
from spiketime.learning.distributed import World, broadcast, check_device, rank_slice, session, wrap
from spiketime.learning.sam import SAM
from spiketime.progress import EpochMonitor, n_batches, progress_bar, status

DIVERGED_HINT = "lower train.lr"


def train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    data: Split,
    cfg: Config,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    world: World | None = None,
    progress: bool = False,
) -> float:
    """One epoch of ``train.learner`` over ``data`` in the batch order of ``(train.seed, epoch)``; returns the
    mean training loss over all samples. A nan/inf batch loss raises :class:`TrainingDiverged` (epoch, batch)
    before the optimiser steps with it (under torchrun: the global batch's, so every rank stops alike).
    ``progress``: a bar over the epoch's batches on stderr.

    ``model`` is the network or, with a multi-process ``world``, its DDP wrapper (each rank runs its slice of
    every global batch: :func:`~spiketime.learning.bptt.bptt_step`). ``train.sam_rho > 0``: SAM/ASAM
    (:class:`~spiketime.learning.sam.SAM`) for every learner."""
    t = cfg.train
    world = world or World(device=t.device)
    device = world.device
    net = getattr(model, "module", model)
    net.train()
    sam = SAM(t.sam_rho, t.sam_adaptive)
    monitor = EpochMonitor(progress, epoch + 1, n_batches(len(data), t.batch_size))
    if t.learner == "online":
        from spiketime.learning.online import OnlineLearner

        learner = OnlineLearner(
            net,
            feedback=t.feedback,
            update_every=t.update_every,
            seed=t.seed,
            optimizer=opt,
            grad_clip=t.grad_clip,
            sam=sam,
        )
    elif t.learner == "gamma_online":
        if t.loss != "per_step":
            raise ConfigError("train.loss: expected per_step with train.learner gamma_online")
        from spiketime.learning.gamma_online import run_sequence
    scaler = scaler or build_scaler(cfg, device)
    total = 0.0
    for idx in monitor.over(batches(len(data), t.batch_size, epoch_generator(t.seed, epoch))):
        if t.learner == "online":
            x, y = time_major(data.x[idx], device), data.y[idx].to(device)
            batch_sum = learner.run(x, y, monitor=monitor).loss_sum
        elif t.learner == "gamma_online":
            x, y = time_major(data.x[idx], device), data.y[idx].to(device)
            batch_sum = run_sequence(
                net, x, y, t.gain_weight, t.update_every, opt, t.grad_clip, t.sam_rho, t.sam_adaptive, monitor
            )[0]
        else:
            mine = rank_slice(idx, world)
            x, y = time_major(data.x[mine], device), data.y[mine].to(device)
            batch_sum = len(idx) * bptt_step(
                model,
                x,
                y,
                opt,
                t.loss,
                gain_weight=t.gain_weight,
                grad_clip=t.grad_clip,
                sam=sam,
                scaler=scaler,
                precision=t.precision,
                world=world,
                global_batch=len(idx),
                check=monitor.check,
            )
        total += batch_sum
        monitor.done(batch_sum, len(idx))
    if t.learner == "online":
        learner.release()
    return epoch_mean_loss(total, len(data), epoch)


def default_out(cfg: Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"


def fit(
    cfg: Config, out: Path, resume: bool = False, command: str | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out`` (continuing its checkpoint when ``resume``).

    A folder that holds another run is refused unless ``resume`` or ``overwrite`` (which removes that run's files
    once the data has loaded: :func:`spiketime.app.rundir.clear_run`); temporary files left by a killed write are
    removed. ``train.threads`` sets torch's CPU threads for the run (restored afterwards); the count used is
    recorded in metrics.json.
    Under torchrun (``WORLD_SIZE`` > 1) this joins the process group for the run and leaves it at the end;
    every rank returns the metrics rank 0 wrote."""
    check_device(cfg.train.device, "train.device")
    if not resume and os.environ.get("RANK", "0") in ("", "0"):
        check_new_run(out, overwrite)
    threads = torch.get_num_threads()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    try:
        with session(cfg.train.device, "train.device") as world:
            return _fit(cfg, out, resume, command, world, overwrite)
    except TrainingDiverged as e:
        raise e.with_hint(DIVERGED_HINT) from None  # the library says "lower the learning rate"
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
    dims = [
        f"{k}: {a} vs {b}" for k, a, b in (("inputs", ckpt["n_in"], n_in), ("classes", ckpt["n_out"], n_out)) if a != b
    ]
    if diffs or dims:
        shown = (diffs + dims)[:3]
        more = len(diffs) + len(dims) - len(shown)
        raise ConfigError(
            f"{path}: holds another model than {out / 'config.yaml'} describes (checkpoint vs config: "
            f"{'; '.join(shown)}{f'; and {more} more' if more else ''})"
        )
    return ckpt


def _fit(
    cfg: Config, out: Path, resume: bool, command: str | None, world: World, overwrite: bool = False
) -> dict[str, Any]:
    t = cfg.train
    device = world.device
    if t.learner in ("online", "gamma_online") and world.active:
        raise ConfigError(
            f"train.learner: {t.learner} runs in one process, not under torchrun (its optimiser "
            "steps inside each sequence, with no gradient all-reduce)"
        )
    torch.manual_seed(t.seed)
    kernels.reset_ops_used()  # metrics.json's kernels.ops_used: what this run used
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
            raise ConfigError(
                f"{out / CHECKPOINT}: its optimiser state does not fit the model ({first_line(e)})"
            ) from None
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
    bar = progress_bar(
        show, cfg.name, t.epochs, "epoch", iterable=range(state["epoch"], t.epochs), initial=state["epoch"]
    )
    for epoch in bar:
        if t.early_stop and state["bad_epochs"] >= t.patience:
            break
        start = time.perf_counter()
        train_loss = train_epoch(ddp, opt, splits.train, cfg, epoch, scaler, world, progress=show)
        if sched is not None:
            sched.step()
        val = evaluate(
            model,
            splits.val,
            t.loss,
            device=device,
            precision=t.precision,
            world=world,
            progress=show,
            desc="validation",
        )
        seconds = time.perf_counter() - start
        state["train_seconds"] += seconds
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "seconds": seconds,
            }
        )
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
            torch_save_atomic(
                {
                    **common,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "state": state,
                },
                out / CHECKPOINT,
            )
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val['accuracy']:.3f}", best=f"{state['best_val']:.3f}")
    bar.close()
    stopped_early = t.early_stop and state["bad_epochs"] >= t.patience and state["epoch"] < t.epochs
    metrics = finalize(cfg, out, splits, state, stopped_early, command, world) if world.is_main else None
    return broadcast(metrics, world)


def finalize(
    cfg: Config,
    out: Path,
    splits: Splits,
    state: dict[str, Any],
    stopped_early: bool,
    command: str,
    world: World | None = None,
) -> dict[str, Any]:
    """Evaluate the best-validation model on the test split; write metrics.json, plots and report.md
    (call on rank 0 only under torchrun; ``world`` gives the device and the recorded ``world_size``)."""
    from spiketime.app.report import write_plots, write_report

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
    val = evaluate(
        model, splits.val, t.loss, device=device, precision=t.precision, progress=show, desc="validation split"
    )
    test = evaluate(model, splits.test, t.loss, device=device, precision=t.precision, progress=show, desc="test split")
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
        "kernels": kernels.describe(),  # the implementation each op has here, and which ran (spiketime.kernels)
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
    metrics = {
        **res,
        "model": "logistic regression on per-channel spike counts",
        "num_classes": s.num_classes,
        "chance": 1.0 / s.num_classes,
        "seed": cfg.train.seed,
        "config": cfg.to_dict(),
        "versions": versions(),
        "git_commit": git_commit(),
    }
    write_json(out / METRICS, metrics)
    return metrics
