"""Dataset registry: cache location, the table of real datasets, fetching (never over the network here)."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import one_line
from spiketime.app.config import ConfigError
from spiketime.data import registry as R
from spiketime.data.registry import DATASETS, DatasetInfo, Resource, Source, data_home, ensure_dataset


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def no_fetch(url: str, dest: Path) -> None:
    raise AssertionError(f"tried to fetch {url}")


def test_data_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPIKETIME_DATA", str(tmp_path / "d"))
    assert data_home() == tmp_path / "d"
    monkeypatch.delenv("SPIKETIME_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_home() == tmp_path / ".cache" / "spiketime"


def test_real_table() -> None:
    assert set(DATASETS) == {"shd", "ssc", "nmnist", "dvs_gesture"}
    paths = {name: [r.path for r in info.resources] for name, info in DATASETS.items()}
    assert paths == {
        "shd": ["shd_train.h5", "shd_test.h5"],
        "ssc": ["ssc_train.h5", "ssc_valid.h5", "ssc_test.h5"],
        "nmnist": ["Train", "Test"],
        "dvs_gesture": ["DvsGesture"],
    }
    for info in DATASETS.values():
        assert info.page.startswith("https://")
        for res in info.resources:
            assert re.fullmatch(r"[0-9a-f]{32}", res.source.md5)
            assert res.source.url.startswith("https://") and res.source.archive in ("zip", "gz", "tar.gz", "none")
    assert DATASETS["shd"].resources[0].source.url == "https://zenkelab.org/datasets/shd_train.h5.zip"
    assert [r.manual for r in DATASETS["dvs_gesture"].resources] == [True]


def fake_table(
    tmp_path: Path,
    payload: bytes,
    archive: str,
    path: str = "shd_train.h5",
    filename: str = "a.zip",
    checksum: str | None = None,
) -> tuple[dict[str, DatasetInfo], Path]:
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    (server / filename).write_bytes(payload)
    src = Source((server / filename).as_uri(), filename, checksum or md5(payload), archive)  # type: ignore[arg-type]
    return {"toy": DatasetInfo("toy", "https://example.org", (Resource(path, src),))}, server / filename


def test_present_files_need_no_fetch(tmp_path: Path) -> None:
    root = tmp_path / "shd"
    root.mkdir()
    for f in ("shd_train.h5", "shd_test.h5"):
        (root / f).write_bytes(b"x")
    assert ensure_dataset("shd", root, fetch=no_fetch) == root
    assert ensure_dataset("shd", root, download=False) == root


def test_default_root_is_data_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPIKETIME_DATA", str(tmp_path))
    (tmp_path / "nmnist" / "Train").mkdir(parents=True)
    (tmp_path / "nmnist" / "Test").mkdir()
    assert ensure_dataset("nmnist", fetch=no_fetch) == tmp_path / "nmnist"


def test_zip_download_over_file_url(tmp_path: Path) -> None:
    """The default urllib fetcher on a file:// URL: downloaded, checked, unpacked, no temporary left behind."""
    table, _ = fake_table(tmp_path, zip_bytes({"shd_train.h5": b"HDF5 payload"}), "zip")
    root = tmp_path / "data"
    assert ensure_dataset("toy", root, datasets=table) == root
    assert (root / "shd_train.h5").read_bytes() == b"HDF5 payload"
    assert (root / "a.zip").is_file() and not list(root.glob("*.part")) and not list(root.glob(".unpack-*"))
    assert ensure_dataset("toy", root, datasets=table, fetch=no_fetch) == root  # second call: nothing to do


def test_zip_with_top_folder_and_folder_target(tmp_path: Path) -> None:
    payload = zip_bytes({"NMNIST/Train/0/00001.bin": b"12345", "NMNIST/Train/1/00002.bin": b"67890"})
    table, _ = fake_table(tmp_path, payload, "zip", path="Train")
    root = tmp_path / "data"
    ensure_dataset("toy", root, datasets=table)
    assert (root / "Train" / "1" / "00002.bin").read_bytes() == b"67890"


def test_gz_and_tar_gz(tmp_path: Path) -> None:
    table, _ = fake_table(tmp_path, gzip.compress(b"gz payload"), "gz", filename="a.h5.gz")
    ensure_dataset("toy", tmp_path / "g", datasets=table)
    assert (tmp_path / "g" / "shd_train.h5").read_bytes() == b"gz payload"
    table, _ = fake_table(
        tmp_path,
        tar_bytes({"DvsGesture/trials_to_train.txt": b"user01_led.aedat\n"}),
        "tar.gz",
        path="DvsGesture",
        filename="DvsGesture.tar.gz",
    )
    ensure_dataset("toy", tmp_path / "t", datasets=table)
    assert (tmp_path / "t" / "DvsGesture" / "trials_to_train.txt").read_text() == "user01_led.aedat\n"


