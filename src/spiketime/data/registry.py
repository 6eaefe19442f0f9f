"""Where the real datasets live and how to get them.

``data_home()`` is ``$SPIKETIME_DATA`` (default ``~/.cache/spiketime``); dataset ``name`` lives in
``data_home() / name`` unless a folder is given.  :data:`DATASETS` lists, for each dataset, the files it needs
(relative to its folder), where each comes from, its checksum and how it unpacks:

=============  =====================================================  ========================================
dataset        files in the dataset folder                            fetched as
=============  =====================================================  ========================================
``shd``        ``shd_train.h5``, ``shd_test.h5``                      ``<file>.zip`` from zenkelab.org
``ssc``        ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``    ``<file>.zip`` from zenkelab.org
``nmnist``     ``Train/``, ``Test/``                                  ``train.zip``, ``test.zip`` (Mendeley Data)
``dvs_gesture`` ``DvsGesture/``                                       ``DvsGesture.tar.gz`` (IBM Box: by hand)
=============  =====================================================  ========================================

Checksums are MD5 of the downloaded archives, as published in the loaders of well-known libraries (no checksum of
our own making): SHD/SSC and N-MNIST from tonic 1.7 (``tonic/datasets/hsd.py``, ``tonic/datasets/nmnist.py``,
github.com/neuromorphs/tonic), DVS128 Gesture from SpikingJelly (``spikingjelly/datasets/dvs128_gesture.py``,
``resource_url_md5``).  An archive is downloaded to ``<name>.part``, checked, then renamed; a file put in place by
hand (archive or unpacked) is used as it is.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from spiketime.errors import InputError

Fetch = Callable[[str, Path], None]


@dataclass(frozen=True)
class Source:
    """One downloadable file: ``url``, the local ``filename`` it is saved as, its ``md5`` and how it unpacks."""

    url: str
    filename: str
    md5: str
    archive: Literal["zip", "gz", "tar.gz", "none"]


@dataclass(frozen=True)
class Resource:
    """A file or folder a dataset needs (``path`` relative to the dataset folder) and where it comes from.
    ``manual``: the source cannot be fetched by a script (a login or a web page in between)."""

    path: str
    source: Source
    manual: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    page: str
    resources: tuple[Resource, ...]


_ZENKE = "https://zenkelab.org/datasets/"
_MENDELEY = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
_IBM_BOX = "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794"


def _zenke(stem: str, md5: str) -> Resource:
    return Resource(f"{stem}.h5", Source(f"{_ZENKE}{stem}.h5.zip", f"{stem}.h5.zip", md5, "zip"))


DATASETS: dict[str, DatasetInfo] = {
    # MD5s: tonic 1.7, tonic/datasets/hsd.py (SHD.train_md5/test_md5, SSC.train_md5/valid_md5/test_md5).
    "shd": DatasetInfo(
        "shd",
        "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/",
        (
            _zenke("shd_train", "f3252aeb598ac776c1b526422d90eecb"),
            _zenke("shd_test", "1503a5064faa34311c398fb0a1ed0a6f"),
        ),
    ),
    "ssc": DatasetInfo(
        "ssc",
        "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/",
        (
            _zenke("ssc_train", "d102be95e7144fcc0553d1f45ba94170"),
            _zenke("ssc_valid", "b4eee3516a4a90dd0c71a6ac23a8ae43"),
            _zenke("ssc_test", "a35ff1e9cffdd02a20eb850c17c37748"),
        ),
    ),
    # URLs and MD5s: tonic 1.7, tonic/datasets/nmnist.py (train_url/train_md5, test_url/test_md5).
    "nmnist": DatasetInfo(
        "nmnist",
        "https://www.garrickorchard.com/datasets/n-mnist",
        (
            Resource(
                "Train",
                Source(
                    f"{_MENDELEY}39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
                    "train.zip",
                    "20959b8e626244a1b502305a9e6e2031",
                    "zip",
                ),
            ),
            Resource(
                "Test",
                Source(
                    f"{_MENDELEY}05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
                    "test.zip",
                    "69ca8762b2fe404d9b9bad1103e97832",
                    "zip",
                ),
            ),
        ),
    ),
    # The raw AEDAT release sits behind an IBM Box page; MD5 from SpikingJelly's DVS128Gesture.resource_url_md5.
    "dvs_gesture": DatasetInfo(
        "dvs_gesture",
        "https://research.ibm.com/interactive/dvsgesture/",
        (
            Resource(
                "DvsGesture",
                Source(_IBM_BOX, "DvsGesture.tar.gz", "8a5c71fb11e24e5ca5b11866ca6c00a1", "tar.gz"),
                manual=True,
            ),
        ),
    ),
}


def data_home() -> Path:
    """Root of the data cache: ``$SPIKETIME_DATA``, else ``~/.cache/spiketime``."""
    return Path(os.environ.get("SPIKETIME_DATA") or "~/.cache/spiketime").expanduser()


def _brief(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def md5_of(path: Path) -> str:
    """MD5 hex digest of a file."""
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def urllib_fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with urllib, showing a tqdm progress bar on a terminal."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "spiketime"})
    with urllib.request.urlopen(req, timeout=60) as r, dest.open("wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.removesuffix(".part"), disable=None) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))


def _by_hand(res: Resource, root: Path) -> str:
    return f"put it at {root / res.source.filename} (or its unpacked {res.path} at {root / res.path})"


def _download(res: Resource, root: Path, fetch: Fetch) -> Path:
    src = res.source
    archive = root / src.filename
    part = archive.with_name(archive.name + ".part")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch(src.url, part)
    except Exception as e:  # URLError, HTTPError, TimeoutError, OSError, ValueError (bad URL), a fetcher's own
        part.unlink(missing_ok=True)
        raise InputError(
            f"could not fetch {src.url} ({_brief(e)}); download it by hand and {_by_hand(res, root)}"
        ) from None
    got = md5_of(part)
    if got != src.md5:
        part.unlink(missing_ok=True)
        raise InputError(
            f"{src.url}: downloaded file has MD5 {got}, expected {src.md5} (removed); download it "
            f"by hand and {_by_hand(res, root)}"
        )
    part.replace(archive)
    return archive


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts


def _unpack(res: Resource, archive: Path, root: Path) -> None:
    """Unpack ``archive`` so that ``root / res.path`` exists (found at the archive's top or one folder down)."""
    target = root / res.path
    kind = res.source.archive
    tmp = root / f".unpack-{res.path}"
    try:
        if kind == "none":
            shutil.copyfile(archive, target)
            return
        if kind == "gz":
            part = target.with_name(target.name + ".part")
            with gzip.open(archive, "rb") as fin, part.open("wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            part.replace(target)
            return
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                bad = [m for m in z.namelist() if not _safe_member(m)]
                if bad:
                    raise ValueError(f"unsafe member path {bad[0]!r}")
                z.extractall(tmp)
        else:
            with tarfile.open(archive, "r:*") as t:
                bad = [m.name for m in t.getmembers() if not _safe_member(m.name) or m.issym() or m.islnk()]
                if bad:
                    raise ValueError(f"unsafe member {bad[0]!r}")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                    t.extractall(tmp, filter="data")
                else:
                    t.extractall(tmp)
        found = [c for c in [tmp / res.path, *(d / res.path for d in tmp.iterdir() if d.is_dir())] if c.exists()]
        if not found:
            raise ValueError(f"no {res.path} inside")
        found[0].replace(target)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise InputError(
            f"{archive}: cannot unpack ({_brief(e)}); delete it and run again, or unpack it by hand so "
            f"that {target} exists"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_dataset(
    name: str,
    root: Path | str | None = None,
    download: bool = True,
    *,
    fetch: Fetch | None = None,
    datasets: dict[str, DatasetInfo] | None = None,
) -> Path:
    """The folder of dataset ``name`` (``root``, default ``data_home() / name``) once all its files are there.

    Missing files are unpacked from an archive already in the folder (checked against its MD5) or, with
    ``download``, fetched (``fetch(url, dest)``, default :func:`urllib_fetch`), checked and unpacked.  Any failure
    is a one-line :class:`InputError` naming the URL and exactly where to put the file by hand."""
    table = DATASETS if datasets is None else datasets
    if name not in table:
        raise InputError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(table))}")
    info = table[name]
    root = Path(root).expanduser() if root is not None else data_home() / name
    for res in info.resources:
        if (root / res.path).exists():
            continue
        src = res.source
        archive = root / src.filename
        if archive.is_file():
            got = md5_of(archive)
            if got != src.md5:
                raise InputError(
                    f"{archive}: MD5 {got}, expected {src.md5} for {src.url}; replace it with the "
                    f"right file, or {_by_hand(res, root).replace('put it at', 'put')}"
                )
        elif res.manual:
            raise InputError(
                f"{name}: {src.filename} cannot be fetched automatically (download it from {src.url}); "
                f"{_by_hand(res, root)}"
            )
        elif not download:
            raise InputError(
                f"{name}: {root / res.path} is missing (download is off); fetch {src.url} and {_by_hand(res, root)}"
            )
        else:
            archive = _download(res, root, fetch or urllib_fetch)
        _unpack(res, archive, root)
    return root
