"""Fuzzing the binary readers: >= 1000 seeded random mutations per format (bit flips, truncations, insertions,
byte-range overwrites, aligned overwrites with boundary values).  Every mutant must either read into sound events
or raise DataFormatError (one line, naming the file), and finish within a time bound.

A reader stuck in Python is stopped by SIGALRM (the test then fails); one stuck in C code (HDF5) cannot be
interrupted, so faulthandler dumps the stack and ends the process instead of letting the run hang.
"""

from __future__ import annotations

import faulthandler
import signal
import struct
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from spiketime.data import formats as F
from spiketime.data.formats import EVENTS_1D, EVENTS_2D, DataFormatError

pytestmark = pytest.mark.slow

MUTANTS = 1200
SOFT_LIMIT_S = 5.0  # every read must take less than this
HARD_LIMIT_S = 30.0  # a read still running after this is a hang
BOUNDARY = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x7FFFFFFFFFFFFFFF,
    0xFFFFFFFFFFFFFFFF,
]


class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    def on_alarm(signum, frame):
        raise Hung(f"read still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + 15, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = ("flip", "truncate", "insert", "overwrite", "boundary")[int(rng.integers(5))]
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        b = b[: int(rng.integers(len(b)))]
    elif kind == "insert":
        i = int(rng.integers(len(b) + 1))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    elif kind == "overwrite":
        i = int(rng.integers(len(b)))
        n = min(int(rng.integers(1, 33)), len(b) - i)
        fill = rng.choice([0, 255, -1])
        b[i : i + n] = bytes([int(fill)] * n) if fill >= 0 else rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:
        width = int(rng.choice([1, 2, 4, 8]))
        i = int(rng.integers(len(b) // width)) * width
        value = int(rng.choice(BOUNDARY)) & ((1 << (8 * width)) - 1)
        b[i : i + width] = value.to_bytes(width, "little")[: len(b) - i]
    return bytes(b), kind


def fuzz(
    tmp_path: Path,
    suffix: str,
    bases: list[bytes],
    read: Callable[[Path], object],
    check: Callable[[object], None],
    seed: int,
) -> Counter:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"mutant{suffix}"
    outcome: Counter = Counter()
    failures = []
    slowest = 0.0
    for i in range(MUTANTS):
        data, kind = mutate(bases[i % len(bases)], rng)
        path.write_bytes(data)
        outcome[kind] += 1
        t0 = time.perf_counter()
        try:
            with deadline(HARD_LIMIT_S):
                result = read(path)
        except DataFormatError as e:
            msg = str(e)
            if "\n" in msg or str(path) not in msg:
                failures.append((i, kind, f"bad message: {msg!r}"))
            outcome["error"] += 1
        except Exception as e:  # anything else is a reader bug
            failures.append((i, kind, repr(e)[:200]))
        else:
            try:
                check(result)
            except AssertionError as e:
                failures.append((i, kind, f"read but unsound: {e}"))
            outcome["ok"] += 1
        slowest = max(slowest, time.perf_counter() - t0)
    assert not failures, f"{len(failures)} mutants broke the reader, first: {failures[:3]}"
    assert slowest < SOFT_LIMIT_S, f"slowest read took {slowest:.2f} s"
    assert outcome["ok"] > 0 and outcome["error"] > 0, outcome  # the mutations hit both sides
    return outcome


def check_2d(ev: object, w: int, h: int) -> None:
    assert isinstance(ev, np.ndarray) and ev.dtype == EVENTS_2D
    if len(ev):
        assert ev["x"].min() >= 0 and ev["x"].max() < w and ev["y"].min() >= 0 and ev["y"].max() < h
        assert ev["t"].min() >= 0 and set(np.unique(ev["p"]).tolist()) <= {0, 1}


def test_fuzz_nmnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(100)
    ev = np.empty(300, dtype=EVENTS_2D)
    ev["t"] = np.sort(rng.integers(0, 300_000, 300))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, 300), rng.integers(0, 34, 300), rng.integers(0, 2, 300)
    base = bytearray(F.encode_nmnist(ev))
    base[5 * 150 + 1] = 240  # an overflow marker
    out = fuzz(tmp_path, ".bin", [bytes(base)], F.read_nmnist_file, lambda e: check_2d(e, 34, 34), seed=1)
    assert sum(out[k] for k in ("ok", "error")) == MUTANTS


def aedat_base(rng: np.random.Generator) -> bytes:
    ev = np.empty(400, dtype=EVENTS_2D)
    ev["t"] = np.sort(rng.integers(0, 1 << 31, 400)) + np.repeat([0, 3 << 31], 200)
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, 400), rng.integers(0, 128, 400), rng.integers(0, 2, 400)
    data = F.encode_aedat31(ev, packet_size=64)
    special = struct.pack("<hhiiiiii", 0, 0, 8, 4, 0, 2, 2, 2) + struct.pack("<Ii", 0x1234, 5) * 2
    other = struct.pack("<hhiiiiii", 5, 0, 12, 8, 0, 1, 1, 1) + bytes(12)
    invalid = struct.pack("<hhiiiiii", 1, 0, 8, 4, 0, 1, 1, 0) + struct.pack("<Ii", (3 << 17) | (4 << 2), 9)
    cut = data.index(F.AEDAT_END_HEADER) + len(F.AEDAT_END_HEADER)
    return data[:cut] + special + other + invalid + data[cut:]


def test_fuzz_aedat31(tmp_path: Path) -> None:
    base = aedat_base(np.random.default_rng(200))
    assert len(F.decode_aedat31(base)) == 400
    fuzz(tmp_path, ".aedat", [base], F.read_aedat31, lambda e: check_2d(e, 128, 128), seed=2)


def check_shd(es: object) -> None:
    assert isinstance(es, F.EventSet) and len(es.events) == len(es.labels)
    for ev in es.events:
        assert ev.dtype == EVENTS_1D
        if len(ev):
            assert ev["x"].min() >= 0 and ev["x"].max() < 700 and ev["t"].min() >= 0


def test_fuzz_shd_h5(tmp_path: Path) -> None:
    """Two layouts: our writer's (fixed-length keys) and one with vlen string keys and an empty sample."""
    rng = np.random.default_rng(300)
    times = [np.sort(rng.random(int(rng.integers(1, 40)))).astype(np.float16) for _ in range(6)]
    units = [rng.integers(0, 700, len(t)) for t in times]
    a = tmp_path / "a.h5"
    F.write_shd(
        a, times, units, rng.integers(0, 20, 6), speakers=rng.integers(0, 12, 6), keys=[f"k{i}" for i in range(20)]
    )
    b = tmp_path / "b.h5"
    with h5py.File(b, "w") as f:
        t = f.create_dataset("spikes/times", (4,), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (4,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(4):
            t[i] = times[i] if i != 2 else np.zeros(0, np.float16)
            u[i] = units[i].astype(np.uint16) if i != 2 else np.zeros(0, np.uint16)
        f["labels"] = np.array([1, 2, 3, 4], dtype=np.uint16)
        f.create_dataset("extra/keys", data=[f"word{i}" for i in range(35)], dtype=h5py.string_dtype())
    assert len(F.read_shd(a)) == 6 and len(F.read_shd(b).keys) == 35
    fuzz(tmp_path, ".h5", [a.read_bytes(), b.read_bytes()], F.read_shd, check_shd, seed=3)
