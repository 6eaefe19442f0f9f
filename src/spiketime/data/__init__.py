"""Data: readers and writers of the field's event formats (SHD/SSC HDF5, N-MNIST binary, AEDAT 3.1 /
DVS Gesture), the synthetic timing tasks, the built-in spoken and event digits, binning and rate normalisation.

Every reader returns an :class:`EventSet` (events per sample, labels, sensor size) and raises a one-line
:class:`DataFormatError` naming the file on damaged input; :func:`bin_events` turns events into ``[N, T, C]``
spike counts at a time step ``dt_ms``.
"""

from spiketime.data.datasets import Split, Splits, load_array_file, split_seed
from spiketime.data.formats import (
    DataFormatError,
    EventSet,
    inspect,
    read_aedat31,
    read_dvs_gesture,
    read_nmnist,
    read_shd,
    write_aedat31,
    write_nmnist,
    write_shd,
)
from spiketime.data.frames import bin_events
from spiketime.data.rate_norm import rate_normalise
from spiketime.data.registry import data_home, ensure_dataset
from spiketime.data.timing import generate as timing_task

__all__ = [
    "DataFormatError",
    "EventSet",
    "Split",
    "Splits",
    "bin_events",
    "data_home",
    "ensure_dataset",
    "inspect",
    "load_array_file",
    "rate_normalise",
    "read_aedat31",
    "read_dvs_gesture",
    "read_nmnist",
    "read_shd",
    "split_seed",
    "timing_task",
    "write_aedat31",
    "write_nmnist",
    "write_shd",
]
