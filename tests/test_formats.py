"""Readers of the shipped event formats: SHD/SSC HDF5, N-MNIST .bin, DVS128 Gesture AEDAT 3.1 (+ labels csv).

Files are written here in the exact byte formats, both by our writers (round trips) and by hand (struct.pack /
raw h5py), and, where tonic is installed, read with tonic as well.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import one_line
from spiketime.app.config import ConfigError
from spiketime.data import formats as F
from spiketime.data.formats import EVENTS_1D, EVENTS_2D, DataFormatError

HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 0: DVS128\r\n#Start-Time: 2017-06-01 10:00:00 (TZ+0000)\r\n"
END = b"#!END-HEADER\r\n"


def packet(
    etype: int,
    events: list[tuple[int, int]],
    *,
    overflow: int = 0,
    size: int = 8,
    ts_offset: int = 4,
    number: int | None = None,
    valid: int | None = None,
) -> bytes:
    """An AEDAT 3.1 packet built with struct.pack: 28-byte header + (uint32 data, int32 ts) per event."""
    n = len(events) if number is None else number
    head = struct.pack("<hhiiiiii", etype, 0, size, ts_offset, overflow, n, n, n if valid is None else valid)
    return head + b"".join(struct.pack("<Ii", d, t) for d, t in events)


def word(x: int, y: int, p: int, valid: int = 1) -> int:
    return (x << 17) | (y << 2) | (p << 1) | valid


def random_2d(rng: np.random.Generator, n: int, w: int, h: int, t_max: int) -> np.ndarray:
    ev = np.empty(n, dtype=EVENTS_2D)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["x"] = rng.integers(0, w, n)
    ev["y"] = rng.integers(0, h, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


# ------------------------------------------------------------------------------------------------------- SHD/SSC


def shd_data(rng: np.random.Generator, n: int = 6):
    times = [np.sort(rng.random(int(rng.integers(0, 40)))).astype(np.float16) for _ in range(n)]
    units = [rng.integers(0, 700, len(t)) for t in times]
    labels = rng.integers(0, 20, n)
    return times, units, labels


def test_shd_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times, units, labels = shd_data(rng)
    speakers = rng.integers(0, 12, len(labels))
    keys = [f"digit-{i}" for i in range(20)]
    path = tmp_path / "shd_train.h5"
    F.write_shd(path, times, units, labels, speakers=speakers, keys=keys)
    es = F.read_shd(path)
    assert es.format == "shd" and es.sensor_size == (700,) and len(es) == len(labels)
    np.testing.assert_array_equal(es.labels, labels)
    np.testing.assert_array_equal(es.speakers, speakers)
    assert es.keys == keys
    for ev, t, u in zip(es.events, times, units):
        assert ev.dtype == EVENTS_1D
        np.testing.assert_array_equal(ev["t"], np.rint(t.astype(np.float64) * 1e6).astype(np.int64))
        np.testing.assert_array_equal(ev["x"], u)
        assert (ev["p"] == 1).all()


def test_shd_writer_uses_the_zenke_lab_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    F.write_shd(path, [np.array([0.1, 0.2])], [np.array([3, 699])], [4], speakers=[2], keys=["a", "b"])
    with h5py.File(path) as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float16
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["labels"].dtype == np.uint16 and f["extra/speaker"].dtype == np.uint16
        assert f["extra/keys"].dtype.kind == "S"
        assert f["spikes/times"][0].dtype == np.float16


def test_shd_float32_times_keep_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "fine.h5"
    t = np.array([0.000001, 0.123456, 0.7], dtype=np.float64)
    F.write_shd(path, [t], [np.array([0, 1, 2])], [0], time_dtype=np.float32)
    np.testing.assert_array_equal(F.read_shd(path).events[0]["t"], [1, 123456, 700000])


def test_shd_hand_built_file(tmp_path: Path) -> None:
    """A file made with raw h5py (no writer): known seconds -> known microseconds; SSC told by its 35 classes."""
    path = tmp_path / "recordings.h5"
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.uint16))
        t[0] = np.array([0.5, 0.25, 1.0], dtype=np.float16)
        u[0] = np.array([0, 699, 7], dtype=np.uint16)
        t[1] = np.array([], dtype=np.float16)
        u[1] = np.array([], dtype=np.uint16)
        f["labels"] = np.array([34, 3], dtype=np.uint16)
    es = F.read_shd(path)
    assert es.format == "ssc" and es.speakers is None and es.keys is None
    assert es.events[0].tolist() == [(500000, 0, 1), (250000, 699, 1), (1000000, 7, 1)]
    assert len(es.events[1]) == 0 and es.events[1].dtype == EVENTS_1D


def test_shd_fixed_2d_arrays_are_read(tmp_path: Path) -> None:
    """tonic's own SHD test fixture stores fixed [N, K] arrays instead of vlen ones; accept that too."""
    path = tmp_path / "fixed.h5"
    with h5py.File(path, "w") as f:
        f["spikes/times"] = np.array([[0.25, 0.5], [0.125, 0.75]], dtype=np.float16)
        f["spikes/units"] = np.array([[1, 2], [3, 4]], dtype=np.uint16)
        f["labels"] = [0, 1]
    es = F.read_shd(path)
    assert es.events[1].tolist() == [(125000, 3, 1), (750000, 4, 1)]


