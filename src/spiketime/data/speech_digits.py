"""Built-in spoken digits, the Spiking Heidelberg Digits' twin, made on this machine.

The digits 0-9 are spoken in English (labels 0-9: ``zero`` .. ``nine``) and German (labels 10-19:
``null`` .. ``neun``) by eSpeak NG (:mod:`spiketime.data.speech`) and turned into 700-channel spike
trains by the cochlea model (:mod:`spiketime.data.cochlea`), written in the SHD file layout
(:func:`spiketime.data.formats.write_shd`; spike times as float32 seconds rather than SHD's float16, to
keep sub-millisecond timing).

A *speaker* is a fixed voice identity: an eSpeak voice variant (``m3``, ``f2``, ``klatt4``, ``Annie`` ...),
an English accent (``en-us``, ``en`` (British), ``en-gb-scotland``, ``en-029`` ...; German is always
``de``), a base pitch ``p_s``, pitch range ``g_s`` and speaking rate ``w_s``. Each speaker says each of the
20 words ``reps`` times; repetition ``r`` of word ``l`` draws, from ``rng(seed, speaker, l, r)``:

* prosody: rate ``w = w_s · U(0.85, 1.2)`` words/min, pitch ``p_s + U(-10, 10)``, range
  ``g_s + U(-15, 15)``, and an intonation given by the final punctuation (``.``, ``!``, ``?``, ``,`` or none);
* level: the active-speech RMS (over the 10 ms frames within 40 dB of the loudest) is set to
  ``L = -20 dBFS + U(-6, 6) dB``;
* timing: ``U(20, 100)`` ms of silence before and after the (trimmed) word;
* noise: white noise at ``SNR ~ U(25, 45)`` dB below the speech RMS.

Speakers are split between the files: ``round(0.2 · n_speakers)`` (at least 1) speakers, drawn at
random, form ``test.h5``, the others ``train.h5`` - no speaker is in both. ``extra/speaker`` holds the
speaker id, ``extra/keys`` the 20 class names.

Sizes (``size=``): ``"tiny"`` 2 speakers x 1 repetition (40 samples), ``"small"`` 20 x 1 (400),
``"default"`` 50 x 10 (10,000: 8,000 train / 2,000 test), ``"large"`` 100 x 10 (20,000); an integer ``N``
asks for about ``N`` samples (``reps = clip(N // 400, 1, 10)``, ``n_speakers = max(2, round(N / (20 reps)))``).

Generation is deterministic for a given seed and size whatever ``jobs`` is: each speaker is rendered
with a private eSpeak NG engine that starts from a clean state (eSpeak NG carries hidden state from
one utterance to the next), and every random draw comes from a generator seeded by
``(seed, speaker, label, repetition)``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spiketime.data.formats import write_shd
from spiketime.errors import InputError
from spiketime.files import write_json

GENERATOR_VERSION = 1  # bump whenever the same parameters would give different data (invalidates caches)
INSTALL_HINT = 'install the optional data dependencies: pip install "spiketime[data]"'

ENGLISH = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GERMAN = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
KEYS: tuple[str, ...] = ENGLISH + GERMAN  # label l -> class name

# eSpeak NG variants that sound like (synthetic) adults; novelty voices (robots, whispers, echoes) and the
# child-like "zac" (F0 240-390 Hz) are left out
VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt5 klatt6 Alex Alicia Andrea Andy "
    "Annie Denis Diogo Gene Gene2 Henrique Hugo Jacky Lee Marco Mario Michael Mike Nguyen Reed adam anika "
    "antonio aunty belinda benjamin boris david ed edward edward2 grandma grandpa gustave ian iven iven2 iven3 "
    "iven4 john linda marcelo max michel miguel mike2 norbert pablo paul pedro quincy rob robert sandro shelby "
    "steph steph2 steph3 travis victor"
).split()
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
GERMAN_VOICE = "de"
PUNCTUATION = (".", "!", "?", ",", "")

LEVEL_DBFS = -20.0  # active-speech RMS the encoder is fed (before the gain augmentation)
PAD_S = (0.02, 0.10)  # silence before / after the word, s
TEST_FRACTION = 0.2
SIZES = {"tiny": (2, 1), "small": (20, 1), "default": (50, 10), "large": (100, 10)}


@dataclass(frozen=True)
class Speaker:
    """A fixed voice identity (see the module docstring)."""

    id: int
    variant: str
    accent: str
    pitch: int
    range: int
    rate: int


def _require_deps() -> None:
    for mod, what in (
        ("espeakng_loader", "speech synthesis needs espeakng-loader"),
        ("scipy", "the cochlea encoder needs scipy"),
    ):
        try:
            __import__(mod)
        except ImportError as e:
            raise InputError(f"{what}; {INSTALL_HINT}") from e


def resolve_size(size: str | int) -> tuple[int, int]:
    """``(n_speakers, reps)`` for a preset name or an approximate sample count."""
    if isinstance(size, str) and not size.isdigit():
        if size not in SIZES:
            raise InputError(f"unknown speech-digits size {size!r}; use one of {', '.join(SIZES)} or a sample count")
        return SIZES[size]
    n = int(size)
    if n < 1:
        raise InputError(f"speech-digits size must be positive, got {size}")
    reps = int(np.clip(n // 400, 1, 10))
    return max(2, int(round(n / (20 * reps)))), reps


def make_speakers(n: int, seed: int = 0) -> list[Speaker]:
    """``n`` speakers: variants drawn without replacement (cycled beyond the pool), random accent and
    base prosody ``p_s ~ U(25, 75)``, ``g_s ~ U(25, 85)``, ``w_s ~ U(100, 150)`` words/min."""
    rng = np.random.default_rng([seed, 1_000_003])
    pool = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
    out = []
    for i in range(n):
        out.append(
            Speaker(
                id=i,
                variant=pool[i % len(pool)],
                accent=ACCENTS[int(rng.integers(len(ACCENTS)))],
                pitch=int(rng.integers(25, 76)),
                range=int(rng.integers(25, 86)),
                rate=int(rng.integers(100, 151)),
            )
        )
    return out


def split_speakers(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Speaker ids of (train, test): ``max(1, round(0.2 n))`` random speakers are held out."""
    if n < 2:
        raise InputError("speech digits need at least 2 speakers (one per split)")
    rng = np.random.default_rng([seed, 2_000_003])
    perm = rng.permutation(n)
    k = max(1, int(round(TEST_FRACTION * n)))
    return sorted(int(i) for i in perm[k:]), sorted(int(i) for i in perm[:k])


