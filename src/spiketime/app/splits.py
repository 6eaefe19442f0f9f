"""The train / validation / test splits of a data config (:func:`load_splits`): synthetic timing tasks generate
each split from its own seed; event datasets are read (making the built-in ones on first use), carve validation, bin, normalise.

``data.task`` picks the dataset; its files live in ``data.path`` or ``$SPIKETIME_DATA/<task>``. Validation is
carved from the training file by *group* (speaker, or source image for the event digits, else sample) so that
validation, like test, holds only unseen speakers/images; SSC ships its own validation file. Each split is binned
into ``[N, T, C]`` spike counts at ``data.dt`` over ``data.duration`` (crop/pad with a mask), downsampled
(``data.channels`` for 1-D sensors, ``data.pool`` for cameras) and rate-normalised (``data.rate_norm``) with its
own labels and seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from spiketime.app.config import CAMERA_TASKS, TIMING_TASKS, ConfigError, DataConfig
from spiketime.data.datasets import SPLITS, Split, Splits, split_seed
from spiketime.data.formats import DVS128_SENSOR, NMNIST_SENSOR, EventSet

NUM_CLASSES = {"speech_digits": 20, "shd": 20, "ssc": 35, "event_digits": 10, "nmnist": 10, "dvs_gesture": 11}
CAMERA_SENSORS = dict(zip(CAMERA_TASKS, (NMNIST_SENSOR, NMNIST_SENSOR, DVS128_SENSOR)))  # (W, H, P)


def frame_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """``(polarities, H', W')`` of one binned frame of camera task ``cfg.task`` after ``data.pool``: the
    ``data.channels`` inputs are this image flattened (:func:`spiketime.data.frames.bin_events`)."""
    if cfg.task not in CAMERA_SENSORS:
        raise ConfigError(
            f"data.task: expected a camera task ({', '.join(CAMERA_SENSORS)}) for a convolutional "
            f"model, got {cfg.task!r}"
        )
    w, h, p = CAMERA_SENSORS[cfg.task]
    return p, -(-h // cfg.pool), -(-w // cfg.pool)


def dataset_root(cfg: DataConfig) -> Path:
    """Where ``cfg.task``'s files are: ``data.path``, else ``$SPIKETIME_DATA/<task>``."""
    from spiketime.data.registry import data_home

    return Path(cfg.path).expanduser() if cfg.path else data_home() / cfg.task


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` (POSIX), so parallel runs make a built-in set only once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; runs should not make the same set concurrently there
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_file_split(cfg: DataConfig, split: str, progress: bool = True) -> EventSet:
    """The raw :class:`~spiketime.data.formats.EventSet` of one shipped file (``train``, ``test``; SSC ``val``).
    ``progress``: the generation bar of a built-in set made on first use (stderr)."""
    from spiketime.data import formats

    root = dataset_root(cfg)
    task = cfg.task
    if task == "speech_digits":
        from spiketime.data.speech_digits import make_speech_digits

        with exclusive(root):
            make_speech_digits(root, progress=progress)  # a cache hit once made
        return formats.read_shd(root / f"{split}.h5")
    if task == "event_digits":
        from spiketime.data.event_digits import make_event_digits

        with exclusive(root):
            make_event_digits(root, progress=progress)
        return with_source_images(formats.read_nmnist(root, split), root, split)
    from spiketime.data.registry import ensure_dataset

    root = ensure_dataset(task, Path(cfg.path).expanduser() if cfg.path else None)
    if task in ("shd", "ssc"):
        name = {"train": "train", "val": "valid", "test": "test"}[split]
        return formats.read_shd(root / f"{task}_{name}.h5")
    if task == "nmnist":
        return formats.read_nmnist(root, split)
    return formats.read_dvs_gesture(root, split)


def with_source_images(es: EventSet, root: Path, split: str) -> EventSet:
    """Set ``es.speakers`` to the source image of every event-digits recording (from ``meta.json``), so that
    validation holds out whole images, like the test split."""
    import json

    table = json.loads((root / "meta.json").read_text())["recordings"][{"train": "Train", "test": "Test"}[split]]
    image_of = dict(zip(table["id"], table["image"]))
    es.speakers = np.array([image_of[int(Path(f).stem)] for f in es.files])
    return es


def groups_of(es: EventSet) -> np.ndarray:
    """Group id of every sample: its speaker (or source image), else the sample itself."""
    return np.asarray(es.speakers) if es.speakers is not None else np.arange(len(es.labels))


def carve_validation(es: EventSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of ``es``: a seeded ``fraction`` of its groups (at least one) goes to validation."""
    groups = groups_of(es)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ConfigError("data.val_fraction: the training file has a single speaker/group, nothing to hold out")
    rng = np.random.default_rng(seed)
    n_val = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    val_groups = rng.choice(uniq, size=n_val, replace=False)
    is_val = np.isin(groups, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def to_split(cfg: DataConfig, es: EventSet, idx: np.ndarray | None, split: str) -> Split:
    """Bin ``es`` (restricted to ``idx``) at ``cfg.dt`` and apply ``cfg.rate_norm``."""
    from spiketime.data.frames import bin_events
    from spiketime.data.rate_norm import rate_normalise

    events = es.events if idx is None else [es.events[i] for i in idx]
    labels = es.labels if idx is None else es.labels[idx]
    one_d = len(es.sensor_size) == 1
    try:
        x, mask = bin_events(
            events,
            es.sensor_size,
            dt_ms=cfg.dt,
            duration_ms=cfg.duration,
            channels=cfg.channels if one_d else None,
            pool=1 if one_d else cfg.pool,
        )
    except ValueError as e:
        raise ConfigError(f"data.{'channels' if one_d else 'pool'}: {e}") from None
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    x = rate_normalise(x, y, cfg.rate_norm, seed=split_seed(cfg.seed, split))
    return Split(x, y, torch.as_tensor(mask))


def split_source(cfg: DataConfig, split: str, train_file: EventSet | None = None, progress: bool = True) -> tuple:
    """``(EventSet, indices or None)`` that ``split`` is made of: the test file (SSC: also its validation file), or
    the training file restricted to the carved training / validation groups. ``train_file`` reuses a read file."""
    if split == "test" or (split == "val" and cfg.task == "ssc"):
        return read_file_split(cfg, split, progress), None
    es = train_file if train_file is not None else read_file_split(cfg, "train", progress)
    if cfg.task == "ssc":
        return es, None
    train_idx, val_idx = carve_validation(es, cfg.val_fraction, cfg.seed)
    return es, train_idx if split == "train" else val_idx


def load_event_split(cfg: DataConfig, split: str, progress: bool = True) -> Split:
    """One split of an event dataset (validation carved from the training file unless it ships one)."""
    return to_split(cfg, *split_source(cfg, split, progress=progress), split)


def load_event_splits(cfg: DataConfig, progress: bool = True) -> Splits:
    """Train, validation and test splits of an event dataset (the training file is read once)."""
    train_file = read_file_split(cfg, "train", progress)
    splits = (to_split(cfg, *split_source(cfg, s, train_file, progress), s) for s in SPLITS)
    return Splits(*splits, num_classes=NUM_CLASSES[cfg.task])


def make_split(cfg: DataConfig, split: str, progress: bool = True) -> Split:
    """One split of ``cfg``'s data (``train``, ``val`` or ``test``); ``progress``: the bar of a built-in event
    set generated on first use (stderr)."""
    if cfg.task not in TIMING_TASKS:
        return load_event_split(cfg, split, progress)
    from spiketime.data.timing import generate

    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    try:
        x, y = generate(
            cfg.task,
            cfg.variant,
            n_samples=n,
            channels=cfg.channels,
            duration=cfg.duration,
            dt=cfg.dt,
            num_classes=cfg.num_classes,
            noise=cfg.noise,
            jitter=cfg.jitter,
            seed=split_seed(cfg.seed, split),
        )
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    return Split(x, y)


def load_splits(cfg: DataConfig, progress: bool = True) -> Splits:
    """The three splits of ``cfg``'s data (generated, or read and binned); ``progress``: the bar of a built-in
    event set generated on first use (stderr)."""
    if cfg.task not in TIMING_TASKS:
        return load_event_splits(cfg, progress)
    return Splits(*(make_split(cfg, s) for s in SPLITS), num_classes=cfg.num_classes)
