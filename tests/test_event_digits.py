import json
import sys
from pathlib import Path

import numpy as np
import pytest

from spiketime.app.config import ConfigError
from spiketime.data import event_digits
from spiketime.data.event_digits import make_event_digits, record_digit, split_images


def decode(path: Path) -> dict[str, np.ndarray]:
    """N-MNIST 40-bit events decoded independently: x, y, then 24 bits big-endian (bit 23 polarity, 23-bit µs)."""
    raw = np.fromfile(path, dtype=np.uint8)
    assert raw.size % 5 == 0
    b = raw.reshape(-1, 5).astype(np.int64)
    word = (b[:, 2] << 16) | (b[:, 3] << 8) | b[:, 4]
    return {"x": b[:, 0], "y": b[:, 1], "p": word >> 23, "t": word & ((1 << 23) - 1)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("event_digits")
    assert make_event_digits(out, seed=3, repeats=2, jobs=1, progress=False, limit=20) == out
    return out


def test_layout_and_bytes(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    assert meta["counts"] == {"Train": 20, "Test": 10}  # 1 train image x 2 repeats + 1 test image, per class
    files = {s: sorted((tiny / s).glob("*/*.bin")) for s in ("Train", "Test")}
    assert {s: len(f) for s, f in files.items()} == meta["counts"]
    assert not list(tiny.rglob("*.tmp")) and not (tiny / ".partial.json").exists()
    for split, paths in files.items():
        assert {p.parent.name for p in paths} == {str(d) for d in range(10)}
        assert len({p.name for p in paths}) == len(paths)  # ids unique within a split
        for p in paths:
            assert len(p.stem) == 5 and p.stem.isdigit()
            ev = decode(p)
            assert 1000 < len(ev["t"]) < 20000
            assert ev["x"].min() >= 0 and ev["x"].max() <= 33 and ev["y"].min() >= 0 and ev["y"].max() <= 33
            assert set(np.unique(ev["p"]).tolist()) == {0, 1}
            assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() <= 300_000
            assert ev["t"].max() > 250_000  # all three saccades recorded
    # the two recordings of a train image differ (independent emulator draws)
    rec = meta["recordings"]["Train"]
    a, b = (decode(tiny / "Train" / str(rec["label"][i]) / f"{rec['id'][i]:05d}.bin") for i in (0, 1))
    assert rec["image"][0] == rec["image"][1] and rec["repeat"][:2] == [0, 1]
    assert len(a["t"]) != len(b["t"]) or not np.array_equal(a["t"], b["t"])


def test_split_by_image(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    train, test = set(meta["images"]["Train"]), set(meta["images"]["Test"])
    assert train and test and not train & test
    assert set(meta["recordings"]["Test"]["image"]) == test
    labels = event_digits.load_source_digits()[1]
    tr, te = split_images(labels, seed=0)
    assert len(tr) + len(te) == len(labels) and not set(tr) & set(te)
    for c in range(10):  # stratified, ~25% of every class
        n_c = (labels == c).sum()
        assert abs((labels[te] == c).sum() - 0.25 * n_c) <= 1
    assert np.array_equal(split_images(labels, seed=0)[1], te)
    assert not np.array_equal(split_images(labels, seed=1)[1], te)


def test_cache_hit_and_redo_after_interruption(tiny, monkeypatch):
    def boom(batch):
        raise AssertionError("regenerated on a cache hit")

    with monkeypatch.context() as m:
        m.setattr(event_digits, "_record_batch", boom)
        assert make_event_digits(tiny, seed=3, repeats=2, jobs=1, progress=False, limit=20) == tiny
    # an interrupted run leaves no meta.json: detected and redone (here: resumed, identical bytes)
    probe = sorted((tiny / "Test").glob("*/*.bin"))[0]
    before = probe.read_bytes()
    probe.unlink()
    (tiny / "meta.json").unlink()
    (tiny / ".partial.json").write_text(json.dumps(event_digits._key(3, 2, 20)))
    make_event_digits(tiny, seed=3, repeats=2, jobs=1, progress=False, limit=20)
    assert probe.read_bytes() == before and (tiny / "meta.json").exists()


def test_parallel_matches_serial_and_other_args_regenerate(tmp_path, tiny):
    out = make_event_digits(tmp_path, seed=3, repeats=2, jobs=2, progress=False, limit=20)
    for p in sorted(tiny.rglob("*.bin")):
        assert (out / p.relative_to(tiny)).read_bytes() == p.read_bytes()
    make_event_digits(tmp_path, seed=4, repeats=1, jobs=1, progress=False, limit=20)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["seed"] == 4 and meta["counts"]["Train"] == 10
    assert len(list(tmp_path.glob("Train/*/*.bin"))) == 10  # stale files of the previous run removed


def test_refuses_foreign_folder_and_missing_sklearn(tmp_path, monkeypatch):
    (tmp_path / "Train" / "0").mkdir(parents=True)
    (tmp_path / "Train" / "0" / "00001.bin").write_bytes(b"\0" * 5)
    with pytest.raises(ConfigError, match="not made by"):
        make_event_digits(tmp_path, jobs=1, progress=False, limit=20)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ConfigError, match=r"spiketime\[data\]"):
        make_event_digits(tmp_path / "new", jobs=1, progress=False, limit=20)
    with pytest.raises(ConfigError):
        make_event_digits(tmp_path / "new", repeats=0)


def test_record_digit_carries_the_digit():
    images, labels = event_digits.load_source_digits()
    one, zero = int(np.flatnonzero(labels == 1)[0]), int(np.flatnonzero(labels == 0)[0])
    ev = record_digit(images[one], rng=0)
    np.testing.assert_array_equal(ev, record_digit(images[one], rng=0))  # seeded

    def count_map(e):
        m = np.zeros((34, 34))
        np.add.at(m, (e["y"], e["x"]), 1)
        return m.ravel()

    same = np.corrcoef(count_map(ev), count_map(record_digit(images[one], rng=1)))[0, 1]
    other = np.corrcoef(count_map(ev), count_map(record_digit(images[zero], rng=1)))[0, 1]
    assert same > 0.6 and other < same - 0.3  # where the events fall is the digit's shape
