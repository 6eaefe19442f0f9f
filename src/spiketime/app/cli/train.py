"""``spiketime train`` and ``spiketime baseline``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spiketime.app.cli.common import _claim_out, _Failure, _out
from spiketime.app.config import ConfigError
from spiketime.app.rundir import check_out_dir


def cmd_train(args: argparse.Namespace) -> int:
    from spiketime.app import config
    from spiketime.app.checkpoints import CHECKPOINT
    from spiketime.app.fit import fit
    from spiketime.errors import TrainingDiverged

    if args.resume:
        out = Path(args.resume)
        if args.config or args.overrides or args.out or args.overwrite:
            raise ConfigError(
                "--resume continues a run with its own config.yaml: drop --config, --set, --out and --overwrite"
            )
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--resume {out}: is a file, expected a run directory")
        if not out.is_dir():
            raise ConfigError(f"{out}: resume directory not found")
        if not (out / "config.yaml").is_file() or not (out / CHECKPOINT).is_file():
            raise ConfigError(f"{out}: not a run to resume (expected config.yaml and {CHECKPOINT})")
        cfg = config.load(out / "config.yaml")
    else:
        cfg = config.load(args.config, args.overrides)
        out = _out(args.out, cfg.name)
    if os.environ.get("RANK", "0") in ("", "0"):  # rank 0 owns the folder (under torchrun the others only read)
        check_out_dir(out, "--resume" if args.resume else "--out")
        args.out_dir, args.out_existed = out, out.exists()
    # fit checks the device and refuses a folder that holds a run (unless --overwrite) before any work
    if args.quiet:
        cfg.train.progress = False
    try:
        metrics = fit(cfg, out, resume=bool(args.resume), overwrite=args.overwrite)
    except TrainingDiverged as e:
        raise _Failure(f"{e}; stopped without writing this epoch: {_last_good(out)}") from None
    if os.environ.get("RANK", "0") not in ("", "0"):  # under torchrun only rank 0 reports
        return 0
    print(
        f"test_accuracy={metrics['test_accuracy']:.4f} val_accuracy={metrics['val_accuracy']:.4f} "
        f"epochs={metrics['epochs']} train_seconds={metrics['train_seconds']:.1f} -> {out}"
    )
    return 0


def _last_good(out: Path) -> str:
    """Where a stopped run's last good state is, in words."""
    from spiketime.app.checkpoints import CHECKPOINT

    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        return "no epoch had finished, so there is no checkpoint"
    import torch

    epoch = torch.load(ckpt, map_location="cpu", weights_only=True).get("state", {}).get("epoch", "?")
    return f"the last good epoch ({epoch}) is in {ckpt} (spiketime train --resume {out} continues from it)"


def cmd_baseline(args: argparse.Namespace) -> int:
    from spiketime.app import config
    from spiketime.app.fit import run_baseline

    cfg = config.load(args.config, args.overrides)
    out = _claim_out(args, _out(args.out, "baseline"))
    m = run_baseline(cfg, out, progress=not args.quiet)
    print(f"test_accuracy={m['test_accuracy']:.4f} (chance {m['chance']:.4f}) -> {out / 'metrics.json'}")
    return 0
