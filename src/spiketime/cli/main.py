"""The ``spiketime`` command: train, eval, baseline, sweep, data, bench, export.

Errors in what the user gave (config files, keys, values, checkpoints, run directories, devices, output paths)
and faults of the operating system (a full disk, a folder that cannot be written) print one line
``spiketime: error: ...`` to stderr and exit with code 2. Anything unexpected prints one line naming the
exception and a log file with its full traceback (``OUT/error.txt`` when the command has an output folder),
and exits with code 1. The parser is built without importing torch, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from spiketime.config import ConfigError, first_line
from spiketime.evaluate.levels import PERTURBATIONS
from spiketime.rundir import ERROR_FILE, check_out_dir, check_out_file, clear_run

BENCH_HELP = "time one training step of 700-256-256-20 against snnTorch, SpikingJelly, Norse"
EPILOG_SET = "--set takes section.key=value, e.g. --set model.delays=synaptic --set model.hidden=[64,64]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not when the help already says its default, nor for None or a flag."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if "default" in text or hidden or action.default == [] or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def _fmt() -> type:
    return _Formatter


def _positive_jobs(text: str) -> int:
    """``--jobs N``: an integer >= 1 (argparse turns the ValueError into a one-line usage error)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive_jobs.__name__ = "integer >= 1"  # argparse's message: "invalid integer >= 1 value: '-3'"


