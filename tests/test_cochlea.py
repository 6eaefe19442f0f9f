"""The cochlea encoder: tonotopy on the ERB scale, silence, level dependence, phase locking, format."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from spiketime.app.config import ConfigError  # noqa: E402
from spiketime.data.cochlea import (  # noqa: E402
    Cochlea,
    CochleaConfig,
    channel_of,
    erb_rate,
    erb_rate_inv,
    erb_space,
    spikes_from_rates,
)


@pytest.fixture(scope="module")
def cochlea() -> Cochlea:
    return Cochlea()


def tone(f: float, db: float, fs: float = 22050.0, dur: float = 0.2) -> np.ndarray:
    """A sine of RMS ``db`` dBFS with 5 ms raised-cosine ramps."""
    t = np.arange(int(dur * fs)) / fs
    x = np.sqrt(2) * 10 ** (db / 20) * np.sin(2 * np.pi * f * t)
    ramp = int(0.005 * fs)
    env = np.ones_like(x)
    env[:ramp] = env[-ramp:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    return (x * env).astype(np.float32)


def peak_channel(units: np.ndarray, n: int = 700) -> int:
    counts = np.bincount(units, minlength=n).astype(float)
    return int(np.argmax(np.convolve(counts, np.ones(9) / 9, mode="same")))


def test_erb_scale_roundtrip_and_spacing() -> None:
    f = np.array([50.0, 440.0, 1000.0, 8000.0])
    assert np.allclose(erb_rate_inv(erb_rate(f)), f)
    cf = erb_space(50, 8000, 700)
    assert cf[0] == pytest.approx(50) and cf[-1] == pytest.approx(8000)
    assert np.allclose(np.diff(erb_rate(cf)), np.diff(erb_rate(cf))[0])  # equal steps in ERB-rate
    assert channel_of(1000.0) == pytest.approx(np.interp(1000.0, cf, np.arange(700)), abs=0.5)


@pytest.mark.parametrize("f", [150.0, 500.0, 1000.0, 2000.0, 4000.0, 7000.0])
def test_tone_excites_channels_at_its_frequency(cochlea: Cochlea, f: float) -> None:
    t, u = cochlea.encode(tone(f, -35.0), 22050, seed=1)
    assert len(t) > 50
    # within ~0.6 ERB (15 channels at 22 channels per ERB) of the place of f on the ERB scale
    assert abs(peak_channel(u) - channel_of(f)) <= 15
    # and most spikes lie within 2 ERB of it (tonotopy, not a broadband response)
    assert np.mean(np.abs(u - channel_of(f)) < 45) > 0.6


@pytest.mark.parametrize("fs", [16000, 44100])
def test_any_sample_rate_maps_to_the_same_place(cochlea: Cochlea, fs: int) -> None:
    _, u_ref = cochlea.encode(tone(1500.0, -35.0), 22050, seed=0)
    t, u = cochlea.encode(tone(1500.0, -35.0, fs=fs), fs, seed=0)
    assert abs(peak_channel(u) - peak_channel(u_ref)) <= 6
    assert len(u) == pytest.approx(len(u_ref), rel=0.15)
    assert t.max() <= 0.2


def test_silence_and_faint_noise_give_almost_no_spikes(cochlea: Cochlea) -> None:
    assert len(cochlea.encode(np.zeros(11025, np.float32), 22050)[0]) == 0
    noise = (np.random.default_rng(0).standard_normal(11025) * 10 ** (-80 / 20)).astype(np.float32)
    assert len(cochlea.encode(noise, 22050)[0]) < 20


def test_louder_gives_more_spikes(cochlea: Cochlea) -> None:
    counts = [len(cochlea.encode(tone(800.0, db), 22050, seed=3)[0]) for db in (-50, -35, -20)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] > 2 * counts[0]


def test_low_channels_phase_lock_high_ones_do_not(cochlea: Cochlea) -> None:
    def vector_strength(f: float) -> float:
        t, u = cochlea.encode(tone(f, -30.0, dur=0.3), 22050, seed=2)
        near = np.abs(u - channel_of(f)) <= 5
        return float(np.abs(np.exp(2j * np.pi * f * t[near]).mean()))

    assert vector_strength(200.0) > 0.5
    assert vector_strength(5000.0) < 0.25


def test_output_format(cochlea: Cochlea) -> None:
    x = tone(600.0, -25.0, dur=0.3)
    t, u = cochlea.encode(x, 22050, seed=0)
    assert t.dtype == np.float64 and u.dtype == np.int64
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() <= len(x) / 22050
    assert u.min() >= 0 and u.max() < 700
    for c in np.unique(u):  # refractory period within every channel
        assert np.all(np.diff(t[u == c]) >= cochlea.config.refractory - 1e-9)
    t2, u2 = cochlea.encode(x, 22050, seed=0)
    assert np.array_equal(t, t2) and np.array_equal(u, u2)  # seeded
    t3, _ = cochlea.encode(x, 22050, seed=1)
    assert not np.array_equal(t, t3)


def test_multirate_matches_full_rate_filterbank(cochlea: Cochlea) -> None:
    """The reduced-rate and envelope paths agree with rectifying every channel at the full rate."""
    reference = Cochlea()
    reference.groups = [(0, 700, 1)]
    x = (np.random.default_rng(0).standard_normal(8000) * 0.05).astype(np.float32)
    a, b = cochlea.hair_cell(x, 22050), reference.hair_cell(x, 22050)
    assert {d for _, _, d in cochlea.groups} == {0, 1, 2, 4}
    for lo, hi, _ in cochlea.groups:
        err = np.abs(a[lo:hi] - b[lo:hi]).mean() / np.abs(b[lo:hi]).mean()
        assert err < 0.06


def test_spikes_from_rates_counts_follow_the_integral() -> None:
    rng = np.random.default_rng(0)
    lam = np.zeros((3, 8000), np.float32)
    lam[1] = 100.0  # 100 spikes/s for 1 s at dt = 1/8000
    lam[2, 4000:] = 50.0
    t, u = spikes_from_rates(lam, 1 / 8000, rng, shape=3.0, refractory=1e-3)
    n = np.bincount(u, minlength=3)
    assert n[0] == 0
    assert 85 <= n[1] <= 115 and 14 <= n[2] <= 36  # expected 100 and 25
    assert t[u == 2].min() >= 0.5


def test_bad_input_is_a_config_error(cochlea: Cochlea) -> None:
    with pytest.raises(ConfigError):
        cochlea.encode(np.zeros((2, 100), np.float32), 22050)
    with pytest.raises(ConfigError):
        cochlea.encode(np.zeros(100, np.float32), 0)
    with pytest.raises(ConfigError):
        Cochlea(CochleaConfig(f_max=12000.0))
