"""`spiketime data ...`: inspect, audio-to-spikes, fetch, as a user runs them (JSON on stdout, one-line errors)."""

import json

import numpy as np
import pytest

from spiketime.app.cli.main import main
from spiketime.data.formats import EVENTS_2D, write_nmnist


def _nmnist_folder(root, per_class=2):
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for digit in range(3):
            (root / split / str(digit)).mkdir(parents=True)
            for i in range(per_class):
                ev = np.zeros(50, EVENTS_2D)
                ev["t"] = np.sort(rng.integers(0, 300_000, 50))
                ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, 50), rng.integers(0, 34, 50), rng.integers(0, 2, 50)
                write_nmnist(root / split / str(digit) / f"{i + 1:05d}.bin", ev)
    return root


def test_data_inspect_prints_the_contract_fields(tmp_path, capsys):
    root = _nmnist_folder(tmp_path / "nm")
    assert main(["data", "inspect", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nmnist" and info["samples"] == 12 and info["classes"] == 3
    assert info["events"] == 600 and info["sensor_size"] == [34, 34, 2] and 0 < info["duration_s"] <= 0.3


def test_data_inspect_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "00001.bin"
    bad.write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")  # 7 bytes: not a multiple of 5
    assert main(["data", "inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "00001.bin" in err and "byte" in err


def test_audio_to_spikes_cli(tmp_path, capsys):
    import wave

    from spiketime.data.speech import synthesize

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    x = synthesize("four", "en-us")
    with wave.open(str(wavs / "four.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
        w.writeframes((x * 20000).astype("<i2").tobytes())
    (tmp_path / "labels.csv").write_text("file,label\nfour.wav,4\n")
    out = tmp_path / "mine.h5"
    assert (
        main(
            [
                "data",
                "audio-to-spikes",
                str(wavs),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--out",
                str(out),
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["data", "inspect", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 1 and info["sensor_size"] == [700] and info["events"] > 500


@pytest.mark.parametrize("name", ["shd", "dvs_gesture"])
def test_fetch_without_network_says_where_to_put_the_files(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKETIME_DATA", str(tmp_path))
    import spiketime.data.registry as registry

    def no_network(url, dest, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(registry, "urllib_fetch", no_network)
    assert main(["data", "fetch", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http" in err and str(tmp_path / name) in err
