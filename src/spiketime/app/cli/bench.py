"""``spiketime bench``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spiketime.app.config import ConfigError
from spiketime.app.rundir import check_out_file


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from spiketime.app.bench import BenchArgs, parse_peers, parse_T, run_bench
    from spiketime.app.bench_report import device_info, format_table
    from spiketime.files import write_json
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
    rows = run_bench(
        T_list,
        batch,
        device,
        args.delays,
        args.learner,
        args.precision,
        peers,
        args.repeats,
        args.warmup,
        seed=args.seed,
        progress=not args.quiet and sys.stderr.isatty(),
        connectivity=args.connectivity,
    )
    print(format_table(rows))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        bench = BenchArgs(
            T_list,
            batch,
            device,
            args.delays,
            args.learner,
            args.precision,
            peers,
            args.repeats,
            args.warmup,
            seed=args.seed,
            connectivity=args.connectivity,
        )
        write_json(
            out,
            {
                "bench": dataclasses.asdict(bench),
                "device_info": device_info(device),
                "rows": rows,
                "command": "spiketime " + " ".join(sys.argv[1:]),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        print(f"-> {out}")
    return 0
