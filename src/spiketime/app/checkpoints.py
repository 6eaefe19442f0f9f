"""Checkpoints: reading them safely (``torch.load(weights_only=True)``), fitting their state to a model, and
rebuilding the model a checkpoint describes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from spiketime.app.config import Config, ConfigError, first_line, from_dict, validate
from spiketime.app.factories import Model, build_model

CHECKPOINT, BEST, METRICS = "checkpoint.pt", "best.pt", "metrics.json"


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
        raise ConfigError(
            f"{p}: refused: it holds pickled Python objects besides tensors and plain data (loading "
            "it could run code); spiketime checkpoints hold only tensors, numbers, strings, lists "
            "and dicts"
        ) from None
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
        parts = (
            [f"{k} has shape {_shape(state[k])} there, {_shape(own[k])} in the model" for k in shapes[:2]]
            + [f"it lacks {k}" for k in missing[:2]]
            + [f"it has {k}, which the model has not" for k in unexpected[:2]]
        )
        more = len(missing) + len(unexpected) + len(shapes) - len(parts)
        raise ConfigError(
            f"{source}: does not fit the model: {'; '.join(parts)}{f' (and {more} more)' if more else ''}"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"{source}: does not fit the model ({first_line(e)})") from None


def config_differences(
    a: dict[str, Any], b: dict[str, Any], sections: tuple[str, ...] = ("model", "data")
) -> list[str]:
    """``section.key: A vs B`` for every key of ``sections`` whose values differ between config dicts ``a``, ``b``."""
    out = []
    for sec in sections:
        sa, sb = a.get(sec) or {}, b.get(sec) or {}
        for key in dict.fromkeys([*sa, *sb]):
            if sa.get(key) != sb.get(key):
                out.append(f"{sec}.{key}: {sa.get(key)!r} vs {sb.get(key)!r}")
    return out


def model_from_checkpoint(
    ckpt: dict[str, Any], cfg: Config | None = None, source: str = "checkpoint"
) -> tuple[Model, Config]:
    """Rebuild the model of a checkpoint (optionally under a changed config, e.g. another ``data.dt``: the model
    is built at that time step, and a :class:`GammaNetwork` computes every decay ``exp(-dt / tau)`` from its
    learned taus). A state that does not fit is a one-line :class:`ConfigError` naming ``source``."""
    cfg = cfg or validate(from_dict(ckpt["config"], f"{source} (config)"))
    model = build_model(cfg, ckpt["n_in"], ckpt["n_out"])
    load_model_state(model, ckpt["model"], source)
    return model, cfg
