import numpy as np
import pytest

from spiketime.data.event_camera import (
    CameraParams,
    EventCamera,
    frames_to_events,
    record_static_image,
    render_trajectory,
)
from spiketime.data.formats import EVENTS_2D

EXACT = dict(threshold_sigma=0.0, refractory_us=0.0, eps=1e-9)  # log I exactly, no mismatch


def _step(dlog: float, shape=(6, 7), **kw) -> np.ndarray:
    """Two uniform frames 1 ms apart whose log intensity differs by ``dlog``."""
    frames = np.stack([np.full(shape, 0.2), np.full(shape, 0.2 * np.exp(dlog))])
    return frames_to_events(frames, [0.0, 1000.0], CameraParams(**kw), rng=0)


def test_brightening_gives_on_events_only_with_interpolated_times():
    ev = _step(1.1, threshold_on=0.2, threshold_off=0.2, **EXACT)
    assert ev.dtype == EVENTS_2D
    assert set(ev["p"].tolist()) == {1}
    assert len(ev) == 5 * 42  # floor(1.1 / 0.2) per pixel
    one = np.sort(ev["t"][(ev["x"] == 3) & (ev["y"] == 2)])
    np.testing.assert_array_equal(one, np.rint(1000 * 0.2 * np.arange(1, 6) / 1.1).astype(np.int64))


def test_darkening_gives_off_events_only():
    ev = _step(-1.1, threshold_on=0.2, threshold_off=0.25, **EXACT)
    assert set(ev["p"].tolist()) == {0}
    assert len(ev) == 4 * 42  # floor(1.1 / 0.25)


def test_count_tracks_log_change_over_threshold_with_mismatch():
    ev = _step(2.0, shape=(40, 40), threshold_on=0.2, threshold_sigma=0.02, refractory_us=0.0, eps=1e-9)
    per_pixel = len(ev) / 1600
    assert abs(per_pixel - 2.0 / 0.2) < 0.6  # floor(2 / C), C ~ N(0.2, 0.02)
    counts = np.bincount(ev["y"] * 40 + ev["x"], minlength=1600)
    assert counts.std() > 0  # the mismatch makes pixels differ


def test_reference_carries_across_frames():
    """A slow ramp over many frames gives the same events as one jump of the same size."""
    levels = 0.2 * np.exp(np.linspace(0.0, 1.1, 23))
    frames = levels[:, None, None] * np.ones((1, 3, 3))
    ev = frames_to_events(frames, np.arange(23) * 1000.0, CameraParams(**EXACT), rng=0)
    assert len(ev) == 5 * 9 and set(ev["p"].tolist()) == {1}
    t = np.sort(ev["t"][(ev["x"] == 0) & (ev["y"] == 0)])
    np.testing.assert_allclose(t, 22000 * 0.2 * np.arange(1, 6) / 1.1, atol=1)


def test_refractory_period_spaces_events_of_a_pixel():
    ev = _step(3.0, threshold_on=0.1, threshold_sigma=0.0, refractory_us=150.0, eps=1e-9)
    # crossings every 1000 * 0.1 / 3 = 33.3 us -> every 5th kept (>= 150 us apart)
    t = np.sort(ev["t"][(ev["x"] == 0) & (ev["y"] == 0)])
    assert len(t) == 6 and np.diff(t).min() >= 150
    assert len(ev) == 6 * 42


def test_static_scene_gives_only_noise_at_the_set_rate():
    frames = np.full((101, 34, 34), 0.5)
    times = np.arange(101) * 10_000.0  # 1 s
    assert len(frames_to_events(frames, times, CameraParams(noise_rate=0.0), rng=1)) == 0
    ev = frames_to_events(frames, times, CameraParams(noise_rate=5.0, jitter_us=50.0), rng=1)
    expected = 5.0 * 34 * 34 * 1.0
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert abs(ev["p"].mean() - 0.5) < 0.05
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() <= 1_000_000


def test_moving_image_events_sorted_and_in_range():
    img = np.zeros((10, 10))
    img[3:7, 3:7] = 1.0
    times = np.arange(0, 100_001, 1000.0)
    offsets = np.stack([np.linspace(5, 15, len(times)), np.full(len(times), 12.0)], axis=1)
    params = CameraParams(noise_rate=1.0, jitter_us=200.0)
    ev = record_static_image(img, offsets, times, (34, 34), params, rng=3)
    assert len(ev) > 100
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() <= 100_000
    assert ev["x"].min() >= 0 and ev["x"].max() <= 33 and ev["y"].min() >= 0 and ev["y"].max() <= 33
    assert set(np.unique(ev["p"]).tolist()) == {0, 1}
    # a bright square moving right: ON events at its leading (right) edge, OFF at the trailing one
    sig = ev[(ev["y"] >= 16) & (ev["y"] <= 17)]
    assert sig["x"][sig["p"] == 1].mean() > sig["x"][sig["p"] == 0].mean() + 2
    # same seed, same stream
    np.testing.assert_array_equal(ev, record_static_image(img, offsets, times, (34, 34), params, rng=3))


def test_render_trajectory_subpixel_shift():
    img = np.arange(12.0).reshape(3, 4)
    fr = render_trajectory(img, np.array([[2.0, 1.0], [2.5, 1.0]]), (6, 8), background=-1.0)
    np.testing.assert_array_equal(fr[0, 1:4, 2:6], img)
    assert fr[0, 0, 0] == -1.0
    np.testing.assert_allclose(fr[1, 1, 3:6], (img[0, :-1] + img[0, 1:]) / 2)


def test_camera_api_and_validation():
    cam = EventCamera(2, 2, CameraParams(**EXACT), rng=0)
    with pytest.raises(RuntimeError):
        cam.step(np.ones((2, 2)), 1.0)
    cam.reset(np.ones((2, 2)), 0.0)
    ev = cam.step(np.full((2, 2), np.exp(0.5)), 100.0)
    assert len(ev) == 8 and np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() <= 100.0
    with pytest.raises(ValueError):
        cam.step(np.ones((2, 2)), 100.0)  # time must increase
    with pytest.raises(ValueError):
        cam.step(np.ones((3, 2)), 200.0)
    with pytest.raises(ValueError):
        CameraParams(threshold_on=0.0)
    with pytest.raises(ValueError):
        CameraParams(noise_rate=-1.0)
