"""The ``spiketime`` command: train, eval, baseline, sweep, data, bench, export.

Errors in what the user gave (config files, keys, values, checkpoints, run directories, devices, output paths)
and faults of the operating system (a full disk, a folder that cannot be written) print one line
``spiketime: error: ...`` to stderr and exit with code 2. Anything unexpected prints one line naming the
exception and a log file with its full traceback (``OUT/error.txt`` when the command has an output folder),
and exits with code 1. The parser is built without importing torch, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from spiketime.app.cli.bench import cmd_bench
from spiketime.app.cli.common import _Failure
from spiketime.app.cli.data import cmd_data
from spiketime.app.cli.evaluate import cmd_eval
from spiketime.app.cli.export import cmd_export
from spiketime.app.cli.sweep import cmd_sweep
from spiketime.app.cli.train import cmd_baseline, cmd_train
from spiketime.app.config import ConfigError, first_line
from spiketime.app.rundir import ERROR_FILE, clear_run
from spiketime.evaluate.levels import PERTURBATIONS

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
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        default=None,
        help="YAML config with sections data, model, train (defaults: built-in)",
    )
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one config key (repeatable, typed and validated)",
    )


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``spiketime`` parser for the command line ``argv`` (None: every command, complete). ``bench``'s
    options (whose choices come from torch-importing modules) are added only when ``argv`` is None or names
    ``bench``, so other commands and their ``--help`` never import torch."""
    parser = _Parser(
        prog="spiketime",
        description="Train and evaluate spiking networks that learn spike timing.",
        formatter_class=_fmt(),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train a network (default: axonal-delay LIF on timing-only CCISI)",
        formatter_class=_fmt(),
        epilog=EPILOG_SET,
    )
    _add_config_args(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="run directory (default: runs/<timestamp>-<name>); one that holds a run is refused unless --overwrite",
    )
    p.add_argument("--resume", metavar="OUT", default=None, help="continue the interrupted run in this directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds a run (its run files are removed first)",
    )
    _add_quiet(p)

    p = sub.add_parser(
        "eval",
        help="evaluate checkpoints on the test split (or --data), optionally perturbed",
        formatter_class=_fmt(),
        epilog=EPILOG_SET + ". Perturbation levels: jitter and neuron_jitter "
        "sigma in ms, delete a probability, reverse 0/1 (see docs/data.md).",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        nargs="+",
        required=True,
        help="best.pt / checkpoint.pt, or run directories (several: one line each in the plot)",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help=".npz/.pt file with x [N, T, C] and y [N] (default: the config's test split)",
    )
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a data.* key of the checkpoint's config (e.g. data.dt: a gamma model is "
        "run at the new time step, data re-binned)",
    )
    p.add_argument(
        "--perturb",
        choices=PERTURBATIONS,
        default=None,
        help="sweep a perturbation of the test spikes: write perturb_<kind>.csv and .png",
    )
    p.add_argument(
        "--levels",
        metavar="L1,L2,...",
        default=None,
        help="perturbation levels (default: jitter 0,1,2,5,10,20; delete 0,0.1,...,0.9; reverse 0,1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbation noise")
    p.add_argument(
        "--frames",
        metavar="F1,F2,...",
        default=None,
        help="run every checkpoint at each number of time steps for the data's duration (data.dt = "
        "duration / F; a gamma model recomputes its decays): write frames.csv and frames.png",
    )
    p.add_argument(
        "--hardware",
        choices=["int8", "int4"],
        default=None,
        help="deploy each checkpoint with quantised weights and hard spikes (post-training, no "
        "fine-tuning): metrics.json gets test_accuracy (deployed), hard_swap_accuracy, "
        "float_accuracy, synops_per_sample, activation_sparsity, footprint_bytes (docs/deployment.md)",
    )
    p.add_argument(
        "--membrane-bits",
        type=int,
        default=None,
        metavar="B",
        help="with --hardware: fixed-point B-bit currents and membranes with saturation, leaks 1 - 2^-k, "
        "integer delays (default: float neurons, only the weights quantised)",
    )
    p.add_argument(
        "--quant",
        choices=["per_channel", "per_tensor"],
        default="per_channel",
        help="with --hardware: one weight scale per output channel or per matrix",
    )
    p.add_argument(
        "--integer",
        action="store_true",
        help="with --membrane-bits: run the deployed model in the int64 integer-exact simulator "
        "(slower than its batched float64 twin, the same spikes)",
    )
    p.add_argument(
        "--hard",
        action="store_true",
        help="swap the spikes of a surrogate-forward model (model.spike: surrogate_forward) for the hard "
        "threshold H(v - theta), same weights, no fine-tuning (hard-spike models are unchanged)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where metrics.json (and the CSV, plot) go (default: "
        "runs/<timestamp>-eval); one that holds results is refused unless --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="write into an --out that holds results")
    _add_quiet(p)

    p = sub.add_parser(
        "baseline",
        help="logistic regression on per-channel spike counts only",
        formatter_class=_fmt(),
        epilog=EPILOG_SET,
    )
    _add_config_args(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where metrics.json goes (default: "
        "runs/<timestamp>-baseline); one that holds results is refused unless --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="write into an --out that holds results")
    _add_quiet(p)

    p = sub.add_parser(
        "data",
        help="inspect event files; make the built-in spoken digits / event digits; encode audio",
        formatter_class=_fmt(),
    )
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    q = dsub.add_parser(
        "inspect",
        help="print JSON facts about an SHD/SSC .h5, N-MNIST .bin/folder, AEDAT/DvsGesture",
        formatter_class=_fmt(),
    )
    q.add_argument("path", metavar="PATH")
    q = dsub.add_parser(
        "speech-digits",
        help="synthesise the spoken digits (en + de, 20 classes) into SHD-format train.h5 / test.h5",
        formatter_class=_fmt(),
    )
    q.add_argument("--out", metavar="DIR", default=None, help="output folder (default: $SPIKETIME_DATA/speech_digits)")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--size", default="default", help="'default' (about 10k samples), 'small', or a sample count")
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser(
        "event-digits",
        help="record scikit-learn's digits with an event-camera emulator into N-MNIST-format Train/ and Test/ folders",
        formatter_class=_fmt(),
    )
    q.add_argument("--out", metavar="DIR", default=None, help="output folder (default: $SPIKETIME_DATA/event_digits)")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--repeats", type=int, default=4, help="recordings per training image")
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser(
        "audio-to-spikes", help="encode your own WAV recordings into one SHD-format .h5 file", formatter_class=_fmt()
    )
    q.add_argument("wav_dir", metavar="WAV_DIR")
    q.add_argument("--labels", metavar="CSV", required=True, help="CSV with header file,label (optional speaker)")
    q.add_argument("--out", metavar="FILE.h5", required=True)
    q.add_argument("--jobs", type=_positive_jobs, default=None, help="worker processes (default: all cores)")
    _add_quiet(q)
    q = dsub.add_parser(
        "fetch", help="download a real dataset into the cache (or say where to put it by hand)", formatter_class=_fmt()
    )
    q.add_argument("name", choices=["shd", "ssc", "nmnist", "dvs_gesture"])
    q.add_argument("--path", metavar="DIR", default=None, help="folder to use instead of $SPIKETIME_DATA/<name>")

    p = sub.add_parser(
        "sweep", help="run a grid x seeds; write results.csv and a mean ± std table", formatter_class=_fmt()
    )
    p.add_argument("sweep_config", metavar="CONFIG", help="sweep YAML (see docs/sweeps.md)")
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default: runs/sweep-<name>)")
    p.add_argument("--jobs", type=_positive_jobs, default=1, help="runs in parallel (--executor local)")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write the table to this markdown file")
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help='local: --jobs local processes; ray: one Ray task per run (pip install "spiketime[ray]")',
    )
    p.add_argument(
        "--cpus-per-run", type=float, default=1, metavar="N", help="CPUs (and torch threads) per run, --executor ray"
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="Ray cluster for --executor ray: HOST:PORT, ray://HOST:PORT, auto or local; "
        "None: $RAY_ADDRESS, else a running local cluster, else start one",
    )
    p.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: write results.csv and table.md from the runs already finished in --out "
        "(cells with fewer seeds say (n=k), missing ones –)",
    )
    if argv is None or _command_of(argv) == "bench":
        _add_bench_parser(sub)
    else:  # listed in the top-level help; its options (and torch) only when it is the command
        sub.add_parser("bench", help=BENCH_HELP, add_help=False)

    p = sub.add_parser(
        "export",
        help="write a trained LIF network as a NIR graph (snnTorch, Norse, Lava, chips)",
        formatter_class=_fmt(),
        epilog="Time constants become NIR's continuous ones at the model's dt "
        "(docs/deployment.md); spiketime.export.from_nir(graph, dt) reads it back.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / checkpoint.pt, or a run directory")
    p.add_argument("--nir", metavar="OUT.nir", required=True, help="NIR (HDF5) file to write")
    return parser


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from spiketime.app.bench import DELAYS, LEARNERS, PRECISIONS
    from spiketime.app.bench_peers import PEERS

    p = sub.add_parser(
        "bench",
        help=BENCH_HELP,
        formatter_class=_fmt(),
        epilog="Rows: spiketime, each peer (and backend), the matmul floor; "
        "a missing peer is a 'skipped' row. See benchmarks/README.md.",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    p.add_argument("--T", metavar="T1,T2,...", default="250,1000,3000", help="sequence lengths (time steps of 1 ms)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 256 on cuda, 32 on cpu)")
    p.add_argument("--delays", choices=DELAYS, default="none", help="spiketime's delays (the peers have none)")
    p.add_argument("--learner", choices=sorted(LEARNERS), default="bptt", help="learning rule of the timed step")
    p.add_argument(
        "--connectivity",
        type=float,
        default=1.0,
        help="spiketime's model.density: fraction of hidden connections kept (the peers get the same "
        "weights, zeros included, as dense matrices)",
    )
    p.add_argument(
        "--precision", choices=list(PRECISIONS), default="fp32", help="fp32, or autocast (mixed precision) to bf16/fp16"
    )
    p.add_argument("--peers", metavar="P1,P2", default=",".join(PEERS), help="peers to compare with, or none")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and input spikes")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; fewer than cores when the machine is shared)",
    )
    p.add_argument("--json", metavar="OUT", default=None, help="also write all rows and device info to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _log_traceback(args: argparse.Namespace | None, error: BaseException) -> Path | None:
    """Write ``error``'s full traceback to the command's output folder (``OUT/error.txt``) when it exists, else
    to a new file in the temporary folder; return its path (None if nothing could be written)."""
    from spiketime.files import atomic_write_text

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


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "baseline": cmd_baseline,
    "sweep": cmd_sweep,
    "data": cmd_data,
    "bench": cmd_bench,
    "export": cmd_export,
}


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
        print(
            f"spiketime: error: {what}{e.strerror or first_line(e) or type(e).__name__}"
            f"{f' (traceback in {log})' if log else ''}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        hint = {
            "train": "the last finished epoch is in OUT/checkpoint.pt: spiketime train --resume OUT",
            "sweep": "finished runs are kept: run the same sweep again to continue",
        }.get(args.command, "")
        print(f"spiketime: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen fault: one line here, the whole traceback in the log
        log = _log_traceback(args, e)
        first = first_line(e)
        print(
            f"spiketime: error: {type(e).__name__}{': ' + first if first else ''}"
            f"{f' (traceback in {log})' if log else ''}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
