"""Read a real event dataset with spiketime's readers and bin it into spike-count frames.

``PATH`` is an N-MNIST folder (``Train/<digit>/<id>.bin``, as the archive unpacks; default: the project's
``../shared/data/nmnist-1k`` when it exists) or an SHD/SSC ``.h5`` file. The events are read into an
``st.EventSet``, binned with ``st.bin_events`` into ``x [N, T, C]`` counts and a ``mask [N, T]``, and rate
normalised with ``st.rate_normalise`` (spikes deleted until the counts carry no class information). With
``--tiny`` only two files per digit are read (through a temporary folder of links; nothing is copied).

Run::

    python examples/read_real_data.py                           # the shared N-MNIST recordings
    python examples/read_real_data.py /data/N-MNIST --split test
    python examples/read_real_data.py /data/SHD/shd_test.h5 --dt 10
    python examples/read_real_data.py --tiny
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import spiketime as st

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nmnist-1k"


def linked_subset(root: Path, split: str, per_class: int, into: Path) -> Path:
    """An N-MNIST folder under ``into`` with links to the first ``per_class`` files of each digit of ``root``."""
    source = next(d for d in (root / split.capitalize(), root / split) if d.is_dir())
    for digit in sorted(d for d in source.iterdir() if d.is_dir()):
        (into / "Train" / digit.name).mkdir(parents=True)
        for f in sorted(digit.glob("*.bin"))[:per_class]:
            (into / "Train" / digit.name / f.name).symlink_to(f)
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default=str(DEFAULT), help="N-MNIST folder or SHD/SSC .h5 file")
    ap.add_argument("--split", default="train", choices=["train", "test"], help="N-MNIST split")
    ap.add_argument("--dt", type=float, default=None, help="bin width in ms (N-MNIST 1, SHD 10)")
    ap.add_argument("--tiny", action="store_true", help="read two files per digit, bin eight SHD samples")
    args = ap.parse_args()
    path = Path(args.path)
    if not path.exists():
        print(f"error: {path}: no such folder or file (give an N-MNIST folder or an SHD .h5 file)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            root = linked_subset(path, args.split, 2, Path(tmp)) if args.tiny else path
            events = st.read_nmnist(root, "train" if args.tiny else args.split)  # 34 x 34 pixels, 2 polarities
            dt, pool = args.dt or 1.0, 2  # 2 x 2 pixel blocks: 17 * 17 * 2 = 578 channels
        else:
            events = st.read_shd(path)  # 700 cochlea channels
            dt, pool = args.dt or 10.0, 1
            if args.tiny:
                events = st.EventSet(events.events[:8], events.labels[:8], events.sensor_size, events.format)
    if len(events) == 0:
        print(f"error: {path}: no samples", file=sys.stderr)
        return 2

    n_events = np.array([len(e) for e in events.events])
    t_end_ms = np.array([e["t"].max() / 1000.0 if len(e) else 0.0 for e in events.events])
    labels, per_class = np.unique(events.labels, return_counts=True)
    print(
        f"{events.format}: {len(events)} samples, sensor {tuple(events.sensor_size)}, "
        f"{len(labels)} classes {dict(zip(labels.tolist(), per_class.tolist()))}"
    )
    print(
        f"events per sample: mean {n_events.mean():.0f}  min {n_events.min()}  max {n_events.max()}  "
        f"last event at {t_end_ms.min():.0f}-{t_end_ms.max():.0f} ms"
    )

    x, mask = st.bin_events(events.events, events.sensor_size, dt_ms=dt, duration_ms=None, pool=pool)
    x, y = torch.from_numpy(x), torch.from_numpy(events.labels)
    seconds = mask.sum(axis=1) * dt / 1000.0  # each sample's own length
    rate = x.sum(dim=(1, 2)).double().numpy() / x.shape[2] / seconds
    print(f"binned x {tuple(x.shape)} {x.dtype} (N, T bins of {dt:g} ms, C channels)  mask {tuple(mask.shape)}")
    print(
        f"mean rate {rate.mean():.1f} Hz per channel  nonzero bins {float((x > 0).float().mean()):.4f}  "
        f"max count per bin {int(x.max())}"
    )

    # rate normalisation: the same number of spikes per sample in every class ('norm')
    norm = st.rate_normalise(x, y, "norm", seed=0)
    before = [float(x[y == c].sum(dim=(1, 2)).float().mean()) for c in labels]
    after = [float(norm[y == c].sum(dim=(1, 2)).float().mean()) for c in labels]
    print(
        f"mean spikes per sample, range over classes: {np.ptp(before):.0f} before, {np.ptp(after):.0f} after "
        f"'norm', which kept {float(norm.sum()) / float(x.sum()):.3f} of the spikes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
