"""Built-in event digits: N-MNIST's twin, made on the machine from scikit-learn's handwritten digits.

Source: ``sklearn.datasets.load_digits`` (1797 grey 8x8 images, values 0..16, ships with scikit-learn, no
download).  Each image is upscaled smoothly (cubic spline, :func:`upscale_digit`) to a 28x28 white-on-black digit
``D(r, c)`` in [0, 1] and shown to the event-camera emulator (:mod:`spiketime.data.event_camera`) on a 34x34 sensor
while the camera makes N-MNIST-like saccades:

* three linear moves of 100 ms each along an equilateral triangle of side ``A`` pixels
  (vertices ``V0 = (0, 0)``, ``V1 = (A/2, A sqrt(3)/2)``, ``V2 = (A, 0)`` as ``(x, y)``, back to ``V0``), so the
  digit's top-left corner is at ``o + V(t)`` with constant speed along each side; ``o`` centres the motion on the
  sensor, plus a small random offset per recording;
* frames every 1 ms (301 frames, ``t = 0..300`` ms), sub-pixel positions rendered by bilinear interpolation;
  sensor intensity ``I = D`` (black background), the emulator sees ``log(I + eps)``;
* per recording the emulator draws its own thresholds, noise rate and mismatch (:func:`draw_camera`):
  ``C0_on, C0_off ~ U[0.35, 0.45]``, ``sigma_C = 0.03``, refractory 0.5 ms, shot noise ``U[0.1, 0.5]`` Hz per
  pixel, timestamp jitter 100 µs (sd), ``eps = 0.05``; the saccade side ``A ~ U[3.5, 4.5]`` px and the offset
  ``~ U[-1, 1]^2`` px.

Events are written in the N-MNIST file format (:func:`spiketime.data.formats.write_nmnist`) and folder layout:
``out_dir/Train/<digit>/<id>.bin`` and ``out_dir/Test/<digit>/<id>.bin``, ids 5-digit zero-padded, 1-based and
unique within a split.  The split is by *source image*: about 25% of the images of every class (seeded) go to
Test and are recorded once; each Train image is recorded ``repeats`` times with independent emulator draws, so no
source image is in both splits.  ``out_dir/meta.json`` (written last) records the generator version, seed, counts,
the source image of every file and the time taken; a matching ``meta.json`` makes :func:`make_event_digits` a
cache hit.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType

import numpy as np

from spiketime.data.event_camera import CameraParams, record_static_image
from spiketime.data.formats import write_nmnist
from spiketime.errors import InputError
from spiketime.files import write_json

GENERATOR = "spiketime.event_digits"
VERSION = 1
SENSOR = 34  # sensor side, pixels
DIGIT_SIZE = 28  # side of the upscaled digit, pixels
SACCADE_US = 100_000  # duration of one saccade
N_SACCADES = 3
FRAME_US = 1_000  # frame step of the emulator
DURATION_US = N_SACCADES * SACCADE_US
TEST_FRACTION = 0.25
SPLITS = ("Train", "Test")
_INSTALL = 'pip install "spiketime[data]"'


def _need(module: str) -> ModuleType:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise InputError(f"event digits need {module.split('.')[0]}: {_INSTALL}") from None


def load_source_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images ``[1797, 8, 8]`` scaled to [0, 1] (float64) and labels ``[1797]`` (int64)."""
    datasets = _need("sklearn.datasets")
    d = datasets.load_digits()
    return d.images.astype(np.float64) / 16.0, d.target.astype(np.int64)


def upscale_digit(image: np.ndarray, size: int = DIGIT_SIZE) -> np.ndarray:
    """Smooth upscaling of an 8x8 image in [0, 1] to ``size x size`` (cubic spline over the pixel grid, black
    outside), clipped to [0, 1]."""
    ndimage = _need("scipy.ndimage")
    img = np.asarray(image, dtype=np.float64)
    z = ndimage.zoom(img, size / img.shape[0], order=3, mode="grid-constant", cval=0.0, grid_mode=True)
    return np.clip(z[:size, :size], 0.0, 1.0)