def active_rms(x: np.ndarray, fs: float, db: float = 40.0) -> float:
    """RMS over the 10 ms frames whose energy is within ``db`` dB of the loudest frame."""
    hop = max(1, int(round(0.01 * fs)))
    n = len(x) // hop
    if n == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    e = np.square(x[: n * hop].astype(np.float64)).reshape(n, hop).mean(1)
    if e.max() <= 0:
        return 0.0
    return float(np.sqrt(e[e > e.max() * 10 ** (-db / 10)].mean()))


def utterance(speaker: Speaker, label: int, rng: np.random.Generator, engine: Any = None) -> tuple[np.ndarray, int]:
    """The augmented audio (float32) of ``speaker`` saying class ``label``, and its sample rate.
    ``engine``: a :class:`spiketime.data.speech.Engine` (default: the shared one)."""
    from spiketime.data.speech import Voice, shared_engine, synthesize

    lang = speaker.accent if label < 10 else GERMAN_VOICE
    voice = Voice(
        language=lang,
        variant=speaker.variant,
        rate=int(np.clip(speaker.rate * rng.uniform(0.85, 1.2), 80, 450)),
        pitch=int(np.clip(speaker.pitch + rng.uniform(-10, 10), 0, 100)),
        range=int(np.clip(speaker.range + rng.uniform(-15, 15), 0, 100)),
    )
    text = KEYS[label] + PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
    engine = engine or shared_engine()
    fs = engine.sample_rate
    x = synthesize(text, voice, seed=int(rng.integers(1, 2**31 - 1)), trim_db=40.0, engine=engine).astype(np.float64)
    rms = active_rms(x, fs)
    if rms <= 0:
        raise RuntimeError(f"eSpeak NG produced silence for {text!r} with {voice.name}")
    x *= 10 ** ((LEVEL_DBFS + rng.uniform(-6, 6)) / 20) / rms
    pre, post = (int(rng.uniform(*PAD_S) * fs) for _ in range(2))
    x = np.concatenate([np.zeros(pre), x, np.zeros(post)])
    x += rng.standard_normal(len(x)) * (10 ** (LEVEL_DBFS / 20) * 10 ** (-rng.uniform(25, 45) / 20))
    return x.astype(np.float32), fs