def _add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet``: nothing on stderr but errors (no progress bars, no stage lines)."""
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines on stderr")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML config with sections data, model, train (defaults: built-in)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one config key (repeatable, typed and validated)")


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``spiketime`` parser for the command line ``argv`` (None: every command, complete). ``bench``'s
    options (whose choices come from torch-importing modules) are added only when ``argv`` is None or names
    ``bench``, so other commands and their ``--help`` never import torch."""
    parser = _Parser(prog="spiketime", description="Train and evaluate spiking networks that learn spike timing.",
                     formatter_class=_fmt())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a network (default: axonal-delay LIF on timing-only CCISI)",
                       formatter_class=_fmt(), epilog=EPILOG_SET)
    _add_config_args(p)
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<timestamp>-<name>); "
                   "one that holds a run is refused unless --overwrite")
    p.add_argument("--resume", metavar="OUT", default=None, help="continue the interrupted run in this directory")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds a run (its run files are removed first)")
    _add_quiet(p)

    p = sub.add_parser("eval", help="evaluate checkpoints on the test split (or --data), optionally perturbed",
                       formatter_class=_fmt(), epilog=EPILOG_SET + ". Perturbation levels: jitter and neuron_jitter "
                       "sigma in ms, delete a probability, reverse 0/1 (see docs/data.md).")
    p.add_argument("--checkpoint", metavar="PATH", nargs="+", required=True,
                   help="best.pt / checkpoint.pt, or run directories (several: one line each in the plot)")
    p.add_argument("--data", metavar="PATH", default=None, help=".npz/.pt file with x [N, T, C] and y [N] (default: the config's test split)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a data.* key of the checkpoint's config (e.g. data.dt: a gamma model is "
                        "run at the new time step, data re-binned)")
    p.add_argument("--perturb", choices=PERTURBATIONS, default=None,
                   help="sweep a perturbation of the test spikes: write perturb_<kind>.csv and .png")
    p.add_argument("--levels", metavar="L1,L2,...", default=None,
                   help="perturbation levels (default: jitter 0,1,2,5,10,20; delete 0,0.1,...,0.9; reverse 0,1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbation noise")
    p.add_argument("--frames", metavar="F1,F2,...", default=None,
                   help="run every checkpoint at each number of time steps for the data's duration (data.dt = "
                        "duration / F; a gamma model recomputes its decays): write frames.csv and frames.png")
    p.add_argument("--hardware", choices=["int8", "int4"], default=None,
                   help="deploy each checkpoint with quantised weights and hard spikes (post-training, no "
                        "fine-tuning): metrics.json gets test_accuracy (deployed), hard_swap_accuracy, "
                        "float_accuracy, synops_per_sample, activation_sparsity, footprint_bytes (docs/deployment.md)")
    p.add_argument("--membrane-bits", type=int, default=None, metavar="B",
                   help="with --hardware: fixed-point B-bit currents and membranes with saturation, leaks 1 - 2^-k, "
                        "integer delays (default: float neurons, only the weights quantised)")
    p.add_argument("--quant", choices=["per_channel", "per_tensor"], default="per_channel",
                   help="with --hardware: one weight scale per output channel or per matrix")
    p.add_argument("--integer", action="store_true",
                   help="with --membrane-bits: run the deployed model in the int64 integer-exact simulator "
                        "(slower than its batched float64 twin, the same spikes)")
    p.add_argument("--hard", action="store_true",
                   help="swap the spikes of a surrogate-forward model (model.spike: surrogate_forward) for the hard "
                        "threshold H(v - theta), same weights, no fine-tuning (hard-spike models are unchanged)")
    p.add_argument("--out", metavar="DIR", default=None, help="where metrics.json (and the CSV, plot) go (default: "
                   "runs/<timestamp>-eval); one that holds results is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that holds results")
    _add_quiet(p)

    p = sub.add_parser("baseline", help="logistic regression on per-channel spike counts only",
                       formatter_class=_fmt(), epilog=EPILOG_SET)
    _add_config_args(p)
    p.add_argument("--out", metavar="DIR", default=None, help="where metrics.json goes (default: "
                   "runs/<timestamp>-baseline); one that holds results is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that holds results")
    _add_quiet(p)

    p = sub.add_parser("data", help="inspect event files; make the built-in spoken digits / event digits; encode audio",
                       formatter_class=_fmt())
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    q = dsub.add_parser("inspect", help="print JSON facts about an SHD/SSC .h5, N-MNIST .bin/folder, AEDAT/DvsGesture",
                        formatter_class=_fmt())
    q.add_argument("path", metavar="PATH")
    q = dsub.add_parser("speech-digits", help="synthesise the spoken digits (en + de, 20 classes) into SHD-format "
                        "train.h5 / test.h5", formatter_class=_fmt())
    q.add_argument("--out", metavar="DIR", default=None, help="output folder (default: $SPIKETIME_DATA/speech_digits)")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--size", default="default", help="'default' (about 10k samples), 'small', or a sample count")
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser("event-digits", help="record scikit-learn's digits with an event-camera emulator into "
                        "N-MNIST-format Train/ and Test/ folders", formatter_class=_fmt())
    q.add_argument("--out", metavar="DIR", default=None, help="output folder (default: $SPIKETIME_DATA/event_digits)")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--repeats", type=int, default=4, help="recordings per training image")
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser("audio-to-spikes", help="encode your own WAV recordings into one SHD-format .h5 file",
                        formatter_class=_fmt())
    q.add_argument("wav_dir", metavar="WAV_DIR")
    q.add_argument("--labels", metavar="CSV", required=True, help="CSV with header file,label (optional speaker)")
    q.add_argument("--out", metavar="FILE.h5", required=True)
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser("fetch", help="download a real dataset into the cache (or say where to put it by hand)",
                        formatter_class=_fmt())
    q.add_argument("name", choices=["shd", "ssc", "nmnist", "dvs_gesture"])
    q.add_argument("--path", metavar="DIR", default=None, help="folder to use instead of $SPIKETIME_DATA/<name>")

    p = sub.add_parser("sweep", help="run a grid x seeds; write results.csv and a mean ± std table", formatter_class=_fmt())
    p.add_argument("sweep_config", metavar="CONFIG", help="sweep YAML (see docs/sweeps.md)")
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default: runs/sweep-<name>)")
    p.add_argument("--jobs", type=_positive_jobs, default=1, help="runs in parallel (--executor local)")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write the table to this markdown file")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: --jobs local processes; ray: one Ray task per run (pip install \"spiketime[ray]\")")
    p.add_argument("--cpus-per-run", type=float, default=1, metavar="N",
                   help="CPUs (and torch threads) per run, --executor ray")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="Ray cluster for --executor ray: HOST:PORT, ray://HOST:PORT, auto or local; "
                        "None: $RAY_ADDRESS, else a running local cluster, else start one")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: write results.csv and table.md from the runs already finished in --out "
                        "(cells with fewer seeds say (n=k), missing ones –)")
    if argv is None or _command_of(argv) == "bench":
        _add_bench_parser(sub)
    else:  # listed in the top-level help; its options (and torch) only when it is the command
        sub.add_parser("bench", help=BENCH_HELP, add_help=False)

    p = sub.add_parser("export", help="write a trained LIF network as a NIR graph (snnTorch, Norse, Lava, chips)",
                       formatter_class=_fmt(), epilog="Time constants become NIR's continuous ones at the model's dt "
                       "(docs/deployment.md); spiketime.export.from_nir(graph, dt) reads it back.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / checkpoint.pt, or a run directory")
    p.add_argument("--nir", metavar="OUT.nir", required=True, help="NIR (HDF5) file to write")
    return parser


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from spiketime.bench import DELAYS, LEARNERS, PEERS, PRECISIONS

    p = sub.add_parser("bench", help=BENCH_HELP, formatter_class=_fmt(), epilog="Rows: spiketime, each peer (and backend), the matmul floor; "
                       "a missing peer is a 'skipped' row. See benchmarks/README.md.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    p.add_argument("--T", metavar="T1,T2,...", default="250,1000,3000", help="sequence lengths (time steps of 1 ms)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 256 on cuda, 32 on cpu)")
    p.add_argument("--delays", choices=DELAYS, default="none", help="spiketime's delays (the peers have none)")
    p.add_argument("--learner", choices=sorted(LEARNERS), default="bptt", help="learning rule of the timed step")
    p.add_argument("--connectivity", type=float, default=1.0,
                   help="spiketime's model.density: fraction of hidden connections kept (the peers get the same "
                   "weights, zeros included, as dense matrices)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="fp32, or autocast (mixed precision) to bf16/fp16")
    p.add_argument("--peers", metavar="P1,P2", default=",".join(PEERS), help="peers to compare with, or none")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and input spikes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; fewer than cores when the machine is shared)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write all rows and device info to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


