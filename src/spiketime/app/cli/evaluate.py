"""``spiketime eval``: test accuracy of checkpoints, perturbation curves, frame-rate sweeps, hardware models."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spiketime.app.cli.common import (
    _cached_test_split,
    _checkpoint_config,
    _checkpoint_labels,
    _claim_out,
    _data_overrides,
    _out,
    renamed,
)
from spiketime.app.config import ConfigError


def _parse_levels(text: str | None, kind: str) -> list[float]:
    from spiketime.evaluate.perturb import DEFAULT_LEVELS, check_level

    if text is None:
        return list(DEFAULT_LEVELS[kind])
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--levels {text!r}: expected comma-separated numbers, e.g. 0,1,2,5") from None
    if not levels:
        raise ConfigError("--levels: expected at least one level")
    for lv in levels:
        try:
            check_level(kind, lv)
        except ValueError as e:
            raise ConfigError(f"--levels: {e}") from None
    return levels


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        return _cmd_eval(args)
    except ConfigError as e:  # the hardware model's errors name its argument: say the option instead
        raise renamed(e, {"membrane_bits": "--membrane-bits"}) from None


def _cmd_eval(args: argparse.Namespace) -> int:
    from spiketime.app import config
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.app.rundir import git_commit, versions
    from spiketime.data.datasets import load_array_file
    from spiketime.evaluate.perturb import LEVEL_UNITS, perturbation_curve
    from spiketime.evaluate.plots import plot_perturbation
    from spiketime.files import atomic_write_text, write_json
    from spiketime.learning.bptt import evaluate
    from spiketime.progress import progress_bar

    if args.levels is not None and args.perturb is None:
        raise ConfigError("--levels needs --perturb KIND")
    if args.membrane_bits is not None and args.hardware is None:
        raise ConfigError("--membrane-bits needs --hardware int8|int4")
    if args.integer and args.membrane_bits is None:
        raise ConfigError(
            "--integer needs --hardware int8|int4 --membrane-bits B (the integer model has fixed-point neurons)"
        )
    if args.hardware is not None and (args.perturb is not None or args.frames is not None):
        raise ConfigError(
            "--hardware evaluates the unperturbed test split at the trained time step (drop --perturb / --frames)"
        )
    spec = None
    if args.hardware is not None:
        from spiketime.functional.quant import HARDWARE_BITS
        from spiketime.hardware.fixed_point import HardwareSpec

        spec = HardwareSpec(HARDWARE_BITS[args.hardware], args.quant == "per_channel", args.membrane_bits)
    if args.frames is not None:
        if args.perturb is not None or args.data is not None:
            raise ConfigError("--frames: runs the config's test split unperturbed (drop --perturb / --data)")
        return _eval_frames(args)
    levels = _parse_levels(args.levels, args.perturb) if args.perturb else None
    labels = _checkpoint_labels(args.checkpoint)
    overrides = _data_overrides(args.overrides)
    loaded = [load_checkpoint(c) for c in args.checkpoint]  # all errors before any work
    array_file = load_array_file(args.data) if args.data else None
    out = _claim_out(args, _out(args.out, "eval"))
    datasets: dict[str, Any] = {}
    results = []
    show = not args.quiet
    for path, label, ckpt in progress_bar(
        show and len(loaded) > 1,
        "checkpoints",
        len(loaded),
        "checkpoint",
        iterable=list(zip(args.checkpoint, labels, loaded)),
    ):
        model, cfg = model_from_checkpoint(
            ckpt, config.validate(_checkpoint_config(path, ckpt, overrides, args.hard)), source=str(path)
        )
        data = array_file if array_file is not None else _cached_test_split(cfg, datasets, show)
        if data.x.shape[-1] != ckpt["n_in"]:
            raise ConfigError(f"{args.data or 'data'}: {data.x.shape[-1]} channels, {path} expects {ckpt['n_in']}")
        row = {
            "checkpoint": str(path),
            "label": label,
            "num_classes": ckpt["n_out"],
            "samples": len(data),
            "spike": cfg.model.spike,
        }
        if spec is not None:
            row.update(_eval_hardware(path, ckpt, overrides, model, cfg, data, spec, args.integer, show))
            print(
                f"{label}: {args.hardware}{'' if spec.membrane_bits is None else f' membrane {spec.membrane_bits} bits'}"
                f" test_accuracy={row['test_accuracy']:.4f} hard_swap_accuracy={row['hard_swap_accuracy']:.4f} "
                f"float_accuracy={row['float_accuracy']:.4f} synops_per_sample={row['synops_per_sample']:.0f}"
            )
        elif levels is None:
            res = evaluate(model, data, cfg.train.loss, progress=show, desc=label)
            row.update(test_accuracy=res["accuracy"], test_loss=res["loss"], spikes_per_sample=res["spikes_per_sample"])
            print(f"{label}: test_accuracy={res['accuracy']:.4f}")
        else:
            accs = perturbation_curve(
                model,
                data,
                cfg.train.loss,
                args.perturb,
                levels,
                cfg.data.dt,
                seed=args.seed,
                progress=show,
                desc=f"{label} {args.perturb}",
            )
            row.update(
                test_accuracy=accs[0] if levels[0] == 0 else None, perturb=args.perturb, levels=levels, accuracies=accs
            )
            print(f"{label}: {args.perturb} " + " ".join(f"{lv:g}:{a:.4f}" for lv, a in zip(levels, accs)))
        results.append(row)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "results": results,
        "data": args.data or "config test split",
        "perturb": args.perturb,
        "hard": args.hard,
        "seed": args.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "command": "spiketime " + " ".join(sys.argv[1:]),
    }
    if spec is not None:
        metrics.update(hardware=args.hardware, membrane_bits=args.membrane_bits, quant=args.quant)
    if len(results) == 1 and levels is None:
        metrics.update({k: v for k, v in results[0].items() if k not in ("label", "spike")}, config=cfg.to_dict())
    write_json(out / "metrics.json", metrics)
    if levels is not None:
        lines = ["checkpoint,label,perturb,level,accuracy"]
        lines += [
            f"{r['checkpoint']},{r['label']},{args.perturb},{lv:g},{a:.6f}"
            for r in results
            for lv, a in zip(levels, r["accuracies"])
        ]
        atomic_write_text(out / f"perturb_{args.perturb}.csv", "\n".join(lines) + "\n")
        chance = 1.0 / results[0]["num_classes"]
        plot_perturbation(
            {r["label"]: (levels, r["accuracies"]) for r in results},
            LEVEL_UNITS[args.perturb],
            out / f"perturb_{args.perturb}.png",
            chance=chance,
            title=f"{args.perturb} at test time",
        )
        print(f"-> {out / f'perturb_{args.perturb}.csv'}, {out / f'perturb_{args.perturb}.png'}")
    else:
        print(f"-> {out / 'metrics.json'}")
    return 0


def _eval_hardware(
    path: str,
    ckpt: dict[str, Any],
    overrides: list[tuple[str, Any]],
    model: Any,
    cfg: Any,
    data: Any,
    spec: Any,
    integer: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """``eval --hardware``: the model as trained, its hard swap (float weights) and the deployed model
    (``progress``: a bar over the batches of each pass on stderr)."""
    from spiketime.app import config
    from spiketime.app.checkpoints import model_from_checkpoint
    from spiketime.hardware.evaluate import evaluate_hardware, float_costs
    from spiketime.learning.bptt import evaluate

    if cfg.model.type != "lif":
        raise ConfigError(f"{path}: hardware evaluation supports model.type lif, this checkpoint is {cfg.model.type}")
    trained = evaluate(model, data, cfg.train.loss, progress=progress, desc="as trained")
    hard, _ = model_from_checkpoint(
        ckpt, config.validate(_checkpoint_config(path, ckpt, overrides, hard=True)), source=str(path)
    )
    swap = evaluate(hard, data, cfg.train.loss, progress=progress, desc="hard swap")
    hw = evaluate_hardware(hard, data, cfg.train.loss, spec, integer=integer, progress=progress)
    return {
        **hw,
        "hard_swap_accuracy": swap["accuracy"],
        "float_accuracy": trained["accuracy"],
        "float_synops_per_sample": float_costs(hard, data, progress=progress)["synops_per_sample"],
        "spikes_per_sample": swap["spikes_per_sample"],
    }


def _parse_frames(text: str) -> list[int]:
    try:
        frames = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--frames {text!r}: expected comma-separated frame counts, e.g. 500,1000,2000") from None
    if not frames or min(frames) < 1:
        raise ConfigError(f"--frames {text!r}: expected at least one frame count, each >= 1")
    return frames


def _eval_frames(args: argparse.Namespace) -> int:
    """``eval --frames``: accuracy (and spikes per sample) of every checkpoint at each number of frames."""
    from spiketime.app import config
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.app.rundir import git_commit, versions
    from spiketime.evaluate.plots import plot_perturbation
    from spiketime.files import atomic_write_text, write_json
    from spiketime.learning.bptt import evaluate
    from spiketime.progress import progress_bar

    frames = _parse_frames(args.frames)
    overrides = _data_overrides(args.overrides, frames=True)
    labels = _checkpoint_labels(args.checkpoint)
    loaded = [load_checkpoint(c) for c in args.checkpoint]
    out = _claim_out(args, _out(args.out, "eval"))
    rows = []
    show = not args.quiet
    for n in progress_bar(show, "frames", len(frames), "resolution", iterable=frames):  # frame-major: one binning
        datasets: dict[str, Any] = {}  # of the test split alive at a time
        for path, label, ckpt in zip(args.checkpoint, labels, loaded):
            cfg = _checkpoint_config(path, ckpt, overrides, args.hard)
            config.apply(cfg, "data.dt", cfg.data.duration / n)
            model, cfg = model_from_checkpoint(ckpt, config.validate(cfg), source=str(path))
            res = evaluate(
                model,
                _cached_test_split(cfg, datasets, show),
                cfg.train.loss,
                progress=show,
                desc=f"{label} at {n} frames",
            )
            rows.append(
                {
                    "checkpoint": str(path),
                    "label": label,
                    "frames": n,
                    "dt": cfg.data.dt,
                    "test_accuracy": res["accuracy"],
                    "spikes_per_sample": res["spikes_per_sample"],
                    "num_classes": ckpt["n_out"],
                }
            )
            print(f"{label}: frames={n} dt={cfg.data.dt:.4g} ms test_accuracy={res['accuracy']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "metrics.json",
        {
            "frames": frames,
            "results": rows,
            "versions": versions(),
            "git_commit": git_commit(),
            "command": "spiketime " + " ".join(sys.argv[1:]),
        },
    )
    lines = ["checkpoint,label,frames,dt,accuracy,spikes_per_sample"]
    lines += [
        f"{r['checkpoint']},{r['label']},{r['frames']},{r['dt']:.6g},{r['test_accuracy']:.6f},"
        f"{r['spikes_per_sample']:.1f}"
        for r in rows
    ]
    atomic_write_text(out / "frames.csv", "\n".join(lines) + "\n")
    curves = {lab: (frames, [r["test_accuracy"] for r in rows if r["label"] == lab]) for lab in labels}
    plot_perturbation(
        curves,
        "frames for the same duration",
        out / "frames.png",
        chance=1.0 / rows[0]["num_classes"],
        title="accuracy against time resolution",
    )
    print(f"-> {out / 'frames.csv'}, {out / 'frames.png'}")
    return 0
