"""DVS128 Gesture: AEDAT 3.1 recordings, their label CSVs and the trial lists (format described in
:mod:`spiketime.data.formats`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spiketime.data.events import (
    _POLARITY_DTYPE,
    AEDAT31_VERSION_LINE,
    AEDAT_END_HEADER,
    AEDAT_PACKET_HEADER,
    DVS128_SENSOR,
    DVS_GESTURE_CLASSES,
    EVENTS_2D,
    DataFormatError,
    EventSet,
    _read_bytes,
)
from spiketime.files import atomic_write_bytes

# ----------------------------------------------------------------------------------- DVS128 Gesture (AEDAT 3.1)


def encode_aedat31(events: np.ndarray, *, packet_size: int = 4096, source: str = "DVS128") -> bytes:
    """AEDAT 3.1 bytes of :data:`EVENTS_2D` events (in the given order) as polarity-event packets of at most
    ``packet_size`` events, a new packet wherever ``t >> 31`` (the packet's eventTSOverflow) changes."""
    t = events["t"].astype(np.int64)
    if len(t) and t.min() < 0:
        raise ValueError("AEDAT timestamps must be >= 0")
    for f in ("x", "y"):
        if len(t) and (events[f].min() < 0 or events[f].max() >= 1 << 15):
            raise ValueError(f"AEDAT {f} must lie in [0, 2**15)")
    header = (
        AEDAT31_VERSION_LINE
        + b"#Format: RAW\r\n"
        + f"#Source 0: {source}\r\n".encode()
        + b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n"
        + AEDAT_END_HEADER
    )
    body = np.empty(len(t), dtype=_POLARITY_DTYPE)
    body["data"] = (
        (events["x"].astype(np.uint32) << 17)
        | (events["y"].astype(np.uint32) << 2)
        | (events["p"].astype(np.uint32) << 1)
        | 1
    )
    body["ts"] = (t & 0x7FFFFFFF).astype(np.int32)
    overflow = t >> 31
    starts = [0] + [int(i) + 1 for i in np.flatnonzero(np.diff(overflow))] + [len(t)]
    parts = [header]
    for a, b in zip(starts[:-1], starts[1:]):
        for s in range(a, b, packet_size):
            e = min(s + packet_size, b)
            n = e - s
            parts.append(AEDAT_PACKET_HEADER.pack(1, 0, 8, 4, int(overflow[s]), n, n, n))
            parts.append(body[s:e].tobytes())
    return b"".join(parts)


def write_aedat31(path: str | Path, events: np.ndarray, *, packet_size: int = 4096) -> None:
    """Write an AEDAT 3.1 recording of polarity events (atomically)."""
    atomic_write_bytes(path, encode_aedat31(events, packet_size=packet_size))


def decode_aedat31(data: bytes, name: str = "<bytes>", sensor_size: tuple[int, ...] = DVS128_SENSOR) -> np.ndarray:
    """Decode AEDAT 3.1 bytes into the valid polarity events, :data:`EVENTS_2D` in file order."""
    if not data.startswith(AEDAT31_VERSION_LINE):
        m = re.match(rb"#!AER-DAT(\d+\.\d+)", data[:32])
        what = f"AEDAT version {m.group(1).decode()}" if m else "no '#!AER-DAT3.1' line at byte 0"
        raise DataFormatError(f"{name}: {what}, expected AEDAT 3.1")
    end = data.find(AEDAT_END_HEADER)
    if end < 0:
        raise DataFormatError(f"{name}: no '#!END-HEADER' line (header truncated or damaged)")
    pos = 0
    for line in data[:end].split(b"\r\n")[:-1]:
        if not line.startswith(b"#"):
            raise DataFormatError(f"{name}: byte {pos}: header line does not start with '#'")
        if b"\n" in line or b"\r" in line:
            raise DataFormatError(f"{name}: byte {pos}: header line does not end with CRLF")
        pos += len(line) + 2
    if pos != end:
        raise DataFormatError(f"{name}: byte {pos}: header line does not end with CRLF before '#!END-HEADER'")
    pos = end + len(AEDAT_END_HEADER)
    w, h = sensor_size[:2]
    size = len(data)
    chunks: list[np.ndarray] = []
    offsets: list[int] = []
    overflows: list[int] = []
    while pos < size:
        if size - pos < AEDAT_PACKET_HEADER.size:
            raise DataFormatError(f"{name}: byte {pos}: truncated packet header ({size - pos} of 28 bytes)")
        etype, _src, esize, ts_off, ts_ovf, _cap, number, valid = AEDAT_PACKET_HEADER.unpack_from(data, pos)
        if etype < 0:
            raise DataFormatError(
                f"{name}: byte {pos}: compressed packet (eventType {etype & 0xFFFF:#06x}), only "
                f"the RAW format is supported"
            )
        if esize <= 0 or number < 0 or not 0 <= valid <= number or ts_ovf < 0:
            raise DataFormatError(
                f"{name}: byte {pos}: bad packet header (eventSize {esize}, eventNumber {number}, "
                f"eventValid {valid}, eventTSOverflow {ts_ovf})"
            )
        nbytes = number * esize
        if nbytes > size - pos - AEDAT_PACKET_HEADER.size:
            raise DataFormatError(
                f"{name}: byte {pos}: packet body of {number} x {esize} bytes runs past the end "
                f"of the file ({size - pos - AEDAT_PACKET_HEADER.size} bytes left)"
            )
        if etype == 1:
            if esize != 8 or ts_off != 4:
                raise DataFormatError(
                    f"{name}: byte {pos}: polarity packet with eventSize {esize} and "
                    f"eventTSOffset {ts_off}, expected 8 and 4"
                )
            chunks.append(
                np.frombuffer(data, dtype=_POLARITY_DTYPE, count=number, offset=pos + AEDAT_PACKET_HEADER.size)
            )
            offsets.append(pos + AEDAT_PACKET_HEADER.size)
            overflows.append(ts_ovf)
        pos += AEDAT_PACKET_HEADER.size + nbytes
    if not chunks:
        return np.zeros(0, dtype=EVENTS_2D)
    counts = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    raw = np.concatenate(chunks)
    word = raw["data"].astype(np.int64)
    ts = raw["ts"].astype(np.int64)
    ok = (word & 1).astype(bool)
    x = (word >> 17) & 0x7FFF
    y = (word >> 2) & 0x7FFF

    def where(i: int, field_off: int) -> int:
        k = int(np.searchsorted(np.cumsum(counts), i, side="right"))
        return offsets[k] + 8 * (i - int(counts[:k].sum())) + field_off

    checks = (("negative timestamp", ok & (ts < 0), None, 4), ("x", ok & (x >= w), x, 0), ("y", ok & (y >= h), y, 0))
    for what, cond, values, field_off in checks:
        bad = np.flatnonzero(cond)
        if len(bad):
            i = int(bad[0])
            desc = what if values is None else f"{what}={values[i]} outside the {w}x{h} sensor"
            raise DataFormatError(f"{name}: byte {where(i, field_off)}: {desc}")
    full_t = (np.repeat(np.asarray(overflows, dtype=np.int64), counts) << 31) | ts
    out = np.empty(int(ok.sum()), dtype=EVENTS_2D)
    out["t"] = full_t[ok]
    out["x"] = x[ok]
    out["y"] = y[ok]
    out["p"] = (word[ok] >> 1) & 1
    return out


def read_aedat31(path: str | Path, sensor_size: tuple[int, ...] = DVS128_SENSOR) -> np.ndarray:
    """Read the valid polarity events of an AEDAT 3.1 file as :data:`EVENTS_2D` (``t`` µs, absolute, 64-bit)."""
    return decode_aedat31(_read_bytes(Path(path), str(path)), str(path), sensor_size)


def write_dvs_labels(path: str | Path, labels: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> None:
    """Write a DVS Gesture ``<trial>_labels.csv`` (``labels`` 0..10 are written as classes 1..11)."""
    rows = ["class,startTime_usec,endTime_usec"]
    rows += [f"{int(c) + 1},{int(s)},{int(e)}" for c, s, e in zip(labels, starts, ends, strict=True)]
    Path(path).write_text("\r\n".join(rows) + "\r\n")


def read_dvs_labels(path: str | Path) -> np.ndarray:
    """Read a DVS Gesture labels csv into an int64 array ``[k, 3]``: label (class - 1, 0..10), start, end (µs)."""
    name = str(path)
    try:
        text = _read_bytes(Path(path), name).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{name}: not a text file (byte {e.start} is not UTF-8)") from None
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines or lines[0][1].replace(" ", "") != "class,startTime_usec,endTime_usec":
        got = lines[0][1][:60] if lines else "an empty file"
        raise DataFormatError(f"{name}: line 1: expected the header 'class,startTime_usec,endTime_usec', got {got!r}")
    rows = []
    for lineno, ln in lines[1:]:
        parts = [s.strip() for s in ln.split(",")]
        if len(parts) != 3 or not all(re.fullmatch(r"\d+", s) for s in parts):
            raise DataFormatError(
                f"{name}: line {lineno}: expected 'class,startTime_usec,endTime_usec' as three "
                f"integers, got {ln[:60]!r}"
            )
        c, s, e = (int(v) for v in parts)
        if not 1 <= c <= len(DVS_GESTURE_CLASSES):
            raise DataFormatError(f"{name}: line {lineno}: class {c} outside 1..{len(DVS_GESTURE_CLASSES)}")
        if s > e or e >= 1 << 62:
            raise DataFormatError(f"{name}: line {lineno}: segment [{s}, {e}) is not a time interval")
        rows.append((c - 1, s, e))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _labels_csv_of(aedat: Path) -> Path:
    return aedat.with_name(aedat.stem + "_labels.csv")


def segment_recording(events: np.ndarray, segments: np.ndarray) -> list[np.ndarray]:
    """Cut a recording into its labelled samples: ``start <= t < end``, ``t`` made relative to ``start``."""
    out = []
    for _, s, e in segments:
        seg = events[(events["t"] >= s) & (events["t"] < e)].copy()
        seg["t"] -= s
        out.append(seg)
    return out


def _gesture_dir(root: Path) -> Path:
    for cand in (root, root / "DvsGesture"):
        if (cand / "trials_to_train.txt").is_file() or (cand / "trials_to_test.txt").is_file():
            return cand
    raise DataFormatError(
        f"{root}: no trials_to_train.txt / trials_to_test.txt (expected the DvsGesture/ folder "
        f"of the DVS128 Gesture dataset)"
    )


def _trial_list(folder: Path, split: str) -> list[tuple[int, Path]]:
    lst = folder / f"trials_to_{split}.txt"
    name = str(lst)
    try:
        text = _read_bytes(lst, name).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{name}: not a text file (byte {e.start} is not UTF-8)") from None
    out = []
    for i, ln in enumerate(text.splitlines()):
        ln = ln.strip()
        if not ln:
            continue
        if not ln.endswith(".aedat") or "/" in ln or "\\" in ln:
            raise DataFormatError(
                f"{name}: line {i + 1}: expected a recording name like user01_fluorescent.aedat, got {ln[:60]!r}"
            )
        out.append((i + 1, folder / ln))
    return out


def read_dvs_recording(aedat: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The labelled samples of one DVS Gesture recording and its ``[k, 3]`` label rows (its ``_labels.csv``)."""
    aedat = Path(aedat)
    segments = read_dvs_labels(_labels_csv_of(aedat))
    return segment_recording(read_aedat31(aedat), segments), segments


def read_dvs_gesture(root: str | Path, split: str) -> EventSet:
    """Read split ``"train"`` or ``"test"`` of DVS128 Gesture: the recordings listed in ``trials_to_<split>.txt`` of
    ``root`` (the ``DvsGesture/`` folder, or a folder holding it), each cut into its labelled samples.
    ``speakers`` holds the user (subject) number of each sample."""
    if split not in ("train", "test"):
        raise ValueError(f"read_dvs_gesture: split must be 'train' or 'test', got {split!r}")
    folder = _gesture_dir(Path(root))
    events: list[np.ndarray] = []
    labels: list[int] = []
    users: list[int] = []
    files: list[str] = []
    for lineno, aedat in _trial_list(folder, split):
        if not aedat.is_file():
            raise DataFormatError(
                f"{folder / f'trials_to_{split}.txt'}: line {lineno}: {aedat.name} not found in {folder}"
            )
        segs, rows = read_dvs_recording(aedat)
        m = re.match(r"user(\d+)", aedat.name)
        user = int(m.group(1)) if m else -1
        events += segs
        labels += [int(r) for r in rows[:, 0]]
        users += [user] * len(segs)
        files += [str(aedat)] * len(segs)
    return EventSet(
        events,
        np.asarray(labels, dtype=np.int64),
        DVS128_SENSOR,
        "dvs_gesture",
        speakers=np.asarray(users, dtype=np.int64),
        keys=list(DVS_GESTURE_CLASSES),
        files=files,
    )
