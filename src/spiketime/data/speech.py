"""Text-to-speech with eSpeak NG, called through its C API with :mod:`ctypes`.

The shared library and its voice data come from the PyPI package ``espeakng-loader`` (no system
install, no network, no subprocess). The engine runs in ``AUDIO_OUTPUT_SYNCHRONOUS`` (retrieval) mode:
``espeak_Synth`` returns only when the whole text is synthesised, handing the 16-bit samples to a
callback that collects them. eSpeak NG keeps one global engine per process, so this module keeps one
:class:`Engine` per process (:func:`shared_engine`, created on first use; a forked worker inherits a
working copy, a spawned one makes its own) and serialises calls to it with a lock;
``Engine(private=True)`` gives a separate engine with a clean state (for reproducible generation).

A voice is ``language`` (an eSpeak voice name such as ``"en-us"``, ``"en-gb-scotland"``, ``"de"``) plus
an optional ``variant`` (``"m3"``, ``"f2"``, ``"klatt4"`` ..., the files in ``espeak-ng-data/voices/!v``),
i.e. the name ``"<language>+<variant>"`` given to ``espeak_SetVoiceByName``, and the prosody
parameters set with ``espeak_SetParameter``: ``rate`` (words per minute, 80..450, default 175),
``pitch`` (base pitch, 0..100, default 50), ``range`` (pitch range, 0..100, default 50; 0 is a
monotone) and ``volume`` (0..200, default 100).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from spiketime.errors import InputError

INSTALL_HINT = 'install the optional data dependencies: pip install "spiketime[data]"'

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice: language voice, optional variant and prosody (see the module docstring)."""

    language: str = "en-us"
    variant: str | None = None
    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100

    @property
    def name(self) -> str:
        """The name passed to ``espeak_SetVoiceByName``."""
        return self.language if not self.variant else f"{self.language}+{self.variant}"


class Engine:
    """An eSpeak NG engine: library handle, sample rate and the sample collector.

    eSpeak NG keeps its state in the library's globals, and some of it (pitch flutter, waveform phase)
    carries over from one utterance to the next, so the exact waveform depends on everything the
    engine said before. The shared per-process engine (:func:`shared_engine`) is fine for casual use;
    ``Engine(private=True)`` loads a private copy of the library (a temporary file, its own globals) that
    starts from a clean state, so a fixed sequence of calls gives the same audio in any process. Close it
    (or use it as a context manager) to unload the copy.
    """

    def __init__(self, private: bool = False) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise InputError(f"speech synthesis needs the package espeakng-loader; {INSTALL_HINT}") from e
        self._tmpdir: str | None = None
        try:
            path = espeakng_loader.get_library_path()
            data = espeakng_loader.get_data_path()
            if private:
                self._tmpdir = tempfile.mkdtemp(prefix="spiketime-espeak-")
                copy = os.path.join(self._tmpdir, "libespeak-ng.so")
                shutil.copyfile(path, copy)
                path = copy
            lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL if hasattr(os, "RTLD_LOCAL") else 0)
        except (OSError, RuntimeError) as e:
            self._cleanup_tmp()
            raise InputError(f"cannot load eSpeak NG from espeakng-loader ({e}); {INSTALL_HINT}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate <= 0:
            self._cleanup_tmp()
            raise InputError(f"eSpeak NG failed to initialise with data at {data}; {INSTALL_HINT}")
        self.lib: Any = lib
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: the C side holds only a pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _cleanup_tmp(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def close(self) -> None:
        """Terminate a private engine and unload its library copy (the shared engine stays loaded)."""
        if self._tmpdir is None or self.lib is None:
            return
        with self.lock:
            self.lib.espeak_Terminate()
            handle = self.lib._handle
            self.lib = None
            try:
                import _ctypes

                _ctypes.dlclose(handle)  # type: ignore[attr-defined]
            except (ImportError, AttributeError, OSError):
                pass
            self._cleanup_tmp()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: go on synthesising

    def synth(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """Raw int16 samples of ``text`` spoken with ``voice``."""
        lib = self.lib
        if lib is None:
            raise RuntimeError("this eSpeak NG engine is closed")
        with self.lock:
            if voice.name != self._voice:
                if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                    raise InputError(f"eSpeak NG has no voice {voice.name!r}")
                self._voice = voice.name
            for param, value, lo, hi in (
                (_ESPEAK_RATE, voice.rate, 80, 450),
                (_ESPEAK_PITCH, voice.pitch, 0, 100),
                (_ESPEAK_RANGE, voice.range, 0, 100),
                (_ESPEAK_VOLUME, voice.volume, 0, 200),
            ):
                lib.espeak_SetParameter(param, int(np.clip(value, lo, hi)), 0)
            lib.espeak_ng_SetRandSeed(int(seed))
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            self._chunks = []
            err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed (code {err}) for {text!r} with voice {voice.name}")
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


_ENGINE: Engine | None = None  # the per-process shared eSpeak NG handle (the only module-level state)


def shared_engine() -> Engine:
    """The shared per-process engine, initialised on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine()
    return _ENGINE


def sample_rate() -> int:
    """eSpeak NG's output sample rate in Hz (22050)."""
    return (_ENGINE or shared_engine()).sample_rate


def synthesize(
    text: str,
    voice: Voice | str = "en-us",
    *,
    seed: int = 0,
    trim_db: float | None = 40.0,
    engine: Engine | None = None,
) -> np.ndarray:
    """Speak ``text`` with ``voice``; returns float32 mono samples in [-1, 1] at :func:`sample_rate`.

    ``seed`` fixes eSpeak's internal random numbers; ``engine`` picks an engine (default: the shared
    one). With ``trim_db`` set, leading and trailing stretches quieter than ``trim_db`` dB below the
    loudest 10 ms frame are cut off (frame energy ``E_k = sum x^2`` over 10 ms; kept span: first to last
    frame with ``10 log10(E_k / max E) > -trim_db``).
    """
    if isinstance(voice, str):
        voice = Voice(language=voice)
    eng = engine or shared_engine()
    x = eng.synth(text, voice, seed).astype(np.float32) / 32768.0
    return trim_silence(x, eng.sample_rate, trim_db) if trim_db is not None else x


def trim_silence(x: np.ndarray, fs: float, db: float = 40.0, frame_s: float = 0.01) -> np.ndarray:
    """Cut leading/trailing frames more than ``db`` dB below the loudest ``frame_s`` frame."""
    hop = max(1, int(round(frame_s * fs)))
    n = len(x) // hop
    if n == 0:
        return x
    e = (x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).sum(1)
    if e.max() <= 0:
        return x[:0]
    keep = np.flatnonzero(e > e.max() * 10 ** (-db / 10))
    return x[keep[0] * hop : min(len(x), (keep[-1] + 1) * hop)]
