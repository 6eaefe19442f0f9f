"""Event file formats as they ship: SHD/SSC HDF5, N-MNIST binary, DVS128 Gesture AEDAT 3.1.

Events are numpy structured arrays shaped like tonic's: ``t, x, p`` for 1-D sensors (audio) and
``t, x, y, p`` for 2-D sensors (cameras); ``t`` is in microseconds (int64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

EVENTS_1D = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
EVENTS_2D = np.dtype([("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")])


def write_shd(path: str | Path, times: Sequence[np.ndarray], units: Sequence[np.ndarray], labels: Sequence[int],
              speakers: Sequence[int] | None = None, keys: Sequence[str] | None = None) -> None:
    """Write an SHD/SSC-layout HDF5 file: ``spikes/times`` (vlen, seconds), ``spikes/units`` (vlen uint16),
    ``labels`` (uint16), optional ``extra/speaker`` and ``extra/keys`` (class names)."""
    tmp = Path(f"{path}.tmp")
    with h5py.File(tmp, "w") as f:
        n = len(labels)
        t_ds = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        u_ds = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t_ds[i] = np.asarray(times[i], dtype=np.float32)
            u_ds[i] = np.asarray(units[i], dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.asarray([k.encode() for k in keys]))
    tmp.replace(path)


def encode_nmnist(events: np.ndarray) -> bytes:
    """N-MNIST's 40-bit events: byte 0 x, byte 1 y, then 24 bits (big-endian) with polarity in bit 23 and a
    23-bit timestamp in microseconds."""
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-MNIST timestamps must lie in [0, 2**23) microseconds")
    out = np.empty((len(events), 5), dtype=np.uint8)
    out[:, 0] = events["x"]
    out[:, 1] = events["y"]
    word = (events["p"].astype(np.int64) << 23) | t
    out[:, 2] = (word >> 16) & 0xFF
    out[:, 3] = (word >> 8) & 0xFF
    out[:, 4] = word & 0xFF
    return out.tobytes()


def write_nmnist(path: str | Path, events: np.ndarray) -> None:
    """Write one N-MNIST ``.bin`` sample (atomically)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(encode_nmnist(events))
    tmp.replace(path)
