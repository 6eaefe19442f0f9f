"""What every event format shares: the event dtypes, sensor sizes, :class:`EventSet` and
:class:`DataFormatError` (see :mod:`spiketime.data.formats`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spiketime.errors import InputError

EVENTS_1D = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
EVENTS_2D = np.dtype([("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")])

SHD_CHANNELS = 700
NMNIST_SENSOR = (34, 34, 2)
DVS128_SENSOR = (128, 128, 2)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
AEDAT31_VERSION_LINE = b"#!AER-DAT3.1\r\n"
AEDAT_END_HEADER = b"#!END-HEADER\r\n"
AEDAT_PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
DVS_GESTURE_CLASSES = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)
NMNIST_OVERFLOW_Y = 240
NMNIST_OVERFLOW_US = 1 << 13
_POLARITY_DTYPE = np.dtype([("data", "<u4"), ("ts", "<i4")])


class DataFormatError(InputError):
    """A data file that does not hold what its format promises (message: one line naming the file)."""


@dataclass
class EventSet:
    """Samples of one file or split: ``events[i]`` (:data:`EVENTS_1D` or :data:`EVENTS_2D`) has class ``labels[i]``.

    ``sensor_size`` is ``(700,)`` for SHD/SSC, ``(width, height, 2)`` for cameras.  ``speakers`` groups samples by
    speaker (SHD/SSC) or subject (DVS Gesture, the user number); ``keys`` names the classes; ``files`` gives each
    sample's source file (N-MNIST, DVS Gesture).
    """

    events: list[np.ndarray]
    labels: np.ndarray
    sensor_size: tuple[int, ...]
    format: str
    speakers: np.ndarray | None = None
    keys: list[str] | None = None
    files: list[str] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.events) != len(self.labels):
            raise ValueError(f"EventSet: {len(self.events)} samples but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


def _brief(e: BaseException) -> str:
    """``Type: first line`` of an exception, at most 120 characters."""
    lines = str(e).strip().splitlines()
    msg = lines[0] if lines else ""
    out = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return out if len(out) <= 120 else out[:117] + "..."


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataFormatError(f"{name}: cannot read ({e.strerror or _brief(e)})") from None