def cmd_train(args: argparse.Namespace) -> int:
    from spiketime import config
    from spiketime.learning.losses import TrainingDiverged
    from spiketime.learning.trainer import CHECKPOINT, fit

    if args.resume:
        out = Path(args.resume)
        if args.config or args.overrides or args.out or args.overwrite:
            raise ConfigError("--resume continues a run with its own config.yaml: drop --config, --set, --out "
                              "and --overwrite")
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
    print(f"test_accuracy={metrics['test_accuracy']:.4f} val_accuracy={metrics['val_accuracy']:.4f} "
          f"epochs={metrics['epochs']} train_seconds={metrics['train_seconds']:.1f} -> {out}")
    return 0


def _last_good(out: Path) -> str:
    """Where a stopped run's last good state is, in words."""
    from spiketime.learning.trainer import CHECKPOINT

    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        return "no epoch had finished, so there is no checkpoint"
    import torch

    epoch = torch.load(ckpt, map_location="cpu", weights_only=True).get("state", {}).get("epoch", "?")
    return f"the last good epoch ({epoch}) is in {ckpt} (spiketime train --resume {out} continues from it)"


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
    from spiketime import config

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
    from spiketime import config

    cfg = config.from_dict(ckpt["config"], f"{path} (config)")
    for key, value in overrides:
        config.apply(cfg, key, value)
    if hard and cfg.model.type == "lif":
        config.apply(cfg, "model.spike", "hard")
    return cfg


