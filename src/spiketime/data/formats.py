"""Event file formats as they ship: SHD/SSC HDF5, N-MNIST binary, DVS128 Gesture AEDAT 3.1.

Events are numpy structured arrays shaped like tonic's: ``t, x, p`` for 1-D sensors (audio, :data:`EVENTS_1D`) and
``t, x, y, p`` for 2-D sensors (cameras, :data:`EVENTS_2D`); ``t`` is in microseconds (int64), every field int64.

Formats (checked against the published descriptions and the readers of tonic, SpikingJelly and iniVation's cAER):

* **SHD / SSC** (Zenke lab, HDF5): ``spikes/times`` (vlen float16, seconds), ``spikes/units`` (vlen uint16, channel
  0..699), ``labels`` (uint16), optional ``extra/speaker`` (uint16), ``extra/keys`` (class names, bytes) and
  ``extra/meta_info``.  Times become ``round(t * 1e6)`` µs (tonic truncates instead: they differ by at most 1 µs,
  only where a float16 time has a fractional microsecond); ``p`` is 1.
* **N-MNIST** ``.bin``: 5 bytes per event: ``x``, ``y``, then 24 bits big-endian with the polarity in bit 23 and a
  23-bit timestamp (µs).  As in the dataset's reference reader, an event with ``y == 240`` is a timestamp-overflow
  marker: it is dropped and adds 2**13 µs to every later timestamp (real N-MNIST files contain none).  Sensor
  34 x 34; the dataset ships as ``Train/<digit>/<id>.bin`` and ``Test/<digit>/<id>.bin``.
* **DVS128 Gesture**, AEDAT 3.1: ASCII header lines starting with ``#`` and ending in CRLF, the first one
  ``#!AER-DAT3.1``, the last ``#!END-HEADER``; then packets of a 28-byte little-endian header (int16 eventType,
  int16 eventSource, int32 eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber, eventValid)
  followed by ``eventNumber * eventSize`` bytes (as cAER's reader sizes them).  Polarity events (type 1, 8 bytes):
  uint32 data (bit 0 valid, bit 1 polarity, y in bits 2-16, x in bits 17-31) and int32 timestamp; the full
  timestamp is ``eventTSOverflow << 31 | timestamp``.  Other packet types are skipped, invalid events dropped.
  ``<trial>_labels.csv`` (header ``class,startTime_usec,endTime_usec``) cuts a recording into samples
  ``start <= t < end`` (class 1..11 -> label 0..10, ``t`` made relative to ``start``); ``trials_to_train.txt`` /
  ``trials_to_test.txt`` list the recordings of each split (folder ``DvsGesture/``).

Damaged input raises :class:`DataFormatError` (a :class:`~spiketime.config.InputError`): one line naming the file
and, for the binary formats, the byte offset.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from spiketime.data.dvs_gesture import (
    _gesture_dir,
    _labels_csv_of,
    decode_aedat31,
    encode_aedat31,
    read_aedat31,
    read_dvs_gesture,
    read_dvs_labels,
    read_dvs_recording,
    segment_recording,
    write_aedat31,
    write_dvs_labels,
)
from spiketime.data.events import (
    AEDAT31_VERSION_LINE,
    AEDAT_END_HEADER,
    AEDAT_PACKET_HEADER,
    DVS128_SENSOR,
    DVS_GESTURE_CLASSES,
    EVENTS_1D,
    EVENTS_2D,
    HDF5_SIGNATURE,
    NMNIST_OVERFLOW_US,
    NMNIST_OVERFLOW_Y,
    NMNIST_SENSOR,
    SHD_CHANNELS,
    DataFormatError,
    EventSet,
    _brief,
    _read_bytes,
)
from spiketime.files import atomic_path, atomic_write_bytes

__all__ = [
    "AEDAT31_VERSION_LINE",
    "AEDAT_END_HEADER",
    "AEDAT_PACKET_HEADER",
    "DVS128_SENSOR",
    "DVS_GESTURE_CLASSES",
    "DataFormatError",
    "EVENTS_1D",
    "EVENTS_2D",
    "EventSet",
    "HDF5_SIGNATURE",
    "NMNIST_OVERFLOW_US",
    "NMNIST_OVERFLOW_Y",
    "NMNIST_SENSOR",
    "SHD_CHANNELS",
    "decode_aedat31",
    "decode_nmnist",
    "encode_aedat31",
    "encode_nmnist",
    "inspect",
    "read_aedat31",
    "read_dvs_gesture",
    "read_dvs_labels",
    "read_dvs_recording",
    "read_nmnist",
    "read_nmnist_file",
    "read_shd",
    "segment_recording",
    "write_aedat31",
    "write_dvs_labels",
    "write_nmnist",
    "write_shd",
]


# ----------------------------------------------------------------------------------------------- SHD / SSC (HDF5)


def write_shd(
    path: str | Path,
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: Sequence[int],
    speakers: Sequence[int] | None = None,
    keys: Sequence[str] | None = None,
    *,
    time_dtype: np.dtype | type = np.float16,
) -> None:
    """Write an SHD/SSC-layout HDF5 file (atomically), with the Zenke-lab dtypes: ``spikes/times`` (vlen float16,
    seconds), ``spikes/units`` (vlen uint16), ``labels`` (uint16), optional ``extra/speaker`` (uint16) and
    ``extra/keys`` (class names as bytes).

    float16 is what the real files hold (spacing 0.5 ms at 0.5-1 s, 1 ms at 1-2 s); ``time_dtype=np.float32``
    keeps finer times (the reader accepts any float)."""
    n = len(labels)
    if len(times) != n or len(units) != n:
        raise ValueError(f"write_shd: {len(times)} time arrays, {len(units)} unit arrays, {n} labels")
    if speakers is not None and len(speakers) != n:
        raise ValueError(f"write_shd: {len(speakers)} speakers for {n} samples")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        t_ds = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        u_ds = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            u = np.asarray(units[i])
            if len(u) != len(times[i]):
                raise ValueError(f"write_shd: sample {i} has {len(times[i])} times but {len(u)} units")
            if len(u) and (u.min() < 0 or u.max() >= 1 << 16):
                raise ValueError(f"write_shd: sample {i} has units outside uint16")
            t_ds[i] = np.asarray(times[i], dtype=time_dtype)
            u_ds[i] = u.astype(np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.asarray([k.encode() for k in keys]))


def _h5_dataset(f: h5py.File, key: str, name: str) -> h5py.Dataset:
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise DataFormatError(
            f"{name}: missing dataset '{key}' (SHD/SSC files hold spikes/times, spikes/units, labels)"
        )
    return obj


def _gcol_objects(mm: mmap.mmap, addr: int, size_len: int, name: str) -> dict[int, tuple[int, int]]:
    """Objects ``index -> (data offset, size)`` of the HDF5 global heap collection at ``addr``, every one checked
    to lie inside the collection and the collection inside the file.  Each step advances >= 16 bytes."""
    end_of_file = len(mm)
    head = 8 + size_len  # "GCOL", version, 3 reserved bytes, collection size
    if addr + head > end_of_file or mm[addr : addr + 4] != b"GCOL":
        raise DataFormatError(f"{name}: byte {addr}: no global heap collection (damaged variable-length data)")
    size = int.from_bytes(mm[addr + 8 : addr + head], "little")
    end = addr + size
    if size < head or end > end_of_file:
        raise DataFormatError(f"{name}: byte {addr}: global heap collection of {size} bytes does not fit the file")
    objects: dict[int, tuple[int, int]] = {}
    pos = addr + head
    while pos + 8 + size_len <= end:  # index (2), reference count (2), reserved (4), size, data padded to 8
        index = int.from_bytes(mm[pos : pos + 2], "little")
        if index == 0:  # the free-space object closes the collection
            break
        obj_size = int.from_bytes(mm[pos + 8 : pos + 8 + size_len], "little")
        data = pos + 8 + size_len
        nxt = data + (obj_size + 7) // 8 * 8
        if nxt > end:
            raise DataFormatError(
                f"{name}: byte {pos}: global heap object of {obj_size} bytes runs past its collection"
            )
        objects[index] = (data, obj_size)
        pos = nxt
    return objects


def _heap_rows(path: Path, f: h5py.File, ds: h5py.Dataset, itemsize: int, name: str) -> list[bytes] | None:
    """The raw bytes of each element of a contiguous variable-length dataset, read from the global heap by hand.

    HDF5 itself can loop forever on a damaged global heap (seen in fuzzing), so the heap IDs are read from the
    dataset's storage and every collection they point into is walked and bounds-checked here; HDF5 only parses
    the metadata.  ``None`` when the dataset is not stored contiguously (then h5py reads it)."""
    n = ds.shape[0]
    if n == 0:
        return []
    offset = ds.id.get_offset()
    if offset is None or ds.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
        return None
    size_addr, size_len = f.id.get_create_plist().get_sizes()
    rec = 4 + size_addr + 4  # sequence length, heap collection address, object index
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if offset + n * rec > len(mm):
            raise DataFormatError(f"{name}: byte {offset}: '{ds.name.lstrip('/')}' data runs past the end of the file")
        desc = np.frombuffer(
            mm[offset : offset + n * rec],
            dtype=np.dtype([("len", "<u4"), ("addr", f"<u{size_addr}"), ("index", "<u4")]),
        )
        heaps: dict[int, dict[int, tuple[int, int]]] = {}
        rows = []
        for i, (length, addr, index) in enumerate(desc.tolist()):
            if length == 0:
                rows.append(b"")
                continue
            if addr not in heaps:
                heaps[addr] = _gcol_objects(mm, addr, size_len, name)
            obj = heaps[addr].get(index)
            if obj is None or obj[1] != length * itemsize:
                raise DataFormatError(
                    f"{name}: byte {offset + i * rec}: '{ds.name.lstrip('/')}' sample {i} points at "
                    f"a missing or mis-sized heap object (damaged variable-length data)"
                )
            rows.append(mm[obj[0] : obj[0] + obj[1]])
    return rows


def _h5_rows(path: Path, f: h5py.File, ds: h5py.Dataset, key: str, kind: str, name: str) -> list[np.ndarray]:
    """The per-sample arrays of a vlen dataset (or the rows of a fixed 2-D one) of numeric ``kind``."""
    base = h5py.check_vlen_dtype(ds.dtype)
    if ds.ndim == 1 and base is not None and base.kind in kind:
        raw = _heap_rows(path, f, ds, base.itemsize, name)
        if raw is not None:
            return [np.frombuffer(r, dtype=base) for r in raw]
        rows = list(ds[()]) if ds.shape[0] else []
    elif ds.ndim == 2 and ds.dtype.kind in kind:
        rows = list(ds[()])
    else:
        raise DataFormatError(
            f"{name}: '{key}' has type {ds.dtype} and shape {ds.shape}, expected variable-length "
            f"{'float' if kind == 'f' else 'integer'} arrays, one per sample"
        )
    return [np.asarray(r).reshape(-1) for r in rows]


def _sample_of(lengths: np.ndarray, flat_index: int) -> int:
    return int(np.searchsorted(np.cumsum(lengths), flat_index, side="right"))


def _read_shd_open(f: h5py.File, path: Path, name: str) -> EventSet:
    times_ds, units_ds, labels_ds = (_h5_dataset(f, k, name) for k in ("spikes/times", "spikes/units", "labels"))
    if labels_ds.ndim != 1 or labels_ds.dtype.kind not in "iu":
        raise DataFormatError(
            f"{name}: 'labels' has type {labels_ds.dtype} and shape {labels_ds.shape}, expected one integer per sample"
        )
    n = labels_ds.shape[0]
    file_size = path.stat().st_size
    for ds in (times_ds, units_ds, labels_ds):  # a damaged dataspace must not make us allocate terabytes
        if ds.size > file_size:
            raise DataFormatError(
                f"{name}: '{ds.name.lstrip('/')}' claims {ds.size} elements, more than a file of "
                f"{file_size} bytes can hold"
            )
    if times_ds.shape[:1] != (n,) or units_ds.shape[:1] != (n,):
        raise DataFormatError(
            f"{name}: {times_ds.shape[0] if times_ds.ndim else 0} spike-time arrays, "
            f"{units_ds.shape[0] if units_ds.ndim else 0} unit arrays but {n} labels"
        )
    times = _h5_rows(path, f, times_ds, "spikes/times", "f", name)
    units = _h5_rows(path, f, units_ds, "spikes/units", "iu", name)
    labels = np.asarray(labels_ds[()], dtype=np.int64)
    lt = np.fromiter((len(a) for a in times), dtype=np.int64, count=n)
    lu = np.fromiter((len(a) for a in units), dtype=np.int64, count=n)
    bad = np.flatnonzero(lt != lu)
    if len(bad):
        i = int(bad[0])
        raise DataFormatError(f"{name}: sample {i} has {lt[i]} spike times but {lu[i]} units")
    tcat = np.concatenate(times).astype(np.float64) if n else np.zeros(0)
    ucat = np.concatenate(units).astype(np.int64) if n else np.zeros(0, np.int64)
    bad = np.flatnonzero(~np.isfinite(tcat) | (tcat < 0) | (tcat > 1e9))
    if len(bad):
        j = int(bad[0])
        raise DataFormatError(f"{name}: sample {_sample_of(lt, j)}: spike time {tcat[j]} s is not a time >= 0")
    bad = np.flatnonzero((ucat < 0) | (ucat >= SHD_CHANNELS))
    if len(bad):
        j = int(bad[0])
        raise DataFormatError(f"{name}: sample {_sample_of(lt, j)}: unit {ucat[j]} outside the {SHD_CHANNELS} channels")
    if n and labels.min() < 0:
        raise DataFormatError(f"{name}: negative label {labels.min()}")
    out = np.empty(len(tcat), dtype=EVENTS_1D)
    out["t"] = np.rint(tcat * 1e6)
    out["x"] = ucat
    out["p"] = 1
    events = np.split(out, np.cumsum(lt)[:-1]) if n else []

    speakers = None
    sp = f.get("extra/speaker")
    if sp is not None:
        if not isinstance(sp, h5py.Dataset) or sp.shape != (n,) or sp.dtype.kind not in "iu":
            raise DataFormatError(
                f"{name}: 'extra/speaker' should hold one integer per sample ({n}), has "
                f"{getattr(sp, 'dtype', '?')} {getattr(sp, 'shape', '?')}"
            )
        speakers = np.asarray(sp[()], dtype=np.int64)
    keys = None
    kd = f.get("extra/keys")
    if kd is not None:
        if not isinstance(kd, h5py.Dataset) or kd.ndim != 1 or kd.dtype.kind not in "SOU":
            raise DataFormatError(f"{name}: 'extra/keys' should hold class names, has {getattr(kd, 'dtype', '?')}")
        raw = _heap_rows(path, f, kd, 1, name) if h5py.check_vlen_dtype(kd.dtype) is not None else None
        vals = raw if raw is not None else kd[()]
        keys = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in vals]
    n_classes = max(len(keys) if keys else 0, int(labels.max()) + 1 if n else 0)
    stem = path.stem.lower()
    fmt = "ssc" if stem.startswith("ssc") else "shd" if stem.startswith("shd") else ("ssc" if n_classes > 20 else "shd")
    return EventSet(events, labels, (SHD_CHANNELS,), fmt, speakers=speakers, keys=keys)


def read_shd(path: str | Path) -> EventSet:
    """Read an SHD or SSC HDF5 file (layout in the module docstring) into an :class:`EventSet` of :data:`EVENTS_1D`
    samples (``t`` µs, ``x`` channel, ``p`` = 1); ``format`` is ``"shd"`` or ``"ssc"``."""
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise DataFormatError(f"{name}: no such file")
    try:
        f = h5py.File(p, "r")
    except Exception as e:  # h5py raises OSError, but damaged files can surface other types
        raise DataFormatError(f"{name}: not a readable HDF5 file ({_brief(e)})") from None
    try:
        with f:
            return _read_shd_open(f, p, name)
    except DataFormatError:
        raise
    except Exception as e:  # HDF5 reports damage inside the file as OSError, KeyError, ValueError, RuntimeError...
        raise DataFormatError(f"{name}: damaged HDF5 file ({_brief(e)})") from None


# ------------------------------------------------------------------------------------------------ N-MNIST (.bin)


def encode_nmnist(events: np.ndarray) -> bytes:
    """N-MNIST's 40-bit events: byte 0 x, byte 1 y, then 24 bits (big-endian) with polarity in bit 23 and a
    23-bit timestamp in microseconds."""
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-MNIST timestamps must lie in [0, 2**23) microseconds")
    for f in ("x", "y"):
        if len(t) and (events[f].min() < 0 or events[f].max() > 255):
            raise ValueError(f"N-MNIST {f} must lie in [0, 255]")
    if len(t) and not np.isin(events["p"], (0, 1)).all():
        raise ValueError("N-MNIST polarity must be 0 or 1")
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
    atomic_write_bytes(path, encode_nmnist(events))


def decode_nmnist(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode N-MNIST bytes into :data:`EVENTS_2D` (overflow markers applied and dropped, see module docstring)."""
    if len(data) % 5:
        cut = len(data) - len(data) % 5
        raise DataFormatError(f"{name}: truncated event at byte {cut} (file length {len(data)} not a multiple of 5)")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == NMNIST_OVERFLOW_Y
    if overflow.any():
        t = t + NMNIST_OVERFLOW_US * np.cumsum(overflow)
    keep = ~overflow
    w, h = NMNIST_SENSOR[:2]
    for field, arr, limit, off in (("x", x, w, 0), ("y", y, h, 1)):
        bad = np.flatnonzero(keep & (arr >= limit))
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{name}: byte {5 * i + off}: {field}={arr[i]} outside the {w}x{h} sensor")
    out = np.empty(int(keep.sum()), dtype=EVENTS_2D)
    out["t"] = t[keep]
    out["x"] = x[keep]
    out["y"] = y[keep]
    out["p"] = raw[keep, 2] >> 7
    return out


