"""``spiketime export --nir``."""

from __future__ import annotations

import argparse

from spiketime.app.config import ConfigError
from spiketime.app.rundir import check_out_file


def cmd_export(args: argparse.Namespace) -> int:
    from spiketime.app.checkpoints import load_checkpoint, model_from_checkpoint
    from spiketime.export import write_nir

    ckpt = load_checkpoint(args.checkpoint)
    model, cfg = model_from_checkpoint(ckpt, source=str(args.checkpoint))
    check_out_file(args.nir, "--nir")
    if cfg.model.type != "lif":
        raise ConfigError(
            f"{args.checkpoint}: model.type {cfg.model.type} cannot be exported to NIR (no NIR "
            "primitive for gamma buckets)"
        )
    out = write_nir(model, args.nir, config=cfg.to_dict()["model"])
    kinds = [type(n).__name__ for n in __import__("nir").read(str(out)).nodes.values()]
    print(
        f"{args.checkpoint}: {ckpt['n_in']} inputs, hidden {cfg.model.hidden}, {ckpt['n_out']} outputs, "
        f"dt {cfg.data.dt} ms; nodes: {', '.join(sorted(set(kinds)))} -> {out}"
    )
    return 0