Sample = tuple[int, int, int, np.ndarray, np.ndarray, float]  # speaker, label, rep, times, units, duration


def _speaker_job(job: tuple[int, Speaker, int] | tuple[int, Speaker, int, int]) -> list[Sample]:
    """Worker: ``(seed, speaker, reps[, n_labels])`` -> all ``reps`` repetitions of the 20 words (or of
    the first ``n_labels``) by one speaker, encoded to spikes."""
    from spiketime.data.cochlea import Cochlea
    from spiketime.data.speech import Engine, shared_engine

    seed, speaker, reps = job[:3]
    n_labels = job[3] if len(job) > 3 else len(KEYS)  # type: ignore[misc]
    cochlea = Cochlea()
    out: list[Sample] = []
    try:
        private = Engine(private=True)
    except InputError:  # e.g. a temporary directory that forbids loading code: not bit-reproducible then
        private = None
    with private or contextlib.nullcontext():
        engine = private or shared_engine()
        for label in range(n_labels):
            for r in range(reps):
                rng = np.random.default_rng([seed, speaker.id, label, r])
                x, fs = utterance(speaker, label, rng, engine)
                t, u = cochlea.encode(x, fs, seed=rng)
                out.append((speaker.id, label, r, t.astype(np.float32), u.astype(np.uint16), len(x) / fs))
    return out