def saccade_offsets(times_us: np.ndarray, side: float, origin: tuple[float, float]) -> np.ndarray:
    """Digit position ``(x, y)`` at each time: ``origin + V(t)``, ``V`` running around the triangle
    ``(0, 0) -> (side/2, side sqrt(3)/2) -> (side, 0) -> (0, 0)``, one side per :data:`SACCADE_US`."""
    v = np.array([[0.0, 0.0], [side / 2, side * math.sqrt(3) / 2], [side, 0.0], [0.0, 0.0]])
    t = np.clip(np.asarray(times_us, dtype=np.float64), 0, DURATION_US)
    seg = np.minimum((t // SACCADE_US).astype(np.int64), N_SACCADES - 1)
    frac = (t - seg * SACCADE_US) / SACCADE_US
    return np.asarray(origin, dtype=np.float64) + v[seg] + (v[seg + 1] - v[seg]) * frac[:, None]


def draw_camera(rng: np.random.Generator) -> CameraParams:
    """Emulator settings of one recording (ranges in the module docstring)."""
    return CameraParams(
        threshold_on=float(rng.uniform(0.35, 0.45)),
        threshold_off=float(rng.uniform(0.35, 0.45)),
        threshold_sigma=0.03,
        refractory_us=500.0,
        noise_rate=float(rng.uniform(0.1, 0.5)),
        jitter_us=100.0,
        eps=0.05,
    )


def record_digit(image8: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """One recording of an 8x8 digit (values in [0, 1]): events (``EVENTS_2D``, t in [0, 300000] µs, x, y in
    0..33) with this recording's random camera, saccade size and offset drawn from ``rng``."""
    rng = np.random.default_rng(rng)
    digit = upscale_digit(image8)
    params = draw_camera(rng)
    side = float(rng.uniform(3.5, 4.5))
    height = side * math.sqrt(3) / 2
    jitter = rng.uniform(-1.0, 1.0, 2)
    origin = ((SENSOR - DIGIT_SIZE - side) / 2 + jitter[0], (SENSOR - DIGIT_SIZE - height) / 2 + jitter[1])
    times = np.arange(0, DURATION_US + FRAME_US, FRAME_US, dtype=np.float64)
    offsets = saccade_offsets(times, side, origin)
    return record_static_image(digit, offsets, times, (SENSOR, SENSOR), params, rng, background=0.0)


def split_images(
    labels: np.ndarray, seed: int, limit: int | None = None, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of the source images: (train indices, test indices), sorted, disjoint.

    ``limit`` keeps only that many images (spread evenly over the classes, seeded) before splitting.  Every class
    with at least 2 images gets ``round(test_fraction * n)`` (at least 1, at most ``n - 1``) test images."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1]))
    train, test = [], []
    for k, c in enumerate(classes):
        perm = rng.permutation(np.flatnonzero(labels == c))
        if limit is not None:
            perm = perm[: limit // len(classes) + (k < limit % len(classes))]
        n = len(perm)
        n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _record_batch(batch: list[tuple[str, np.ndarray, tuple[int, int, int, int], bool]]) -> list[tuple[int, int]]:
    """Worker: record and write each ``(path, image8, seed entropy, skip_if_present)``; returns (events, ON)."""
    out = []
    for path, image8, entropy, skip in batch:
        if skip and os.path.exists(path):  # resumed run: the file is complete (atomic write), count its events
            raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5)
            out.append((len(raw), int((raw[:, 2] >> 7).sum())))
            continue
        ev = record_digit(image8, np.random.default_rng(np.random.SeedSequence(list(entropy))))
        write_nmnist(path, ev)
        out.append((len(ev), int(ev["p"].sum())))
    return out


def _plan(labels: np.ndarray, seed: int, repeats: int, limit: int | None) -> dict:
    train, test = split_images(labels, seed, limit)
    plan = {}
    for split, images, reps in (("Train", train, repeats), ("Test", test, 1)):
        rows = [
            (i + 1, int(labels[img]), int(img), r)
            for i, (img, r) in enumerate((img, r) for img in images for r in range(reps))
        ]
        plan[split] = {
            "id": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "image": [r[2] for r in rows],
            "repeat": [r[3] for r in rows],
        }
    return plan


def file_path(out_dir: Path, split: str, label: int, file_id: int) -> Path:
    """Where a recording lives: ``out_dir/<split>/<label>/<id:05d>.bin``."""
    return Path(out_dir) / split / str(label) / f"{file_id:05d}.bin"


def _key(seed: int, repeats: int, limit: int | None) -> dict:
    return {"generator": GENERATOR, "version": VERSION, "seed": seed, "repeats": repeats, "limit": limit}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _complete(out_dir: Path, meta: dict | None, key: dict) -> bool:
    if not meta or any(meta.get(k) != v for k, v in key.items()):
        return False
    rec = meta.get("recordings", {})
    try:
        return all(
            file_path(out_dir, s, lab, i).is_file()
            for s in SPLITS
            for i, lab in zip(rec[s]["id"], rec[s]["label"], strict=True)
        )
    except (KeyError, TypeError, ValueError):
        return False


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_event_digits(
    out_dir: Path,
    *,
    seed: int = 0,
    repeats: int = 4,
    jobs: int | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> Path:
    """Generate the event digits into ``out_dir`` (N-MNIST layout, see the module docstring); returns ``out_dir``.

    Idempotent: when ``out_dir/meta.json`` matches (generator, version, seed, repeats, limit) and every listed file
    is present, returns at once.  An interrupted run (no ``meta.json``) is resumed with the same arguments (files
    are written atomically and deterministically) or redone from scratch with other ones.  ``jobs`` worker
    processes (default: the usable CPU cores; 1 = in this process); ``limit`` uses only that many source images
    (for tests).  Default set: 1797 images -> ~1348 train images x ``repeats`` + ~449 test recordings."""
    out_dir = Path(out_dir)
    if repeats < 1:
        raise InputError(f"event digits: repeats must be >= 1, got {repeats}")
    if limit is not None and limit < 20:
        raise InputError(f"event digits: limit must be >= 20 (2 images per class), got {limit}")
    key = _key(int(seed), int(repeats), limit)
    meta_path, partial_path = out_dir / "meta.json", out_dir / ".partial.json"
    if _complete(out_dir, _read_json(meta_path), key):
        return out_dir
    t_start = time.perf_counter()
    images, labels = load_source_digits()
    _need("scipy.ndimage")
    plan = _plan(labels, int(seed), int(repeats), limit)

    # a previous run's files: resume if it was this very run, else clear them (ours only)
    old_meta, old_partial = _read_json(meta_path), _read_json(partial_path)
    resume = old_partial == key
    stale = [p for s in SPLITS for p in (out_dir / s).glob("*/*.bin*")]
    if stale and not resume:
        ours = any(m and m.get("generator") == GENERATOR for m in (old_meta, old_partial))
        if not ours:
            raise InputError(
                f"event digits: {out_dir} holds .bin files not made by {GENERATOR}; "
                "choose an empty or event-digits folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    if stale and not resume:
        for p in stale:
            p.unlink(missing_ok=True)
    write_json(partial_path, key)
    for s in SPLITS:
        for c in range(10):
            (out_dir / s / str(c)).mkdir(parents=True, exist_ok=True)

    tasks = [
        (str(file_path(out_dir, s, lab, i)), images[img], (int(seed), SPLITS.index(s), img, r, 0xD16), resume)
        for s in SPLITS
        for i, lab, img, r in zip(plan[s]["id"], plan[s]["label"], plan[s]["image"], plan[s]["repeat"])
    ]
    jobs = max(1, int(jobs) if jobs is not None else _default_jobs())
    size = max(1, min(64, math.ceil(len(tasks) / (8 * jobs))))
    batches = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    results: list[list[tuple[int, int]] | None] = [None] * len(batches)
    from spiketime.progress import progress_bar

    with progress_bar(progress, "event digits", len(tasks), "file") as bar:
        if jobs == 1:
            for b, batch in enumerate(batches):
                results[b] = _record_batch(batch)
                bar.update(len(batch))
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(batches)), mp_context=get_context("spawn")) as ex:
                futures = {ex.submit(_record_batch, batch): b for b, batch in enumerate(batches)}
                for fut in as_completed(futures):
                    b = futures[fut]
                    results[b] = fut.result()
                    bar.update(len(batches[b]))

    stats = [r for res in results for r in res]
    counts = np.array([r[0] for r in stats], dtype=np.float64)
    meta = dict(key)
    meta.update(
        {
            "sensor": [SENSOR, SENSOR],
            "duration_us": DURATION_US,
            "frame_us": FRAME_US,
            "digit_size": DIGIT_SIZE,
            "test_fraction": TEST_FRACTION,
            "counts": {s: len(plan[s]["id"]) for s in SPLITS},
            "class_counts": {s: np.bincount(plan[s]["label"], minlength=10).tolist() for s in SPLITS},
            "images": {s: sorted(set(plan[s]["image"])) for s in SPLITS},
            "recordings": plan,
            "events": (
                {
                    "files": len(stats),
                    "mean": float(counts.mean()),
                    "min": int(counts.min()),
                    "max": int(counts.max()),
                    "on_fraction": float(sum(r[1] for r in stats) / max(counts.sum(), 1)),
                }
                if len(stats)
                else None
            ),
            "seconds": round(time.perf_counter() - t_start, 2),
        }
    )
    write_json(meta_path, meta)
    partial_path.unlink(missing_ok=True)
    return out_dir