def _cached_test_split(cfg: Any, cache: dict[str, Any], progress: bool = True) -> Any:
    """The test split of ``cfg.data``, made once per distinct data config in ``cache`` (``progress``: the bar of
    a built-in set generated on first use)."""
    from spiketime.data.datasets import make_split

    key = json.dumps(cfg.to_dict()["data"], sort_keys=True)
    if key not in cache:
        cache[key] = make_split(cfg.data, "test", progress)
    return cache[key]


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
    from spiketime import config
    from spiketime.data.datasets import load_array_file
    from spiketime.evaluate.perturb import LEVEL_UNITS, perturbation_curve
    from spiketime.evaluate.plots import plot_perturbation
    from spiketime.learning.trainer import evaluate, load_checkpoint, model_from_checkpoint
    from spiketime.progress import progress_bar
    from spiketime.rundir import atomic_write_text, git_commit, versions, write_json

    if args.levels is not None and args.perturb is None:
        raise ConfigError("--levels needs --perturb KIND")
    if args.membrane_bits is not None and args.hardware is None:
        raise ConfigError("--membrane-bits needs --hardware int8|int4")
    if args.integer and args.membrane_bits is None:
        raise ConfigError("--integer needs --hardware int8|int4 --membrane-bits B (the integer model has "
                          "fixed-point neurons)")
    if args.hardware is not None and (args.perturb is not None or args.frames is not None):
        raise ConfigError("--hardware evaluates the unperturbed test split at the trained time step (drop --perturb "
                          "/ --frames)")
    spec = None
    if args.hardware is not None:
        from spiketime.hardware.fixed_point import HardwareSpec
        from spiketime.hardware.quant import HARDWARE_BITS

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
    for path, label, ckpt in progress_bar(show and len(loaded) > 1, "checkpoints", len(loaded), "checkpoint",
                                          iterable=list(zip(args.checkpoint, labels, loaded))):
        model, cfg = model_from_checkpoint(ckpt, config.validate(_checkpoint_config(path, ckpt, overrides, args.hard)),
                                           source=str(path))
        data = array_file if array_file is not None else _cached_test_split(cfg, datasets, show)
        if data.x.shape[-1] != ckpt["n_in"]:
            raise ConfigError(f"{args.data or 'data'}: {data.x.shape[-1]} channels, {path} expects {ckpt['n_in']}")
        row = {"checkpoint": str(path), "label": label, "num_classes": ckpt["n_out"], "samples": len(data),
               "spike": cfg.model.spike}
        if spec is not None:
            row.update(_eval_hardware(path, ckpt, overrides, model, cfg, data, spec, args.integer, show))
            print(f"{label}: {args.hardware}{'' if spec.membrane_bits is None else f' membrane {spec.membrane_bits} bits'}"
                  f" test_accuracy={row['test_accuracy']:.4f} hard_swap_accuracy={row['hard_swap_accuracy']:.4f} "
                  f"float_accuracy={row['float_accuracy']:.4f} synops_per_sample={row['synops_per_sample']:.0f}")
        elif levels is None:
            res = evaluate(model, data, cfg.train.loss, progress=show, desc=label)
            row.update(test_accuracy=res["accuracy"], test_loss=res["loss"], spikes_per_sample=res["spikes_per_sample"])
            print(f"{label}: test_accuracy={res['accuracy']:.4f}")
        else:
            accs = perturbation_curve(model, data, cfg.train.loss, args.perturb, levels, cfg.data.dt, seed=args.seed,
                                      progress=show, desc=f"{label} {args.perturb}")
            row.update(test_accuracy=accs[0] if levels[0] == 0 else None, perturb=args.perturb, levels=levels,
                       accuracies=accs)
            print(f"{label}: {args.perturb} " + " ".join(f"{lv:g}:{a:.4f}" for lv, a in zip(levels, accs)))
        results.append(row)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"results": results, "data": args.data or "config test split", "perturb": args.perturb,
               "hard": args.hard, "seed": args.seed, "versions": versions(), "git_commit": git_commit(),
               "command": "spiketime " + " ".join(sys.argv[1:])}
    if spec is not None:
        metrics.update(hardware=args.hardware, membrane_bits=args.membrane_bits, quant=args.quant)
    if len(results) == 1 and levels is None:
        metrics.update({k: v for k, v in results[0].items() if k not in ("label", "spike")}, config=cfg.to_dict())
    write_json(out / "metrics.json", metrics)
    if levels is not None:
        lines = ["checkpoint,label,perturb,level,accuracy"]
        lines += [f"{r['checkpoint']},{r['label']},{args.perturb},{lv:g},{a:.6f}"
                  for r in results for lv, a in zip(levels, r["accuracies"])]
        atomic_write_text(out / f"perturb_{args.perturb}.csv", "\n".join(lines) + "\n")
        chance = 1.0 / results[0]["num_classes"]
        plot_perturbation({r["label"]: (levels, r["accuracies"]) for r in results}, LEVEL_UNITS[args.perturb],
                          out / f"perturb_{args.perturb}.png", chance=chance, title=f"{args.perturb} at test time")
        print(f"-> {out / f'perturb_{args.perturb}.csv'}, {out / f'perturb_{args.perturb}.png'}")
    else:
        print(f"-> {out / 'metrics.json'}")
    return 0