def _run(fn: Any, tasks: list[Any], weights: list[int], jobs: int, progress: bool, desc: str) -> list[Any]:
    """Run ``fn`` over ``tasks`` in ``jobs`` worker processes (in this process when ``jobs`` is 1) with a
    tqdm bar on stderr, advanced by each task's weight."""
    from spiketime.progress import progress_bar

    results: list[Any] = [None] * len(tasks)
    bar = progress_bar(progress, desc, sum(weights), "sample")
    if jobs == 1 or len(tasks) == 1:  # in this process
        with bar:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                bar.update(weights[i])
        return results
    ex = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)))
    try:
        futures = {ex.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            bar.update(weights[i])
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    ex.shutdown()
    return results


def _params(seed: int, n_speakers: int, reps: int) -> dict[str, Any]:
    from spiketime.data.cochlea import CochleaConfig

    return {
        "generator": "spiketime.speech_digits",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_speakers": n_speakers,
        "reps": reps,
        "cochlea": asdict(CochleaConfig()),
    }


def _stats(samples: list[Sample]) -> dict[str, float]:
    n = np.array([len(s[3]) for s in samples], dtype=np.float64)
    d = np.array([s[5] for s in samples], dtype=np.float64)
    if not len(n):
        return {}
    return {
        "spikes_mean": float(n.mean()),
        "spikes_median": float(np.median(n)),
        "spikes_min": int(n.min()),
        "spikes_max": int(n.max()),
        "duration_mean_s": float(d.mean()),
        "duration_min_s": float(d.min()),
        "duration_max_s": float(d.max()),
    }


def make_speech_digits(
    out_dir: Path, *, seed: int = 0, jobs: int | None = None, progress: bool = True, size: str | int = "default"
) -> tuple[Path, Path]:
    """Generate the spoken digits into ``out_dir/train.h5``, ``out_dir/test.h5`` and ``out_dir/meta.json``.

    Returns the two h5 paths. If both files exist and ``meta.json`` records the same generator version,
    seed, size and encoder settings, nothing is regenerated (cache hit). Files are written under temporary
    names and renamed, and ``meta.json`` last, so an interrupted run never looks complete. ``jobs``
    worker processes (default: ``os.cpu_count()``) render one speaker each; a tqdm bar goes to stderr.
    """
    out_dir = Path(out_dir)
    n_speakers, reps = resolve_size(size)
    params = _params(seed, n_speakers, reps)
    train_p, test_p, meta_p = out_dir / "train.h5", out_dir / "test.h5", out_dir / "meta.json"
    if train_p.is_file() and test_p.is_file() and meta_p.is_file():
        try:
            meta = json.loads(meta_p.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("params") == params:
            return train_p, test_p
    _require_deps()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    speakers = make_speakers(n_speakers, seed)
    train_ids, test_ids = split_speakers(n_speakers, seed)
    tasks = [(seed, s, reps) for s in speakers]
    results = _run(
        _speaker_job, tasks, [len(KEYS) * reps] * len(tasks), jobs or os.cpu_count() or 1, progress, "speech digits"
    )
    by_speaker = {res[0][0]: res for res in results}
    counts = {}
    stats = {}
    for name, ids, path in (("train", train_ids, train_p), ("test", test_ids, test_p)):
        samples = [s for i in ids for s in by_speaker[i]]
        write_shd(
            path,
            [s[3] for s in samples],
            [s[4] for s in samples],
            [s[1] for s in samples],
            speakers=[s[0] for s in samples],
            keys=KEYS,
            time_dtype=np.float32,
        )
        counts[name] = len(samples)
        stats[name] = _stats(samples)
    meta = {
        "params": params,
        "speakers": {"train": train_ids, "test": test_ids},
        "speaker_voices": [asdict(s) for s in speakers],
        "counts": counts,
        "spike_stats": stats,
        "keys": list(KEYS),
        "seconds": round(time.perf_counter() - t0, 2),
        "jobs": jobs or os.cpu_count(),
    }
    write_json(meta_p, meta)
    return train_p, test_p


# ---------------------------------------------------------------------------------------------------------
# a user's own recordings


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV (mono, or stereo averaged to mono) as float32 in [-1, 1] and its sample rate."""
    check_wav(path)
    with wave.open(str(path), "rb") as w:
        ch, fs = w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch == 2:
        x = x[: len(x) // 2 * 2].reshape(-1, 2).mean(1)
    return x, fs


def read_labels_csv(labels_csv: Path, wav_dir: Path) -> list[tuple[Path, int, int | None]]:
    """Rows ``(wav path, label, speaker or None)`` of a CSV with header ``file,label[,speaker]``."""
    rows: list[tuple[Path, int, int | None]] = []
    try:
        f = open(labels_csv, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{labels_csv}: cannot read ({e.strerror})") from e
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{labels_csv}:1: empty file; expected a header file,label[,speaker]")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("file", "label") if c not in cols]
        if missing:
            raise InputError(
                f"{labels_csv}:1: missing column(s) {', '.join(missing)}; expected a header file,label[,speaker]"
            )
        i_file, i_label = cols.index("file"), cols.index("label")
        i_spk = cols.index("speaker") if "speaker" in cols else None
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(cols):
                raise InputError(f"{labels_csv}:{line}: expected {len(cols)} fields, got {len(row)}")
            name = row[i_file].strip()
            path = wav_dir / name
            if not name or not path.is_file():
                raise InputError(f"{labels_csv}:{line}: no such file {name!r} in {wav_dir}")
            label = _uint16(row[i_label], f"{labels_csv}:{line}: label")
            spk = _uint16(row[i_spk], f"{labels_csv}:{line}: speaker") if i_spk is not None else None
            rows.append((path, label, spk))
    if not rows:
        raise InputError(f"{labels_csv}: no rows after the header")
    return rows


def unlisted_wavs(wav_dir: Path, rows: list[tuple[Path, int, int | None]]) -> list[Path]:
    """The ``.wav`` files under ``wav_dir`` (any depth) that no row of the labels names: they are not encoded."""
    listed = {p.resolve() for p, _, _ in rows}
    return sorted(p for p in Path(wav_dir).rglob("*") if p.suffix.lower() == ".wav" and p.resolve() not in listed)


def _uint16(text: str, what: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise InputError(f"{what} must be an integer, got {text.strip()!r}") from None
    if not 0 <= v < 65536:
        raise InputError(f"{what} must lie in 0..65535, got {v}")
    return v


def check_wav(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a 16-bit PCM WAV with 1 or 2 channels."""
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, comp = w.getnchannels(), w.getsampwidth(), w.getcomptype()
    except (wave.Error, EOFError, OSError) as e:
        raise InputError(f"{path}: unsupported or broken WAV ({e}); need 16-bit PCM, mono or stereo") from e
    if comp != "NONE" or width != 2 or ch not in (1, 2):
        raise InputError(
            f"{path}: unsupported WAV ({ch} channels, {8 * width}-bit, {comp}); need 16-bit PCM, mono or stereo"
        )


def encode_recording(
    x: np.ndarray, fs: float, *, seed: int | np.random.Generator = 0, trim_db: float | None = 40.0, cochlea: Any = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """One recording through the generator's pipeline: trim to the active span (frames within ``trim_db``
    dB of the loudest) with 50 ms margins, set the active-speech RMS to -20 dBFS, encode.
    Returns ``(times, units, duration)``."""
    from spiketime.data.cochlea import Cochlea
    from spiketime.data.speech import trim_silence

    x = np.asarray(x, dtype=np.float32)
    if trim_db is not None and len(x):
        y = trim_silence(x, fs, trim_db)
        margin = np.zeros(int(0.05 * fs), np.float32)
        x = np.concatenate([margin, y, margin]) if len(y) else y
    rms = active_rms(x, fs)
    if rms > 0:
        x = x * np.float32(10 ** (LEVEL_DBFS / 20) / rms)
    if len(x) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.uint16), 0.0
    t, u = (cochlea or Cochlea()).encode(x, fs, seed=seed)
    return t.astype(np.float32), u.astype(np.uint16), len(x) / fs


def _recordings_job(job: tuple[list[tuple[int, str]], int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    from spiketime.data.cochlea import Cochlea

    items, seed = job
    cochlea = Cochlea()
    out = []
    for i, path in items:
        x, fs = read_wav(Path(path))
        t, u, _ = encode_recording(x, fs, seed=np.random.default_rng([seed, i]), cochlea=cochlea)
        out.append((i, t, u))
    return out


def audio_to_spikes(
    wav_dir: Path,
    labels_csv: Path,
    out: Path,
    *,
    jobs: int | None = None,
    progress: bool = True,
    seed: int = 0,
    keys: list[str] | None = None,
) -> Path:
    """Encode a user's own recordings into one SHD-format file ``out``.

    ``labels_csv`` has a header ``file,label`` and optionally ``speaker``; ``file`` is relative to
    ``wav_dir`` (16-bit PCM WAV, mono or stereo, any sample rate). Each recording goes through the same
    pipeline as the built-in digits (:func:`encode_recording`: trimmed, levelled to -20 dBFS, encoded).
    ``extra/keys``: ``keys`` if given, else the built-in digits' 20 class names when all labels are
    below 20, else the labels as text. ``extra/speaker`` is written when the CSV has a speaker column.
    """
    wav_dir, labels_csv, out = Path(wav_dir), Path(labels_csv), Path(out)
    if out.is_dir():  # before any of the encoding work
        raise InputError(f"{out}: is a directory, expected the name of the .h5 file to write")
    rows = read_labels_csv(labels_csv, wav_dir)
    _require_deps()
    for path, _, _ in rows:  # fail fast, in the parent, on unsupported files
        check_wav(path)
    jobs = max(1, jobs or os.cpu_count() or 1)
    n_chunks = min(len(rows), jobs * 4)
    chunks = [list(range(len(rows)))[k::n_chunks] for k in range(n_chunks)]
    tasks = [([(i, str(rows[i][0])) for i in c], seed) for c in chunks]
    results = _run(_recordings_job, tasks, [len(c) for c in chunks], jobs, progress, "encoding")
    times: list[np.ndarray] = [np.zeros(0)] * len(rows)
    units: list[np.ndarray] = [np.zeros(0)] * len(rows)
    for res in results:
        for i, t, u in res:
            times[i], units[i] = t, u
    labels = [r[1] for r in rows]
    speakers = [r[2] for r in rows]
    if keys is None:
        keys = list(KEYS) if max(labels) < len(KEYS) else [str(i) for i in range(max(labels) + 1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_shd(
        out,
        times,
        units,
        labels,
        speakers=speakers if all(s is not None for s in speakers) else None,
        keys=keys,
        time_dtype=np.float32,
    )
    return out