def test_shd_matches_tonic(tmp_path: Path) -> None:
    """tonic's SHD.__getitem__ on our file gives the same events (times chosen on whole microseconds: tonic
    truncates fractional microseconds where we round)."""
    tonic_ds = pytest.importorskip("tonic.datasets")
    rng = np.random.default_rng(3)
    times = [np.sort(rng.integers(0, 64, 30)) / 64 for _ in range(3)]  # k/64 s = whole µs, exact in float16
    units = [rng.integers(0, 700, 30) for _ in range(3)]
    F.write_shd(tmp_path / "shd_train.h5", times, units, [1, 2, 3], speakers=[0, 1, 2], keys=["a"] * 20)
    shd = object.__new__(tonic_ds.SHD)  # skip tonic's download step; __getitem__ reads the file
    shd.location_on_system, shd.data_filename = str(tmp_path), "shd_train.h5"
    shd.transform = shd.target_transform = None
    ours = F.read_shd(tmp_path / "shd_train.h5")
    for i in range(3):
        ev, target = shd[i]
        assert target == ours.labels[i]
        for f in ("t", "x", "p"):
            np.testing.assert_array_equal(ev[f], ours.events[i][f])


def _h5(path: Path, n: int = 2, **over) -> Path:
    """An SHD-layout file where ``over`` replaces or (None) removes datasets."""
    data = {
        "spikes/times": [np.array([0.1, 0.2], np.float16), np.array([0.3], np.float16)][:n],
        "spikes/units": [np.array([1, 2], np.uint16), np.array([3], np.uint16)][:n],
        "labels": np.arange(n, dtype=np.uint16),
    }
    data.update(over)
    with h5py.File(path, "w") as f:
        for key, val in data.items():
            if val is None:
                continue
            if isinstance(val, list):
                base = np.float16 if key.endswith("times") else (val[0].dtype if len(val) else np.uint16)
                ds = f.create_dataset(key, (len(val),), dtype=h5py.vlen_dtype(base))
                for i, v in enumerate(val):
                    ds[i] = v
            else:
                f[key] = val
    return path


