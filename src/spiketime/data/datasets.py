"""Labelled spike datasets in memory: :class:`Split` (samples ``[N, T, C]``, labels, mask) and :class:`Splits`
(train / validation / test), a per-split seed, and a reader of ``.npz``/``.pt`` arrays.

Making the splits of a config (generated timing tasks, event sets read, binned and normalised) is the
application's :mod:`spiketime.app.splits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spiketime.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One labelled split in memory: samples ``x [N, T, C]``, labels ``y [N]`` and, for event sets, the mask ``[N, T]`` of each sample's own length."""

    x: Tensor  # [N, T, C] spike counts (float for synthetic tasks, uint8 for event sets)
    y: Tensor  # [N] class indices
    mask: Tensor | None = None  # [N, T] bool: True within the sample's own length (event sets)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    """The train, validation and test :class:`Split` of one dataset, with its number of classes."""

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


def load_array_file(path: str | Path) -> Split:
    """Read a labelled spike dataset from ``.npz``/``.pt`` with ``x`` [N, T, C] and ``y`` [N]."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: data file not found")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                x, y = torch.as_tensor(f["x"]), torch.as_tensor(f["y"])
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            x, y = torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])
    except (KeyError, TypeError, IndexError):
        raise InputError(f"{p}: expected arrays 'x' [N, T, C] and 'y' [N]") from None
    except Exception as e:  # unreadable archive: zip/pickle errors vary by format
        raise InputError(f"{p}: cannot read data file ({e.__class__.__name__})") from None
    if x.dim() != 3 or y.dim() != 1 or len(x) != len(y):
        raise InputError(f"{p}: expected 'x' [N, T, C] and 'y' [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    return Split(x.float(), y.long())