def read_nmnist_file(path: str | Path) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file into :data:`EVENTS_2D` (``t`` µs, ``x``, ``y`` in 0..33, ``p`` 0/1)."""
    return decode_nmnist(_read_bytes(Path(path), str(path)), str(path))


def _split_dir(root: Path, split: str) -> Path | None:
    for cand in (split.capitalize(), split, split.upper()):
        if (root / cand).is_dir():
            return root / cand
    return None


def _digit_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))


def _read_nmnist_folder(folder: Path) -> EventSet:
    digits = _digit_dirs(folder)
    if not digits:
        raise DataFormatError(f"{folder}: no class folders 0..9 (N-MNIST layout is <split>/<digit>/<id>.bin)")
    events, labels, files = [], [], []
    for d in digits:
        for f in sorted(d.glob("*.bin")):
            events.append(read_nmnist_file(f))
            labels.append(int(d.name))
            files.append(str(f))
    return EventSet(
        events,
        np.asarray(labels, dtype=np.int64),
        NMNIST_SENSOR,
        "nmnist",
        keys=[str(i) for i in range(10)],
        files=files,
    )


def read_nmnist(root: str | Path, split: str) -> EventSet:
    """Read split ``"train"`` or ``"test"`` of an N-MNIST folder (``root/Train/<digit>/<id>.bin``, ``root/Test/...``
    as the archives unpack) in (digit, file name) order; labels are the digit folder names."""
    if split not in ("train", "test"):
        raise ValueError(f"read_nmnist: split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder = _split_dir(root, split)
    if folder is None:
        raise DataFormatError(
            f"{root}: no {split.capitalize()}/ folder (N-MNIST layout is "
            f"Train/<digit>/<id>.bin and Test/<digit>/<id>.bin)"
        )
    return _read_nmnist_folder(folder)


# --------------------------------------------------------------------------------------------------- inspect


def _summary(
    fmt: str, es_events: list[np.ndarray], labels: np.ndarray, sensor_size: tuple[int, ...], **extra: object
) -> dict:
    counts = np.fromiter((len(e) for e in es_events), dtype=np.int64, count=len(es_events))
    t_end = [int(e["t"].max()) for e in es_events if len(e)]
    uniq, per = np.unique(labels, return_counts=True) if len(labels) else (np.zeros(0, int), np.zeros(0, int))
    out = {
        "format": fmt,
        "samples": len(es_events),
        "classes": int(len(uniq)),
        "events": int(counts.sum()),
        "duration_s": max(t_end) / 1e6 if t_end else 0.0,
        "sensor_size": [int(s) for s in sensor_size],
        "mean_events": float(counts.mean()) if len(counts) else 0.0,
        "mean_duration_s": float(np.mean(t_end)) / 1e6 if t_end else 0.0,
        "label_counts": {str(int(k)): int(v) for k, v in zip(uniq, per)},
    }
    out.update(extra)
    return out


def _merge(fmt: str, parts: dict[str, dict], sensor_size: tuple[int, ...], path: Path) -> dict:
    labels: dict[str, int] = {}
    for p in parts.values():
        for k, v in p["label_counts"].items():
            labels[k] = labels.get(k, 0) + v
    samples = sum(p["samples"] for p in parts.values())
    events = sum(p["events"] for p in parts.values())
    return {
        "format": fmt,
        "samples": samples,
        "classes": len(labels),
        "events": events,
        "duration_s": max((p["duration_s"] for p in parts.values()), default=0.0),
        "sensor_size": [int(s) for s in sensor_size],
        "mean_events": events / samples if samples else 0.0,
        "label_counts": dict(sorted(labels.items(), key=lambda kv: int(kv[0]))),
        "splits": parts,
        "path": str(path),
    }


def _es_summary(es: EventSet, path: Path, **extra: object) -> dict:
    return _summary(es.format, es.events, es.labels, es.sensor_size, path=str(path), **extra)


def inspect(path: str | Path) -> dict:
    """Summarise a data file or folder: keys ``format``, ``samples``, ``classes`` (distinct labels), ``events``,
    ``duration_s`` (longest sample), ``sensor_size``, plus ``mean_events``, ``label_counts``, ``path`` and, for
    folders, ``splits``.  Accepts an SHD/SSC ``.h5`` file (or a folder of them), an N-MNIST ``.bin`` file, an
    N-MNIST folder (``Train``/``Test``, or one split's digit folders), an AEDAT 3.1 file (cut by its
    ``_labels.csv`` when there is one) or a DVS Gesture folder.  The format is told from content and layout."""
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"{p}: no such file or folder")
    if p.is_dir():
        return _inspect_dir(p)
    try:
        with p.open("rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise DataFormatError(f"{p}: cannot read ({e.strerror or _brief(e)})") from None
    if head.startswith(HDF5_SIGNATURE):
        return _es_summary(read_shd(p), p)
    if head.startswith(b"#!AER-DAT"):
        ev = read_aedat31(p)
        csv = _labels_csv_of(p)
        if csv.is_file():
            segs, rows = read_dvs_recording(p)
            return _summary("dvs_gesture", segs, rows[:, 0], DVS128_SENSOR, path=str(p), labels_file=str(csv))
        t0 = int(ev["t"].min()) if len(ev) else 0
        rel = ev.copy()
        rel["t"] -= t0
        return _summary("aedat31", [rel], np.zeros(0, np.int64), DVS128_SENSOR, path=str(p), t_start_us=t0)
    if p.suffix.lower() == ".bin":
        ev = read_nmnist_file(p)
        labels = np.asarray([int(p.parent.name)] if p.parent.name.isdigit() else [], dtype=np.int64)
        return _summary("nmnist", [ev], labels, NMNIST_SENSOR, path=str(p))
    raise DataFormatError(
        f"{p}: unknown format (expected an SHD/SSC .h5 file, an N-MNIST .bin file, an AEDAT 3.1 "
        f".aedat file or a dataset folder)"
    )


def _inspect_dir(p: Path) -> dict:
    try:
        gesture = _gesture_dir(p)
    except DataFormatError:
        gesture = None
    if gesture is not None:
        parts = {
            s: _es_summary(read_dvs_gesture(gesture, s), gesture)
            for s in ("train", "test")
            if (gesture / f"trials_to_{s}.txt").is_file()
        }
        return _merge("dvs_gesture", parts, DVS128_SENSOR, p)
    splits = {s: d for s in ("train", "test") if (d := _split_dir(p, s)) is not None and _digit_dirs(d)}
    if splits:
        return _merge(
            "nmnist", {s: _es_summary(_read_nmnist_folder(d), d) for s, d in splits.items()}, NMNIST_SENSOR, p
        )
    digits = _digit_dirs(p)
    if digits and any(next(d.glob("*.bin"), None) for d in digits):
        return _es_summary(_read_nmnist_folder(p), p)
    h5s = sorted(f for f in p.glob("*.h5") if f.is_file())
    if h5s:
        sets = {f.stem: read_shd(f) for f in h5s}
        fmts = {es.format for es in sets.values()}
        return _merge(
            fmts.pop() if len(fmts) == 1 else "shd/ssc",
            {k: _es_summary(es, p / f"{k}.h5") for k, es in sets.items()},
            (SHD_CHANNELS,),
            p,
        )
    raise DataFormatError(
        f"{p}: no dataset found (expected N-MNIST Train/ and Test/ or digit folders, a DvsGesture "
        f"folder with trials_to_train.txt, or SHD/SSC .h5 files)"
    )
