"""Atomic file writes with the user's umask: a crash or interrupt never leaves a torn file.

Every write goes through a ``.NAME.*.tmp`` file beside its target and ``os.replace``; a killed write can leave
one (the application removes them when the next run starts in that folder).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "TMP_GLOB",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "finite_json",
    "write_json",
    "write_yaml",
    "torch_save_atomic",
]

TMP_GLOB = ".*.tmp"
"""The pattern of :func:`atomic_path`'s temporary files (``.NAME.*.tmp`` beside their target)."""


def _umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block succeeds it replaces ``path`` (``os.replace``),
    when it fails it is removed. A crash or interrupt never leaves a torn ``path``. The file gets the mode a
    plain ``open`` would give it (``0o666 & ~umask``), not ``mkstemp``'s private 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_GLOB[2:])
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory (fsynced) and ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode())


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (nan, inf) replaced by None, so that it is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite numbers become null, :func:`finite_json`), atomically."""
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as YAML (``yaml.safe_dump``, keys in order) to ``path`` atomically."""
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file and rename: a crash never leaves a torn checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