SHD_BAD = {
    "no_times": (dict(**{"spikes/times": None}), "missing dataset 'spikes/times'"),
    "no_units": (dict(**{"spikes/units": None}), "missing dataset 'spikes/units'"),
    "no_labels": (dict(labels=None), "missing dataset 'labels'"),
    "labels_longer": (dict(labels=np.arange(3, dtype=np.uint16)), "but 3 labels"),
    "float_labels": (dict(labels=np.array([0.5, 1.5])), "'labels' has type"),
    "length_mismatch": (
        dict(**{"spikes/units": [np.array([1], np.uint16), np.array([3], np.uint16)]}),
        "sample 0 has 2 spike times but 1 units",
    ),
    "unit_700": (
        dict(**{"spikes/units": [np.array([1, 2], np.uint16), np.array([700], np.uint16)]}),
        "sample 1: unit 700 outside the 700 channels",
    ),
    "negative_time": (
        dict(**{"spikes/times": [np.array([0.1, -0.2], np.float16), np.array([0.3], np.float16)]}),
        "sample 0: spike time",
    ),
    "nan_time": (
        dict(**{"spikes/times": [np.array([0.1, 0.2], np.float16), np.array([np.nan], np.float16)]}),
        "sample 1: spike time nan",
    ),
    "int_times": (dict(**{"spikes/times": np.zeros((2, 3), np.int32)}), "'spikes/times' has type"),
    "speaker_short": (dict(**{"extra/speaker": np.zeros(1, np.uint16)}), "'extra/speaker' should hold"),
    "speaker_float": (dict(**{"extra/speaker": np.zeros(2)}), "'extra/speaker' should hold"),
    "keys_numeric": (dict(**{"extra/keys": np.zeros(2)}), "'extra/keys' should hold"),
    "times_is_group": (dict(**{"spikes/times": None, "spikes/times/x": np.zeros(2)}), "missing dataset"),
}


@pytest.mark.parametrize("case", sorted(SHD_BAD))
def test_shd_malformed(tmp_path: Path, case: str) -> None:
    over, needle = SHD_BAD[case]
    path = _h5(tmp_path / f"{case}.h5", **over)
    with pytest.raises(DataFormatError) as e:
        F.read_shd(path)
    one_line(e, str(path), needle)


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all", F.HDF5_SIGNATURE + b"\0" * 40, "half"])
def test_shd_not_hdf5_or_truncated(tmp_path: Path, content) -> None:
    path = tmp_path / "bad.h5"
    if content == "half":
        _h5(path)
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as e:
        F.read_shd(path)
    one_line(e, str(path))


def test_data_format_error_is_a_config_error(tmp_path: Path) -> None:
    assert issubclass(DataFormatError, ConfigError)
    with pytest.raises(ConfigError) as e:
        F.read_shd(tmp_path / "missing.h5")
    one_line(e, "missing.h5", "no such file")


# -------------------------------------------------------------------------------------------------------- N-MNIST


def test_nmnist_known_words() -> None:
    """Bit layout: x, y, then p in bit 23 and a 23-bit big-endian timestamp."""
    data = bytes(
        [
            5,
            7,
            0x81,
            0x02,
            0x03,  # x=5 y=7 p=1 t=0x010203
            33,
            0,
            0x7F,
            0xFF,
            0xFF,  # x=33 y=0 p=0 t=2**23-1
            0,
            33,
            0x80,
            0x00,
            0x00,
        ]
    )  # x=0 y=33 p=1 t=0
    ev = F.decode_nmnist(data, "x.bin")
    assert ev.dtype == EVENTS_2D
    assert ev.tolist() == [(0x010203, 5, 7, 1), ((1 << 23) - 1, 33, 0, 0), (0, 0, 33, 1)]
    assert F.encode_nmnist(ev) == data


def test_nmnist_round_trip(tmp_path: Path) -> None:
    ev = random_2d(np.random.default_rng(1), 500, 34, 34, 300_000)
    F.write_nmnist(tmp_path / "00001.bin", ev)
    assert (tmp_path / "00001.bin").stat().st_size == 5 * 500
    got = F.read_nmnist_file(tmp_path / "00001.bin")
    np.testing.assert_array_equal(got, ev)