def _eval_hardware(path: str, ckpt: dict[str, Any], overrides: list[tuple[str, Any]], model: Any, cfg: Any,
                   data: Any, spec: Any, integer: bool = False, progress: bool = False) -> dict[str, Any]:
    """``eval --hardware``: the model as trained, its hard swap (float weights) and the deployed model
    (``progress``: a bar over the batches of each pass on stderr)."""
    from spiketime import config
    from spiketime.hardware.evaluate import evaluate_hardware, float_costs
    from spiketime.learning.trainer import evaluate, model_from_checkpoint

    if cfg.model.type != "lif":
        raise ConfigError(f"{path}: hardware evaluation supports model.type lif, this checkpoint is {cfg.model.type}")
    trained = evaluate(model, data, cfg.train.loss, progress=progress, desc="as trained")
    hard, _ = model_from_checkpoint(ckpt, config.validate(_checkpoint_config(path, ckpt, overrides, hard=True)),
                                    source=str(path))
    swap = evaluate(hard, data, cfg.train.loss, progress=progress, desc="hard swap")
    hw = evaluate_hardware(hard, data, cfg.train.loss, spec, integer=integer, progress=progress)
    return {**hw, "hard_swap_accuracy": swap["accuracy"], "float_accuracy": trained["accuracy"],
            "float_synops_per_sample": float_costs(hard, data, progress=progress)["synops_per_sample"],
            "spikes_per_sample": swap["spikes_per_sample"]}


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
    from spiketime import config
    from spiketime.evaluate.plots import plot_perturbation
    from spiketime.learning.trainer import evaluate, load_checkpoint, model_from_checkpoint
    from spiketime.progress import progress_bar
    from spiketime.rundir import atomic_write_text, git_commit, versions, write_json

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
            res = evaluate(model, _cached_test_split(cfg, datasets, show), cfg.train.loss, progress=show,
                           desc=f"{label} at {n} frames")
            rows.append({"checkpoint": str(path), "label": label, "frames": n, "dt": cfg.data.dt,
                         "test_accuracy": res["accuracy"], "spikes_per_sample": res["spikes_per_sample"],
                         "num_classes": ckpt["n_out"]})
            print(f"{label}: frames={n} dt={cfg.data.dt:.4g} ms test_accuracy={res['accuracy']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {"frames": frames, "results": rows, "versions": versions(),
                                      "git_commit": git_commit(), "command": "spiketime " + " ".join(sys.argv[1:])})
    lines = ["checkpoint,label,frames,dt,accuracy,spikes_per_sample"]
    lines += [f"{r['checkpoint']},{r['label']},{r['frames']},{r['dt']:.6g},{r['test_accuracy']:.6f},"
              f"{r['spikes_per_sample']:.1f}" for r in rows]
    atomic_write_text(out / "frames.csv", "\n".join(lines) + "\n")
    curves = {lab: (frames, [r["test_accuracy"] for r in rows if r["label"] == lab]) for lab in labels}
    plot_perturbation(curves, "frames for the same duration", out / "frames.png", chance=1.0 / rows[0]["num_classes"],
                      title="accuracy against time resolution")
    print(f"-> {out / 'frames.csv'}, {out / 'frames.png'}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from spiketime import config
    from spiketime.learning.trainer import run_baseline

    cfg = config.load(args.config, args.overrides)
    out = _claim_out(args, _out(args.out, "baseline"))
    m = run_baseline(cfg, out, progress=not args.quiet)
    print(f"test_accuracy={m['test_accuracy']:.4f} (chance {m['chance']:.4f}) -> {out / 'metrics.json'}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    import json

    from spiketime.data.registry import data_home

    c = args.data_command
    if c == "inspect":
        from spiketime.data.formats import inspect

        print(json.dumps(inspect(args.path), indent=2))
    elif c == "speech-digits":
        from spiketime.data.speech_digits import make_speech_digits

        size = int(args.size) if str(args.size).isdigit() else args.size
        out = Path(args.out) if args.out else data_home() / "speech_digits"
        check_out_dir(out)
        train, test = make_speech_digits(out, seed=args.seed, jobs=args.jobs, size=size, progress=not args.quiet)
        print(f"-> {train}, {test}")
    elif c == "event-digits":
        from spiketime.data.event_digits import make_event_digits

        out = Path(args.out) if args.out else data_home() / "event_digits"
        check_out_dir(out)
        if args.repeats < 1:
            raise ConfigError(f"--repeats {args.repeats}: expected an integer >= 1")
        made = make_event_digits(out, seed=args.seed, repeats=args.repeats, jobs=args.jobs, progress=not args.quiet)
        print(f"-> {made}")
    elif c == "audio-to-spikes":
        from spiketime.data.speech_digits import audio_to_spikes, read_labels_csv, unlisted_wavs

        check_out_file(args.out)  # before the encoding work
        skipped = unlisted_wavs(Path(args.wav_dir), read_labels_csv(Path(args.labels), Path(args.wav_dir)))
        if skipped:
            print(f"spiketime: {len(skipped)} WAV file(s) in {args.wav_dir} are not in {args.labels} and are "
                  f"skipped (first: {skipped[0]})", file=sys.stderr)
        made = audio_to_spikes(Path(args.wav_dir), Path(args.labels), Path(args.out), jobs=args.jobs,
                               progress=not args.quiet)
        print(f"-> {made}")
    else:
        from spiketime.data.registry import ensure_dataset

        print(f"-> {ensure_dataset(args.name, Path(args.path) if args.path else None)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from spiketime.sweep import RunFailed, run_sweep

    try:
        run_sweep(args.sweep_config, args.out, jobs=args.jobs, markdown=args.markdown, executor=args.executor,
                  cpus_per_run=args.cpus_per_run, ray_address=args.ray_address, collect=args.collect)
    except RunFailed as e:  # one line naming the run; its traceback is in the run's error.txt
        print(f"spiketime: error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from spiketime.bench import BenchArgs, device_info, format_table, parse_peers, parse_T, run_bench
    from spiketime.rundir import write_json

    from spiketime.learning.distributed import check_device

    T_list, peers = parse_T(args.T), parse_peers(args.peers)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device, "--device")
    batch = args.batch if args.batch is not None else (256 if device == "cuda" else 32)
    if batch < 1 or args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--batch and --repeats must be >= 1, --warmup >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: expected an integer >= 1")
        torch.set_num_threads(args.threads)
    out = Path(args.json) if args.json else None
    if out is not None:
        check_out_file(out, "--json")
    rows = run_bench(T_list, batch, device, args.delays, args.learner, args.precision, peers, args.repeats,
                     args.warmup, seed=args.seed, progress=not args.quiet and sys.stderr.isatty(),
                     connectivity=args.connectivity)
    print(format_table(rows))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        bench = BenchArgs(T_list, batch, device, args.delays, args.learner, args.precision, peers, args.repeats,
                          args.warmup, seed=args.seed, connectivity=args.connectivity)
        write_json(out, {"bench": dataclasses.asdict(bench), "device_info": device_info(device), "rows": rows,
                         "command": "spiketime " + " ".join(sys.argv[1:]),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        print(f"-> {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spiketime.export import write_nir
    from spiketime.learning.trainer import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    model, cfg = model_from_checkpoint(ckpt, source=str(args.checkpoint))
    check_out_file(args.nir, "--nir")
    if cfg.model.type != "lif":
        raise ConfigError(f"{args.checkpoint}: model.type {cfg.model.type} cannot be exported to NIR (no NIR "
                          "primitive for gamma buckets)")
    out = write_nir(model, args.nir, config=cfg.to_dict()["model"])
    kinds = [type(n).__name__ for n in __import__("nir").read(str(out)).nodes.values()]
    print(f"{args.checkpoint}: {ckpt['n_in']} inputs, hidden {cfg.model.hidden}, {ckpt['n_out']} outputs, "
          f"dt {cfg.data.dt} ms; nodes: {', '.join(sorted(set(kinds)))} -> {out}")
    return 0


class _Failure(Exception):
    """A command that ran but could not finish (e.g. training diverged): one line, exit 1, no traceback."""


def _log_traceback(args: argparse.Namespace | None, error: BaseException) -> Path | None:
    """Write ``error``'s full traceback to the command's output folder (``OUT/error.txt``) when it exists, else
    to a new file in the temporary folder; return its path (None if nothing could be written)."""
    from spiketime.rundir import atomic_write_text

    text = f"spiketime {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error))
    out = getattr(args, "out_dir", None)
    try:
        if out is not None and Path(out).is_dir():
            atomic_write_text(Path(out) / ERROR_FILE, text)
            return Path(out) / ERROR_FILE
        fd, path = tempfile.mkstemp(prefix=f"spiketime-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(path)
    except OSError:
        return None


def _drop_new_out(args: argparse.Namespace) -> None:
    """After bad input: remove the output folder if this command made it and left no checkpoint in it."""
    out = getattr(args, "out_dir", None)
    if out is None or getattr(args, "out_existed", True) or not Path(out).is_dir():
        return
    if (Path(out) / "checkpoint.pt").exists():
        return
    clear_run(out)
    try:
        Path(out).rmdir()
    except OSError:  # something else is in it: keep it
        pass


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "baseline": cmd_baseline, "sweep": cmd_sweep, "data": cmd_data,
            "bench": cmd_bench, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the boundary that turns every failure into one line on stderr (module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        _drop_new_out(args)
        print(f"spiketime: error: {e}", file=sys.stderr)
        return 2
    except _Failure as e:
        print(f"spiketime: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the operating system's faults: a full disk, a folder that cannot be written
        log = _log_traceback(args, e)  # into OUT, which is kept for it (as for the unexpected, below)
        what = f"{e.filename}: " if e.filename else ""
        print(f"spiketime: error: {what}{e.strerror or first_line(e) or type(e).__name__}"
              f"{f' (traceback in {log})' if log else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "the last finished epoch is in OUT/checkpoint.pt: spiketime train --resume OUT",
                "sweep": "finished runs are kept: run the same sweep again to continue"}.get(args.command, "")
        print(f"spiketime: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen fault: one line here, the whole traceback in the log
        log = _log_traceback(args, e)
        first = first_line(e)
        print(f"spiketime: error: {type(e).__name__}{': ' + first if first else ''}"
              f"{f' (traceback in {log})' if log else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
