"""Helpers shared by the commands: output folders, checkpoint labels, config overrides of a checkpoint."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from spiketime.app.config import ConfigError
from spiketime.app.rundir import check_out_dir


def _out(arg: str | None, name: str) -> Path:
    return Path(arg) if arg else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def _claim_out(args: argparse.Namespace, out: Path) -> Path:
    """Check the output folder ``out`` of a command before its work: writable, and not holding earlier
    results unless ``--overwrite``. Record it as the command's folder for error logs (``args.out_dir``) and
    whether it existed before (a folder this command made is removed again when the command fails on bad
    input)."""
    check_out_dir(out)
    if not getattr(args, "overwrite", False) and (out / "metrics.json").exists():
        raise ConfigError(f"{out} holds results (metrics.json): choose another --out, or --overwrite")
    args.out_dir, args.out_existed = out, out.exists()
    return out


def _checkpoint_label(path: str) -> str:
    p = Path(path)
    return p.name if p.is_dir() else p.parent.name if p.parent.name else p.stem


def _checkpoint_labels(paths: list[str]) -> list[str]:
    """One label per checkpoint (its run directory's name), or the paths themselves when two names clash."""
    labels = [_checkpoint_label(c) for c in paths]
    return labels if len(set(labels)) == len(labels) else list(paths)


def _data_overrides(items: list[str], frames: bool = False) -> list[tuple[str, Any]]:
    """``eval --set`` items: only ``data.*`` keys (the model and its training are the checkpoint's), and not
    ``data.dt`` with ``--frames`` (which sets it)."""
    from spiketime.app import config

    overrides = [config.parse_set(item) for item in items]
    for key, _ in overrides:
        if not key.startswith("data."):
            raise ConfigError(f"--set {key}: eval takes only data.* overrides (e.g. data.dt, data.jitter)")
        if frames and key == "data.dt":
            raise ConfigError(f"--set {key}: eval --frames takes data.* overrides other than data.dt (set by --frames)")
    return overrides


def _checkpoint_config(path: str, ckpt: dict[str, Any], overrides: list[tuple[str, Any]], hard: bool = False) -> Any:
    """A loaded checkpoint's config with ``overrides`` applied (not validated yet); ``hard`` swaps a LIF model's
    spikes for the hard threshold (``model.spike: hard``; a gamma model's spikes are hard already)."""
    from spiketime.app import config

    cfg = config.from_dict(ckpt["config"], f"{path} (config)")
    for key, value in overrides:
        config.apply(cfg, key, value)
    if hard and cfg.model.type == "lif":
        config.apply(cfg, "model.spike", "hard")
    return cfg


def _cached_test_split(cfg: Any, cache: dict[str, Any], progress: bool = True) -> Any:
    """The test split of ``cfg.data``, made once per distinct data config in ``cache`` (``progress``: the bar of
    a built-in set generated on first use)."""
    from spiketime.app.splits import make_split

    key = json.dumps(cfg.to_dict()["data"], sort_keys=True)
    if key not in cache:
        cache[key] = make_split(cfg.data, "test", progress)
    return cache[key]


class _Failure(Exception):
    """A command that ran but could not finish (e.g. training diverged): one line, exit 1, no traceback."""


def renamed(error: Exception, names: dict[str, str]) -> ConfigError:
    """A library error whose message starts with an argument name (``membrane_bits: ...``) as a one-line
    :class:`ConfigError` that names the option the user gave instead (``--membrane-bits: ...``)."""
    text = str(error)
    for arg, option in names.items():
        if re.match(rf"{re.escape(arg)}\b", text):
            return ConfigError(option + text[len(arg) :])
    return error if isinstance(error, ConfigError) else ConfigError(text)