def test_nmnist_overflow_marker() -> None:
    """y == 240 marks a timestamp overflow (the dataset's reference reader): dropped, +2**13 µs afterwards."""
    data = bytes([1, 1, 0, 0, 10, 0, 240, 0, 0, 0, 2, 2, 0, 0, 20, 0, 240, 0, 0, 0, 3, 3, 0, 0, 30])
    ev = F.decode_nmnist(data)
    assert ev["t"].tolist() == [10, 20 + 8192, 30 + 2 * 8192] and ev["x"].tolist() == [1, 2, 3]


def test_nmnist_matches_tonic(tmp_path: Path) -> None:
    tio = pytest.importorskip("tonic.io")
    rng = np.random.default_rng(2)
    ev = random_2d(rng, 800, 34, 34, 1 << 23)
    raw = bytearray(F.encode_nmnist(ev))
    raw[5 * 100 + 1] = 240  # two overflow markers
    raw[5 * 500 + 1] = 240
    (tmp_path / "a.bin").write_bytes(bytes(raw))
    theirs = tio.read_mnist_file(str(tmp_path / "a.bin"), dtype=np.dtype([(f, int) for f in "xytp"]))
    ours = F.read_nmnist_file(tmp_path / "a.bin")
    assert len(ours) == 798
    for f in "xytp":
        np.testing.assert_array_equal(ours[f], theirs[f])