def test_injected_fetcher(tmp_path: Path) -> None:
    payload = zip_bytes({"shd_train.h5": b"via fetcher"})
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append((url, dest.name))
        dest.write_bytes(payload)

    table, _ = fake_table(tmp_path, payload, "zip")
    ensure_dataset("toy", tmp_path / "data", datasets=table, fetch=fetch)
    assert calls == [(table["toy"].resources[0].source.url, "a.zip.part")]
    assert (tmp_path / "data" / "shd_train.h5").read_bytes() == b"via fetcher"


def test_unreachable_url(tmp_path: Path) -> None:
    src = Source("http://127.0.0.1:9/shd_train.h5.zip", "shd_train.h5.zip", "0" * 32, "zip")
    table = {"toy": DatasetInfo("toy", "https://example.org", (Resource("shd_train.h5", src),))}
    root = tmp_path / "data"
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", root, datasets=table)
    one_line(
        e,
        "could not fetch http://127.0.0.1:9/shd_train.h5.zip",
        f"put it at {root / 'shd_train.h5.zip'}",
        f"{root / 'shd_train.h5'}",
    )
    assert not list(root.glob("*"))  # the temporary file is gone


def test_checksum_mismatch_removes_download(tmp_path: Path) -> None:
    table, _ = fake_table(tmp_path, zip_bytes({"shd_train.h5": b"x"}), "zip", checksum="f" * 32)
    root = tmp_path / "data"
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", root, datasets=table)
    one_line(e, "expected " + "f" * 32, "(removed)", str(root / "a.zip"))
    assert not (root / "a.zip").exists() and not (root / "a.zip.part").exists()


def test_download_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        ensure_dataset("ssc", tmp_path, download=False, fetch=no_fetch)
    one_line(e, "download is off", "https://zenkelab.org/datasets/ssc_train.h5.zip", str(tmp_path / "ssc_train.h5.zip"))


def test_hand_placed_archive(tmp_path: Path) -> None:
    payload = zip_bytes({"shd_train.h5": b"by hand"})
    table, _ = fake_table(tmp_path, payload, "zip")
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.zip").write_bytes(payload)
    ensure_dataset("toy", root, datasets=table, download=False)
    assert (root / "shd_train.h5").read_bytes() == b"by hand"
    (root / "shd_train.h5").unlink()
    (root / "a.zip").write_bytes(b"something else")
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", root, datasets=table, download=False)
    one_line(e, str(root / "a.zip"), "MD5 " + md5(b"something else"))


def test_dvs_gesture_is_manual(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        ensure_dataset("dvs_gesture", tmp_path, fetch=no_fetch)
    one_line(
        e,
        "cannot be fetched automatically",
        "https://ibm.ent.box.com/",
        str(tmp_path / "DvsGesture.tar.gz"),
        str(tmp_path / "DvsGesture"),
    )
    (tmp_path / "DvsGesture").mkdir()
    assert ensure_dataset("dvs_gesture", tmp_path, fetch=no_fetch) == tmp_path


def test_bad_archives(tmp_path: Path) -> None:
    payload = zip_bytes({"../evil.h5": b"x"})
    table, _ = fake_table(tmp_path, payload, "zip")
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", tmp_path / "a", datasets=table)
    one_line(e, "cannot unpack", "unsafe member path")
    assert not (tmp_path / "evil.h5").exists()
    table, _ = fake_table(tmp_path, zip_bytes({"other.h5": b"x"}), "zip")
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", tmp_path / "b", datasets=table)
    one_line(e, "no shd_train.h5 inside", f"so that {tmp_path / 'b' / 'shd_train.h5'} exists")
    table, _ = fake_table(tmp_path, b"not a zip", "zip")
    with pytest.raises(ConfigError) as e:
        ensure_dataset("toy", tmp_path / "c", datasets=table)
    one_line(e, "cannot unpack", "BadZipFile")


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'mnist': expected one of dvs_gesture, nmnist, shd, ssc"):
        ensure_dataset("mnist")


def test_md5_of(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert R.md5_of(tmp_path / "f") == md5(b"abc" * 1000)
