"""The ``spiketime`` command: train, eval, baseline, sweep.

Errors in what the user gave (config files, keys, values, checkpoints, run directories) print one
line ``spiketime: error: ...`` to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spiketime.config import ConfigError

EPILOG_SET = "--set takes section.key=value, e.g. --set model.delays=synaptic --set model.hidden=[64,64]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fmt() -> type:
    return argparse.ArgumentDefaultsHelpFormatter


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML config with sections data, model, train (defaults: built-in)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one config key (repeatable, typed and validated)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spiketime", description="Train and evaluate spiking networks that learn spike timing.",
                     formatter_class=_fmt())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a network (default: axonal-delay LIF on timing-only CCISI)",
                       formatter_class=_fmt(), epilog=EPILOG_SET)
    _add_config_args(p)
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<timestamp>-<name>)")
    p.add_argument("--resume", metavar="OUT", default=None, help="continue the interrupted run in this directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="evaluate a checkpoint on the test split (or --data)", formatter_class=_fmt(),
                       epilog=EPILOG_SET)
    p.add_argument("--checkpoint", metavar="PATH", required=True, help="best.pt / checkpoint.pt, or a run directory")
    p.add_argument("--data", metavar="PATH", default=None, help=".npz/.pt file with x [N, T, C] and y [N] (default: the config's test split)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a key of the checkpoint's config (e.g. data.dt)")
    p.add_argument("--out", metavar="DIR", default=None, help="where metrics.json goes (default: runs/<timestamp>-eval)")

    p = sub.add_parser("baseline", help="logistic regression on per-channel spike counts only",
                       formatter_class=_fmt(), epilog=EPILOG_SET)
    _add_config_args(p)
    p.add_argument("--out", metavar="DIR", default=None, help="where metrics.json goes (default: runs/<timestamp>-baseline)")

    p = sub.add_parser("sweep", help="run a grid x seeds; write results.csv and a mean ± std table", formatter_class=_fmt())
    p.add_argument("sweep_config", metavar="CONFIG", help="sweep YAML (see docs/sweeps.md)")
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default: runs/sweep-<name>)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (local processes)")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write the table to this markdown file")
    return parser


def _out(arg: str | None, name: str) -> Path:
    return Path(arg) if arg else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def cmd_train(args: argparse.Namespace) -> int:
    from spiketime import config
    from spiketime.learning.trainer import CHECKPOINT, fit

    if args.resume:
        out = Path(args.resume)
        if args.config or args.overrides or args.out:
            raise ConfigError("--resume continues a run with its own config.yaml: drop --config, --set and --out")
        if not out.is_dir():
            raise ConfigError(f"{out}: resume directory not found")
        if not (out / "config.yaml").is_file() or not (out / CHECKPOINT).is_file():
            raise ConfigError(f"{out}: not a run to resume (expected config.yaml and {CHECKPOINT})")
        cfg = config.load(out / "config.yaml")
    else:
        cfg = config.load(args.config, args.overrides)
        out = _out(args.out, cfg.name)
    if args.quiet:
        cfg.train.progress = False
    metrics = fit(cfg, out, resume=bool(args.resume))
    print(f"test_accuracy={metrics['test_accuracy']:.4f} val_accuracy={metrics['val_accuracy']:.4f} "
          f"epochs={metrics['epochs']} train_seconds={metrics['train_seconds']:.1f} -> {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from spiketime import config
    from spiketime.data.datasets import load_array_file, make_split
    from spiketime.learning.trainer import evaluate, load_checkpoint, model_from_checkpoint
    from spiketime.rundir import git_commit, versions, write_json

    ckpt = load_checkpoint(args.checkpoint)
    cfg = config.from_dict(ckpt["config"], f"{args.checkpoint} (config)")
    for item in args.overrides:
        config.apply(cfg, *config.parse_set(item))
    config.validate(cfg)
    model, cfg = model_from_checkpoint(ckpt, cfg)
    data = load_array_file(args.data) if args.data else make_split(cfg.data, "test")
    if data.x.shape[-1] != ckpt["n_in"]:
        raise ConfigError(f"{args.data or 'data'}: {data.x.shape[-1]} channels, the model expects {ckpt['n_in']}")
    result = evaluate(model, data, cfg.train.loss)
    out = _out(args.out, "eval")
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"], "num_classes": ckpt["n_out"],
               "samples": len(data), "checkpoint": str(args.checkpoint), "data": args.data or "config test split",
               "config": cfg.to_dict(), "versions": versions(), "git_commit": git_commit()}
    write_json(out / "metrics.json", metrics)
    print(f"test_accuracy={result['accuracy']:.4f} -> {out / 'metrics.json'}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from spiketime import config
    from spiketime.learning.trainer import run_baseline

    cfg = config.load(args.config, args.overrides)
    out = _out(args.out, "baseline")
    m = run_baseline(cfg, out)
    print(f"test_accuracy={m['test_accuracy']:.4f} (chance {m['chance']:.4f}) -> {out / 'metrics.json'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from spiketime.sweep import run_sweep

    run_sweep(args.sweep_config, args.out, jobs=args.jobs, markdown=args.markdown)
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "baseline": cmd_baseline, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"spiketime: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "the last finished epoch is in OUT/checkpoint.pt: spiketime train --resume OUT",
                "sweep": "finished runs are kept: run the same sweep again to continue"}.get(args.command, "")
        print(f"spiketime: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