def make_nmnist_tree(root: Path, per_digit: int = 2, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    made: dict[str, list[np.ndarray]] = {}
    for split in ("Train", "Test"):
        made[split] = []
        for d in range(10):
            (root / split / str(d)).mkdir(parents=True)
            for k in range(per_digit):
                ev = random_2d(rng, int(rng.integers(1, 60)), 34, 34, 300_000)
                F.write_nmnist(root / split / str(d) / f"{k:05d}.bin", ev)
                made[split].append(ev)
    return made


def test_read_nmnist_folder(tmp_path: Path) -> None:
    made = make_nmnist_tree(tmp_path)
    es = F.read_nmnist(tmp_path, "test")
    assert es.format == "nmnist" and es.sensor_size == (34, 34, 2) and len(es) == 20
    assert es.labels.tolist() == [d for d in range(10) for _ in range(2)]
    assert es.files[3].endswith(str(Path("Test") / "1" / "00001.bin"))
    for a, b in zip(es.events, made["Test"]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataFormatError) as e:
        F.read_nmnist(tmp_path / "Train", "train")
    one_line(e, "no Train/ folder")


NMNIST_BAD = {
    "truncated": (bytes(12), "truncated event at byte 10 (file length 12 not a multiple of 5)"),
    "one_byte": (b"\x01", "truncated event at byte 0"),
    "x_40": (bytes([1, 1, 0, 0, 1, 2, 2, 0, 0, 2, 40, 3, 0, 0, 3]), "byte 10: x=40 outside the 34x34 sensor"),
    "y_34": (bytes([1, 1, 0, 0, 1, 2, 34, 0, 0, 2]), "byte 6: y=34 outside the 34x34 sensor"),
    "y_255": (bytes([0, 255, 0, 0, 0]), "byte 1: y=255"),
}


@pytest.mark.parametrize("case", sorted(NMNIST_BAD))
def test_nmnist_malformed(tmp_path: Path, case: str) -> None:
    data, needle = NMNIST_BAD[case]
    path = tmp_path / f"{case}.bin"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as e:
        F.read_nmnist_file(path)
    one_line(e, str(path), needle)


def test_nmnist_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as e:
        F.read_nmnist_file(tmp_path / "nope.bin")
    one_line(e, "nope.bin", "cannot read")


# ---------------------------------------------------------------------------------------------- AEDAT 3.1 / DVS


def test_aedat_hand_built_bits() -> None:
    """Bit layout and timestamp overflow, packets built with struct.pack; other packet types skipped, invalid
    events dropped."""
    data = (
        HEADER
        + END
        + packet(0, [(0x12345678, 5)])  # special event packet: skipped
        + packet(1, [(word(100, 5, 1), 12345), (word(7, 127, 0, valid=0), 12346), (word(127, 0, 0), 12347)], overflow=2)
        + packet(7, [], size=12, number=2)
        + bytes(24)  # another type with 12-byte events: skipped
        + packet(1, [(word(0, 64, 1), 3)], overflow=3)
    )
    ev = F.decode_aedat31(data, "rec.aedat")
    assert ev.dtype == EVENTS_2D
    assert ev.tolist() == [((2 << 31) | 12345, 100, 5, 1), ((2 << 31) | 12347, 127, 0, 0), ((3 << 31) | 3, 0, 64, 1)]


def test_aedat_round_trip(tmp_path: Path) -> None:
    ev = random_2d(np.random.default_rng(4), 3000, 128, 128, 1 << 20)
    ev["t"][1500:] += 5 << 31  # crosses overflow epochs
    F.write_aedat31(tmp_path / "r.aedat", ev, packet_size=700)
    np.testing.assert_array_equal(F.read_aedat31(tmp_path / "r.aedat"), ev)


def test_aedat_matches_tonic(tmp_path: Path) -> None:
    """tonic 1.7's ``read_dvs_ibm`` cannot read any file: it unpacks two values from
    ``read_aedat_header_from_file``, which returns three.  Its lower-level packet reader
    (``read_aedat_header_from_file`` + ``get_aer_events_from_file``) works on raw AEDAT 3.1 polarity packets, so
    we compare with that, decoding the address words with read_dvs_ibm's bit masks.  (tonic reads every packet as
    polarity events and ignores eventTSOverflow and the valid bit, so the file has only valid polarity events in
    the first overflow epoch.)"""
    tio = pytest.importorskip("tonic.io")
    ev = random_2d(np.random.default_rng(5), 2000, 128, 128, 1 << 30)
    path = tmp_path / "user01_led.aedat"
    F.write_aedat31(path, ev, packet_size=333)
    try:
        tio.read_dvs_ibm(str(path))
        ibm_works = True
    except ValueError:  # "too many values to unpack" in tonic 1.7
        ibm_works = False
    version, start, _ = tio.read_aedat_header_from_file(str(path))
    raw = tio.get_aer_events_from_file(str(path), version, start)
    addr, t = raw["address"].astype(np.int64), raw["timeStamp"].astype(np.int64)
    ours = F.read_aedat31(path)
    assert version == 3.1 and len(raw) == len(ours) == 2000
    np.testing.assert_array_equal(ours["t"], t)
    np.testing.assert_array_equal(ours["x"], (addr >> 17) & 0x1FFF)
    np.testing.assert_array_equal(ours["y"], (addr >> 2) & 0x1FFF)
    np.testing.assert_array_equal(ours["p"], (addr >> 1) & 1)
    if ibm_works:  # a fixed tonic: compare its full decoder as well
        _, theirs = tio.read_dvs_ibm(str(path))
        for f in "xytp":
            np.testing.assert_array_equal(ours[f], theirs[f])


def aedat_bytes() -> bytes:
    return HEADER + END + packet(1, [(word(1, 2, 1), 10), (word(3, 4, 0), 20)]) + packet(1, [(word(5, 6, 1), 30)])


def _cut(n: int):
    return lambda d: d[:n]


_BODY0 = len(HEADER + END)
AEDAT_BAD = {
    "empty": (lambda d: b"", "no '#!AER-DAT3.1' line at byte 0"),
    "version_2": (lambda d: d.replace(b"3.1", b"2.0", 1), "AEDAT version 2.0, expected AEDAT 3.1"),
    "no_end_header": (lambda d: d.replace(END, b"#!END-HEADEX\r\n"), "no '#!END-HEADER' line"),
    "header_line_without_hash": (lambda d: d.replace(b"#Format", b"Format"), "header line does not start with '#'"),
    "header_lf_only": (lambda d: d.replace(b"RAW\r\n", b"RAW\n"), "header line does not end with CRLF"),
    "truncated_packet_header": (_cut(_BODY0 + 10), f"byte {_BODY0}: truncated packet header (10 of 28 bytes)"),
    "truncated_second_header": (_cut(_BODY0 + 28 + 16 + 27), f"byte {_BODY0 + 44}: truncated packet header"),
    "truncated_body": (_cut(_BODY0 + 28 + 12), f"byte {_BODY0}: packet body of 2 x 8 bytes runs past the end"),
    "huge_event_number": (
        lambda d: d[: _BODY0 + 20] + struct.pack("<i", 2**31 - 1) + d[_BODY0 + 24 :],
        "packet body of 2147483647 x 8 bytes runs past the end",
    ),
    "negative_event_number": (
        lambda d: d[: _BODY0 + 20] + struct.pack("<i", -1) + d[_BODY0 + 24 :],
        "bad packet header",
    ),
    "event_size_zero": (lambda d: d[: _BODY0 + 4] + struct.pack("<i", 0) + d[_BODY0 + 8 :], "eventSize 0"),
    "event_size_7": (
        lambda d: d[: _BODY0 + 4] + struct.pack("<i", 7) + d[_BODY0 + 8 :],
        "polarity packet with eventSize 7",
    ),
    "ts_offset_0": (lambda d: d[: _BODY0 + 8] + struct.pack("<i", 0) + d[_BODY0 + 12 :], "eventTSOffset 0"),
    "valid_above_number": (lambda d: d[: _BODY0 + 24] + struct.pack("<i", 3) + d[_BODY0 + 28 :], "eventValid 3"),
    "negative_overflow": (lambda d: d[: _BODY0 + 12] + struct.pack("<i", -5) + d[_BODY0 + 16 :], "eventTSOverflow -5"),
    "compressed": (lambda d: d[:_BODY0] + struct.pack("<H", 0x8001) + d[_BODY0 + 2 :], "compressed packet"),
    "x_200": (
        lambda d: d[: _BODY0 + 28] + struct.pack("<I", word(200, 1, 1)) + d[_BODY0 + 32 :],
        f"byte {_BODY0 + 28}: x=200 outside the 128x128 sensor",
    ),
    "y_128": (
        lambda d: d[: _BODY0 + 36] + struct.pack("<I", word(1, 128, 1)) + d[_BODY0 + 40 :],
        f"byte {_BODY0 + 36}: y=128 outside",
    ),
    "negative_ts": (
        lambda d: d[: _BODY0 + 76] + struct.pack("<i", -7) + d[_BODY0 + 80 :],
        f"byte {_BODY0 + 76}: negative timestamp",
    ),
}


@pytest.mark.parametrize("case", sorted(AEDAT_BAD))
def test_aedat_malformed(tmp_path: Path, case: str) -> None:
    mutate, needle = AEDAT_BAD[case]
    path = tmp_path / f"{case}.aedat"
    path.write_bytes(mutate(aedat_bytes()))
    with pytest.raises(DataFormatError) as e:
        F.read_aedat31(path)
    one_line(e, str(path), needle)


def test_aedat_sound_file_reads() -> None:
    assert F.decode_aedat31(aedat_bytes()).tolist() == [(10, 1, 2, 1), (20, 3, 4, 0), (30, 5, 6, 1)]
    assert len(F.decode_aedat31(HEADER + END)) == 0  # a header and no packets: an empty recording


def test_dvs_labels_csv(tmp_path: Path) -> None:
    path = tmp_path / "user01_led_labels.csv"
    path.write_bytes(b"class,startTime_usec,endTime_usec\r\n1,100,200\r\n11,150,400\r\n\r\n")
    assert F.read_dvs_labels(path).tolist() == [[0, 100, 200], [10, 150, 400]]
    F.write_dvs_labels(path, [3, 4], [5, 6], [7, 8])
    assert F.read_dvs_labels(path).tolist() == [[3, 5, 7], [4, 6, 8]]


CSV_BAD = {
    "empty": (b"", "line 1: expected the header"),
    "bad_header": (b"label,start,end\n1,2,3\n", "line 1: expected the header"),
    "two_columns": (b"class,startTime_usec,endTime_usec\n1,2\n", "line 2: expected"),
    "not_a_number": (b"class,startTime_usec,endTime_usec\n1,2,3\n4,x,6\n", "line 3: expected"),
    "negative": (b"class,startTime_usec,endTime_usec\n1,-2,3\n", "line 2: expected"),
    "class_0": (b"class,startTime_usec,endTime_usec\n0,2,3\n", "line 2: class 0 outside 1..11"),
    "class_12": (b"class,startTime_usec,endTime_usec\n12,2,3\n", "class 12 outside 1..11"),
    "reversed": (b"class,startTime_usec,endTime_usec\n1,9,3\n", "segment [9, 3) is not a time interval"),
    "binary": (b"\xff\xfe\x00garbage", "not a text file"),
}


@pytest.mark.parametrize("case", sorted(CSV_BAD))
def test_dvs_labels_malformed(tmp_path: Path, case: str) -> None:
    data, needle = CSV_BAD[case]
    path = tmp_path / f"{case}_labels.csv"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as e:
        F.read_dvs_labels(path)
    one_line(e, str(path), needle)


def make_gesture_tree(root: Path, seed: int = 0) -> dict:
    """DvsGesture/ with 3 recordings (2 train, 1 test), each with 3 labelled segments."""
    rng = np.random.default_rng(seed)
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    truth: dict = {"train": [], "test": []}
    trials = {"train": ["user01_fluorescent.aedat", "user02_led.aedat"], "test": ["user24_lab.aedat"]}
    for split, names in trials.items():
        for name in names:
            ev = random_2d(rng, 3000, 128, 128, 6_000_000)
            ev["t"] += 10_000_000  # recordings do not start at 0
            F.write_aedat31(folder / name, ev)
            starts = np.array([10_500_000, 12_000_000, 14_000_000])
            ends = starts + 1_000_000
            labels = rng.integers(0, 11, 3)
            F.write_dvs_labels(folder / name.replace(".aedat", "_labels.csv"), labels, starts, ends)
            user = int(name[4:6])
            for c, s, e in zip(labels, starts, ends):
                seg = ev[(ev["t"] >= s) & (ev["t"] < e)].copy()
                seg["t"] -= s
                truth[split].append((int(c), user, seg))
        (folder / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n\n")
    return truth


def test_read_dvs_gesture(tmp_path: Path) -> None:
    truth = make_gesture_tree(tmp_path)
    for root in (tmp_path, tmp_path / "DvsGesture"):
        for split in ("train", "test"):
            es = F.read_dvs_gesture(root, split)
            assert es.format == "dvs_gesture" and es.sensor_size == (128, 128, 2) and len(es.keys) == 11
            assert len(es) == len(truth[split]) == 3 * (2 if split == "train" else 1)
            for k, (c, user, seg) in enumerate(truth[split]):
                assert es.labels[k] == c and es.speakers[k] == user
                np.testing.assert_array_equal(es.events[k], seg)
                assert es.events[k]["t"].min() >= 0 and es.events[k]["t"].max() < 1_000_000


def test_read_dvs_gesture_missing_pieces(tmp_path: Path) -> None:
    make_gesture_tree(tmp_path)
    folder = tmp_path / "DvsGesture"
    (folder / "user02_led_labels.csv").unlink()
    with pytest.raises(DataFormatError) as e:
        F.read_dvs_gesture(tmp_path, "train")
    one_line(e, "user02_led_labels.csv")
    (folder / "user24_lab.aedat").unlink()
    with pytest.raises(DataFormatError) as e:
        F.read_dvs_gesture(tmp_path, "test")
    one_line(e, "trials_to_test.txt", "line 1: user24_lab.aedat not found")
    with pytest.raises(DataFormatError) as e:
        F.read_dvs_gesture(tmp_path / "nothing", "train")
    one_line(e, "no trials_to_train.txt")


# -------------------------------------------------------------------------------------------------------- inspect

KEYS = {"format", "samples", "classes", "events", "duration_s", "sensor_size"}


def check_summary(d: dict, fmt: str, samples: int, classes: int, events: int, sensor: list[int]) -> None:
    json.dumps(d)  # the CLI prints it as JSON
    assert KEYS <= set(d)
    assert (d["format"], d["samples"], d["classes"], d["events"], d["sensor_size"]) == (
        fmt,
        samples,
        classes,
        events,
        sensor,
    )


def test_inspect_shd(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times, units, labels = shd_data(rng, 8)
    F.write_shd(tmp_path / "shd_test.h5", times, units, labels)
    d = F.inspect(tmp_path / "shd_test.h5")
    check_summary(d, "shd", 8, len(set(labels.tolist())), sum(map(len, times)), [700])
    t_end = max(float(t.astype(np.float64).max()) for t in times if len(t))
    assert d["duration_s"] == pytest.approx(t_end, abs=1e-6)
    F.write_shd(tmp_path / "shd_train.h5", times[:3], units[:3], labels[:3])
    d = F.inspect(tmp_path)  # a folder of .h5 files
    assert d["samples"] == 11 and set(d["splits"]) == {"shd_test", "shd_train"} and d["format"] == "shd"


def test_inspect_nmnist(tmp_path: Path) -> None:
    made = make_nmnist_tree(tmp_path)
    n_ev = sum(len(e) for s in made.values() for e in s)
    check_summary(F.inspect(tmp_path), "nmnist", 40, 10, n_ev, [34, 34, 2])
    check_summary(F.inspect(tmp_path / "Train"), "nmnist", 20, 10, sum(len(e) for e in made["Train"]), [34, 34, 2])
    one = F.inspect(tmp_path / "Test" / "7" / "00000.bin")
    check_summary(one, "nmnist", 1, 1, len(made["Test"][14]), [34, 34, 2])
    assert one["label_counts"] == {"7": 1}
    assert one["duration_s"] == made["Test"][14]["t"].max() / 1e6


def test_inspect_dvs(tmp_path: Path) -> None:
    truth = make_gesture_tree(tmp_path)
    all_segs = truth["train"] + truth["test"]
    d = F.inspect(tmp_path)
    check_summary(
        d, "dvs_gesture", 9, len({c for c, _, _ in all_segs}), sum(len(s) for _, _, s in all_segs), [128, 128, 2]
    )
    assert set(d["splits"]) == {"train", "test"}
    rec = tmp_path / "DvsGesture" / "user24_lab.aedat"
    d = F.inspect(rec)
    check_summary(
        d,
        "dvs_gesture",
        3,
        len({c for c, _, _ in truth["test"]}),
        sum(len(s) for _, _, s in truth["test"]),
        [128, 128, 2],
    )
    rec.with_name("user24_lab_labels.csv").unlink()
    d = F.inspect(rec)
    check_summary(d, "aedat31", 1, 0, 3000, [128, 128, 2])
    assert d["t_start_us"] >= 10_000_000 and 0 < d["duration_s"] <= 6.0


def test_inspect_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError) as e:
        F.inspect(tmp_path / "notes.txt")
    one_line(e, "notes.txt", "unknown format")
    with pytest.raises(DataFormatError) as e:
        F.inspect(tmp_path)
    one_line(e, "no dataset found")
    with pytest.raises(DataFormatError) as e:
        F.inspect(tmp_path / "absent")
    one_line(e, "no such file or folder")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(7))
    with pytest.raises(DataFormatError) as e:
        F.inspect(bad)
    one_line(e, "bad.bin", "byte 5")
