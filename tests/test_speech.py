"""eSpeak NG synthesis, the built-in spoken digits and the encoding of a user's own recordings."""

from __future__ import annotations

import json
import sys
import time
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("scipy")

from spiketime.app.config import ConfigError  # noqa: E402
from spiketime.data import speech  # noqa: E402
from spiketime.data.speech import Engine, Voice, sample_rate, synthesize  # noqa: E402
from spiketime.data.speech_digits import (  # noqa: E402
    KEYS,
    Speaker,
    _speaker_job,
    audio_to_spikes,
    make_speakers,
    make_speech_digits,
    resolve_size,
    split_speakers,
)


def spectrum(x: np.ndarray, n: int = 1024) -> np.ndarray:
    """Average magnitude spectrum (unit norm)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
    s = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)).mean(0)
    return s / np.linalg.norm(s)


@pytest.mark.parametrize("lang,word", [("en-us", "seven"), ("en-us", "two"), ("de", "sieben"), ("de", "drei")])
def test_synthesis_is_speech_like(lang: str, word: str) -> None:
    x = synthesize(word, Voice(lang, "m3", rate=140))
    fs = sample_rate()
    assert fs == 22050 and x.dtype == np.float32
    assert 0.2 < len(x) / fs < 1.2  # a spoken word, trimmed
    assert np.sqrt(np.mean(x**2)) > 0.02 and np.abs(x).max() <= 1.0


def test_voices_and_prosody_differ() -> None:
    base = synthesize("seven", Voice("en-us", "m3"))
    other_voice = synthesize("seven", Voice("en-us", "f2"))
    slow = synthesize("seven", Voice("en-us", "m3", rate=100))
    assert 1 - spectrum(base) @ spectrum(other_voice) > 0.02  # a different timbre
    assert len(slow) > 1.2 * len(base)  # rate changes duration
    german = synthesize("sieben", Voice("de", "m3"))
    assert 1 - spectrum(base) @ spectrum(german) > 0.01


def test_private_engines_are_reproducible() -> None:
    synthesize("one two three", Voice("en-us", "f4"))  # some history in the shared engine

    def run() -> np.ndarray:
        with Engine(private=True) as eng:
            return np.concatenate([synthesize(w, Voice("de", "m2"), engine=eng, seed=5) for w in ("eins", "neun")])

    a, b = run(), run()
    assert len(a) > 0 and np.array_equal(a, b)


def test_unknown_voice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no voice"):
        synthesize("one", Voice("xx-nowhere", "m3"))


def test_missing_espeak_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ConfigError, match=r'pip install "spiketime\[data\]"'):
        Engine()
    monkeypatch.setattr(speech, "_ENGINE", None)
    with pytest.raises(ConfigError, match=r"spiketime\[data\]"):
        make_speech_digits(Path("/nonexistent-never-created"), size="tiny", progress=False)


def test_speakers_and_sizes() -> None:
    assert resolve_size("default") == (50, 10) and resolve_size(10000) == (50, 10)
    assert resolve_size(40) == (2, 1)
    with pytest.raises(ConfigError):
        resolve_size("huge")
    spk = make_speakers(50, seed=0)
    assert len({(s.variant, s.accent, s.pitch, s.rate) for s in spk}) == 50
    train, test = split_speakers(50, seed=0)
    assert len(test) == 10 and not set(train) & set(test) and sorted(train + test) == list(range(50))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("speech_digits")
    make_speech_digits(out, size="tiny", jobs=2, progress=False, seed=3)
    return out


def test_speech_digits_files_are_valid_shd(tiny_set: Path) -> None:
    meta = json.loads((tiny_set / "meta.json").read_text())
    speakers = {}
    for split in ("train", "test"):
        with h5py.File(tiny_set / f"{split}.h5") as f:
            times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"][:]
            assert h5py.check_vlen_dtype(times.dtype) == np.float32
            assert h5py.check_vlen_dtype(units.dtype) == np.uint16
            assert labels.dtype == np.uint16 and f["extra/speaker"].dtype == np.uint16
            assert [k.decode() for k in f["extra/keys"][:]] == list(KEYS) and len(KEYS) == 20
            assert len(times) == len(units) == len(labels) == meta["counts"][split]
            assert set(labels.tolist()) == set(range(20))  # every class, labels 0..19
            speakers[split] = set(f["extra/speaker"][:].tolist())
            for t, u in zip(times[:], units[:]):
                assert len(t) == len(u) and 300 < len(t) < 40000
                assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 2.0
                assert u.max() < 700
    assert speakers["train"] and speakers["test"] and not speakers["train"] & speakers["test"]
    assert sorted(speakers["test"]) == meta["speakers"]["test"]


def test_speech_digits_cache_hit(tiny_set: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_set.iterdir()}
    assert set(before) == {"train.h5", "test.h5", "meta.json"}  # no temporary files left
    t0 = time.perf_counter()
    assert make_speech_digits(tiny_set, size="tiny", jobs=2, progress=False, seed=3) == (
        tiny_set / "train.h5",
        tiny_set / "test.h5",
    )
    assert time.perf_counter() - t0 < 1.0
    assert {p.name: p.stat().st_mtime_ns for p in tiny_set.iterdir()} == before  # untouched


def test_speech_digits_are_deterministic(tiny_set: Path) -> None:
    """A speaker rendered again here (not in a worker, after other synthesis) gives the same spikes."""
    synthesize("zwei", Voice("de", "f1"))
    meta = json.loads((tiny_set / "meta.json").read_text())
    sid = meta["speakers"]["test"][0]
    speaker = Speaker(**meta["speaker_voices"][sid])
    again = _speaker_job((3, speaker, 1, 4))  # its first 4 words
    with h5py.File(tiny_set / "test.h5") as f:
        rows = np.flatnonzero(f["extra/speaker"][:] == sid)[:4]
        assert len(rows) == len(again) == 4
        for i, (_, label, _, t, u, _) in zip(rows, again):
            assert f["labels"][i] == label
            assert np.array_equal(f["spikes/times"][i], t) and np.array_equal(f["spikes/units"][i], u)


def write_wav(path: Path, x: np.ndarray, fs: int, channels: int = 1, width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(fs)
        if width == 2:
            data = np.clip(x * 32767, -32768, 32767).astype("<i2")
        else:
            data = np.clip(x * 127 + 128, 0, 255).astype(np.uint8)
        if channels == 2:
            data = np.repeat(data, 2)
        w.writeframes(data.tobytes())


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scipy.signal import resample_poly

    d = tmp_path_factory.mktemp("wavs")
    x = synthesize("seven", Voice("en-us", "m1"))
    write_wav(d / "a.wav", resample_poly(x, 320, 441) * 0.3, 16000)  # 16 kHz mono
    write_wav(d / "b.wav", resample_poly(synthesize("drei", "de"), 640, 320) * 0.1, 44100, channels=2)
    (d / "sub").mkdir()
    write_wav(d / "sub" / "c.wav", x, 22050)
    return d


def test_audio_to_spikes(recordings: Path, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,speaker\na.wav,7,1\nb.wav,13,2\n\nsub/c.wav,7,1\n")
    out = audio_to_spikes(recordings, csv, tmp_path / "mine.h5", jobs=1, progress=False)
    with h5py.File(out) as f:
        assert f["labels"][:].tolist() == [7, 13, 7]
        assert f["extra/speaker"][:].tolist() == [1, 2, 1]
        assert [k.decode() for k in f["extra/keys"][:]] == list(KEYS)
        counts = [len(t) for t in f["spikes/times"][:]]
        assert all(c > 500 for c in counts)
        # the same word at 16 kHz and 22.05 kHz (levelled to the same RMS) gives similar activity
        a, c = f["spikes/units"][0], f["spikes/units"][2]
        ha, hc = np.bincount(a // 35, minlength=20), np.bincount(c // 35, minlength=20)
        assert ha @ hc / np.linalg.norm(ha) / np.linalg.norm(hc) > 0.9
    csv.write_text("file,label\na.wav,3\n")
    with h5py.File(audio_to_spikes(recordings, csv, tmp_path / "nospk.h5", jobs=2, progress=False)) as f:
        assert "speaker" not in f.get("extra", {}) and f["labels"][:].tolist() == [3]


@pytest.mark.parametrize(
    "text,match",
    [
        ("file,lab\na.wav,1\n", r"labels\.csv:1: missing column\(s\) label"),
        ("file,label\na.wav,1\nnope.wav,2\n", r"labels\.csv:3: no such file 'nope\.wav'"),
        ("file,label\na.wav,1\nb.wav,seven\n", r"labels\.csv:3: label must be an integer"),
        ("file,label,speaker\na.wav,1,x\n", r"labels\.csv:2: speaker must be an integer"),
        ("", r"labels\.csv:1: empty"),
    ],
)
def test_audio_to_spikes_bad_csv(recordings: Path, tmp_path: Path, text: str, match: str) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        audio_to_spikes(recordings, csv, tmp_path / "x.h5", jobs=1, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.h5").exists()


def test_audio_to_spikes_unsupported_wav(recordings: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "eight_bit.wav", np.zeros(1000), 8000, width=1)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    for name in ("eight_bit.wav", "junk.wav"):
        csv = tmp_path / "labels.csv"
        csv.write_text(f"file,label\n{name},1\n")
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")) as e:
            audio_to_spikes(tmp_path, csv, tmp_path / "x.h5", jobs=1, progress=False)
        assert "16-bit PCM" in str(e.value) and "\n" not in str(e.value)
