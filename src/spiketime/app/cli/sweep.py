"""``spiketime sweep``."""

from __future__ import annotations

import argparse
import sys


def cmd_sweep(args: argparse.Namespace) -> int:
    from spiketime.app.sweep import RunFailed, run_sweep

    try:
        run_sweep(
            args.sweep_config,
            args.out,
            jobs=args.jobs,
            markdown=args.markdown,
            executor=args.executor,
            cpus_per_run=args.cpus_per_run,
            ray_address=args.ray_address,
            collect=args.collect,
        )
    except RunFailed as e:  # one line naming the run; its traceback is in the run's error.txt
        print(f"spiketime: error: {e}", file=sys.stderr)
        return 1
    return 0
