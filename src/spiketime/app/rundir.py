"""Run-directory helpers: checks of output folders, the files of a run, versions, git commit (atomic writes:
:mod:`spiketime.files`).

A run directory holds :data:`RUN_FILES`; a new run never silently reuses one (:func:`check_new_run`), and
:func:`clear_run` removes exactly those files for ``--overwrite``. Atomic writes go through ``.NAME.*.tmp``
files beside their target; a killed write can leave one, and :func:`remove_stale_tmp` removes them when the
next run starts in that folder.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from pathlib import Path

from spiketime.app.config import ConfigError
from spiketime.files import TMP_GLOB

# what `spiketime train` writes into its run directory (any of the first four marks a run)
ERROR_FILE = "error.txt"  # the traceback of a run that failed unexpectedly (CLI and sweeps)
RUN_MARKERS = ("config.yaml", "checkpoint.pt", "best.pt", "metrics.json")
RUN_FILES = RUN_MARKERS + ("report.md", "learning_curves.png", "raster.png", "delays.png", ERROR_FILE)


def versions() -> dict[str, str]:
    import numpy
    import torch

    from spiketime import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "spiketime": __version__,
    }


def git_commit() -> str | None:
    """The commit of the spiketime source tree (suffixed ``-dirty`` with local changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def holds_run(path: str | Path) -> bool:
    """Whether folder ``path`` holds a spiketime run (any of :data:`RUN_MARKERS`)."""
    return any((Path(path) / name).exists() for name in RUN_MARKERS)


def check_new_run(out: str | Path, overwrite: bool = False) -> None:
    """Refuse (one line) to start a new run in a folder that holds one, unless ``overwrite``."""
    if not overwrite and holds_run(out):
        raise ConfigError(f"{out} holds a run: use --resume {out}, or --overwrite")


def clear_run(out: str | Path) -> None:
    """Remove the files of a run (:data:`RUN_FILES`) and stale temporary files from ``out``; keep anything else."""
    out = Path(out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    remove_stale_tmp(out)


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Remove the temporary files that a killed atomic write left in ``folder`` (``.NAME.*.tmp``); return them."""
    folder = Path(folder)
    stale = sorted(folder.glob(TMP_GLOB)) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _unwritable(path: Path) -> str | None:
    """Why folder ``path`` cannot be made and written (None if it can). Probes by making the folders and a file,
    then removes what it made."""
    if path.exists() and not path.is_dir():
        return "is a file, expected a directory"
    made, parent = [], path
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".spiketime-probe.", suffix=TMP_GLOB[2:])
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write there ({e.strerror or e.__class__.__name__})"
    finally:
        for p in made:  # deepest first; only the folders this probe made, and only while empty
            try:
                p.rmdir()
            except OSError:
                break
    return None


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """A one-line :class:`ConfigError` naming ``flag`` unless ``path`` is, or can become, a writable directory."""
    why = _unwritable(Path(path))
    if why:
        raise ConfigError(f"{flag} {path}: {why}")


def check_out_file(path: str | Path, flag: str = "--out") -> None:
    """A one-line :class:`ConfigError` naming ``flag`` unless ``path`` names a file that can be written (not a
    directory; its folder is, or can become, writable)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory, expected a file name")
    why = _unwritable(path.parent)
    if why:
        raise ConfigError(f"{flag} {path}: folder {path.parent}: {why}")
