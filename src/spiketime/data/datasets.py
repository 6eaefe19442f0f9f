"""Train / validation / test splits for a data config.

Synthetic timing tasks generate each split from its own seed; event sets (built-in or real) are read from disk,
binned at ``data.dt`` and rate-normalised (:mod:`spiketime.data.event_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spiketime.config import TIMING_TASKS, ConfigError, DataConfig

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: Tensor  # [N, T, C] spike counts (float for synthetic tasks, uint8 for event sets)
    y: Tensor  # [N] class indices
    mask: Tensor | None = None  # [N, T] bool: True within the sample's own length (event sets)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train.x.shape[-1]


def split_seed(seed: int, split: str) -> int:
    """Independent seed per split, derived from the data seed (never shared between splits)."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def make_split(cfg: DataConfig, split: str, progress: bool = True) -> Split:
    """One split of ``cfg``'s data (``train``, ``val`` or ``test``); ``progress``: the bar of a built-in event
    set generated on first use (stderr)."""
    if cfg.task not in TIMING_TASKS:
        from spiketime.data.event_sets import load_event_split

        return load_event_split(cfg, split, progress)
    from spiketime.data.timing import generate

    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    try:
        x, y = generate(cfg.task, cfg.variant, n_samples=n, channels=cfg.channels, duration=cfg.duration,
                        dt=cfg.dt, num_classes=cfg.num_classes, noise=cfg.noise, jitter=cfg.jitter,
                        seed=split_seed(cfg.seed, split))
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    return Split(x, y)


def load_splits(cfg: DataConfig, progress: bool = True) -> Splits:
    """The three splits of ``cfg``'s data (generated, or read and binned); ``progress``: the bar of a built-in
    event set generated on first use (stderr)."""
    if cfg.task not in TIMING_TASKS:
        from spiketime.data.event_sets import load_event_splits

        return load_event_splits(cfg, progress)
    return Splits(*(make_split(cfg, s) for s in SPLITS), num_classes=cfg.num_classes)


def load_array_file(path: str | Path) -> Split:
    """Read a labelled spike dataset from ``.npz``/``.pt`` with ``x`` [N, T, C] and ``y`` [N]."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: data file not found")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                x, y = torch.as_tensor(f["x"]), torch.as_tensor(f["y"])
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            x, y = torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])
    except (KeyError, TypeError, IndexError):
        raise ConfigError(f"{p}: expected arrays 'x' [N, T, C] and 'y' [N]") from None
    except Exception as e:  # unreadable archive: zip/pickle errors vary by format
        raise ConfigError(f"{p}: cannot read data file ({e.__class__.__name__})") from None
    if x.dim() != 3 or y.dim() != 1 or len(x) != len(y):
        raise ConfigError(f"{p}: expected 'x' [N, T, C] and 'y' [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    return Split(x.float(), y.long())
