"""Contract tests for learnable continuous delays (``spiketime.functional.delay``).

Gradient checks run in float64.  Interp delays are drawn away from integer steps
(``k + U(0.1, 0.9)``) so that finite differences never straddle the kink at integer ``d``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from spiketime.functional.delay import (
    DelayState,
    axonal_delay,
    delay_kernel,
    delay_taps,
    init_delay_state,
    synaptic_delay_linear,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_shift(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Reference integer shift along time: ``y[t, :, i] = x[t - steps[i], :, i]`` (zeros before 0)."""
    t_len = x.shape[0]
    y = torch.zeros_like(x)
    for i, k in enumerate(steps.tolist()):
        k = int(k)
        if k < t_len:
            y[k:, :, i] = x[: t_len - k, :, i]
    return y


def fractional_delays(shape, max_step: int, dt: float, seed: int) -> torch.Tensor:
    """Delays in ms at ``(k + U(0.1, 0.9)) * dt`` with integer ``k`` in ``[0, max_step)``."""
    g = gen(seed)
    k = torch.randint(0, max_step, shape, generator=g).to(F64)
    u = 0.1 + 0.8 * torch.rand(shape, generator=g, dtype=F64)
    return (k + u) * dt


def binary_spikes(t_len: int, b: int, n: int, p: float, seed: int, dtype=F64) -> torch.Tensor:
    return (torch.rand(t_len, b, n, generator=gen(seed)) < p).to(dtype)


# --------------------------------------------------------------------------- sizing / kernel


def test_delay_taps_values():
    assert delay_taps(5.0, 1.0, "interp") == 7
    assert delay_taps(0.3, 0.1, "interp") == 5  # 0.3/0.1 = 2.9999999999999996 counts as 3
    assert delay_taps(10.0, 1.0, "gaussian", sigma=2.0) == 10 + 1 + 6
    assert delay_taps(10.0, 0.5, "gaussian", sigma=1.0) == 20 + 1 + 6
    assert delay_taps(0.0, 1.0, "gaussian", sigma=0.5) == 1 + 2


def test_kernel_interp_values_and_rows_sum_to_one():
    dt, taps = 0.5, 6
    d_ms = torch.tensor([0.0, 0.25, 1.0, 1.4, 2.5], dtype=F64)
    w = delay_kernel(d_ms, dt, taps, "interp")
    assert w.shape == (5, taps)
    expected = torch.zeros(5, taps, dtype=F64)
    expected[0, 0] = 1.0
    expected[1, 0], expected[1, 1] = 0.5, 0.5
    expected[2, 2] = 1.0
    expected[3, 2], expected[3, 3] = 0.2, 0.8  # d = 2.8 steps
    expected[4, 5] = 1.0  # d = 5 = taps-1: the last bin (n clamped to taps-2, f = 1)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-12)


def test_kernel_gaussian_hard_smooth_values():
    dt, sigma, taps = 1.0, 1.5, 24
    d_ms = torch.tensor([0.0, 2.49, 2.5, 3.7, 11.0], dtype=F64, requires_grad=True)
    w = delay_kernel(d_ms, dt, taps, "gaussian", sigma)
    hard = torch.zeros(5, taps, dtype=F64)
    for row, r in enumerate([0, 2, 3, 4, 11]):  # round half up
        hard[row, r] = 1.0
    assert torch.equal(w.detach(), hard)
    g = delay_kernel(d_ms, dt, taps, "gaussian", sigma, smooth=True)
    k = torch.arange(taps, dtype=F64)
    s = sigma / dt
    ref = torch.exp(-((k - d_ms.detach()[:, None]) ** 2) / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)
    torch.testing.assert_close(g.detach(), ref, rtol=1e-13, atol=0)
    # away from the window edges (d = 11 is > 7 s from both) the discrete Gaussian has
    # unit mass and mean d; near d = 0 part of it is cut off by causality
    assert abs(g[4].sum().item() - 1.0) < 1e-12
    assert abs((g[4] * k).sum().item() - 11.0) < 1e-12
    assert 0.5 < g[0].sum().item() < 0.7  # one-sided: about half the mass plus half the k=0 bin


def test_clamping_outside_window():
    dt, taps = 1.0, 5
    d = torch.tensor([-2.0, 9.0, 0.0, 4.0], dtype=F64, requires_grad=True)
    w = delay_kernel(d, dt, taps, "interp")
    assert torch.equal(w[0].detach(), torch.tensor([1.0, 0, 0, 0, 0], dtype=F64))
    assert torch.equal(w[1].detach(), torch.tensor([0, 0, 0, 0, 1.0], dtype=F64))
    (w * torch.arange(taps, dtype=F64)).sum().backward()
    # out of range: zero gradient; on the boundary the gradient flows (d mean-shift = 1 per step)
    torch.testing.assert_close(d.grad, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64))


def test_bad_arguments_raise_value_error():
    x = torch.zeros(4, 2, 3)
    d = torch.zeros(3)
    with pytest.raises(ValueError, match="mode"):
        axonal_delay(x, d, 1.0, 4, "linear", 1.0)
    with pytest.raises(ValueError, match="delays"):
        axonal_delay(x, torch.zeros(4), 1.0, 4, "interp")
    with pytest.raises(ValueError, match="x_seq"):
        axonal_delay(torch.zeros(4, 3), d, 1.0, 4, "interp")
    with pytest.raises(ValueError, match="weight"):
        synaptic_delay_linear(x, torch.zeros(5, 4), torch.zeros(5, 4), 1.0, 4, "interp")
    with pytest.raises(ValueError, match="delays"):
        synaptic_delay_linear(x, torch.zeros(5, 3), torch.zeros(3, 5), 1.0, 4, "interp")
    with pytest.raises(ValueError, match="bias"):
        synaptic_delay_linear(x, torch.zeros(5, 3), torch.zeros(5, 3), 1.0, 4, "interp", bias=torch.zeros(3))
    with pytest.raises(ValueError, match="state.buffer"):
        axonal_delay(x, d, 1.0, 4, "interp", state=DelayState(torch.zeros(2, 2, 3)))
    with pytest.raises(ValueError, match="sigma"):
        delay_taps(5.0, 1.0, "gaussian", sigma=0.0)
    with pytest.raises(ValueError, match="taps"):
        delay_kernel(d, 1.0, 1, "interp")
    with pytest.raises(ValueError, match="dt"):
        delay_kernel(d, 0.0, 4, "interp")


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_gradcheck_axonal_interp(dt):
    t_len, b, n, max_step = 10, 2, 3, 4
    taps = max_step + 2
    x = torch.randn(t_len, b, n, generator=gen(0), dtype=F64, requires_grad=True)
    d = fractional_delays((n,), max_step, dt, seed=1).requires_grad_()
    fn = lambda x_, d_: axonal_delay(x_, d_, dt, taps, "interp")[0]  # noqa: E731
    assert gradcheck(fn, (x, d), eps=1e-6, atol=1e-8)
    fn(x, d).pow(2).sum().backward()
    assert d.grad.abs().min() > 1e-6  # the delay gradient is not vacuously zero


def test_gradcheck_synaptic_interp():
    t_len, b, n, m, max_step, dt = 9, 2, 3, 4, 4, 1.0
    taps = max_step + 2
    x = torch.randn(t_len, b, n, generator=gen(2), dtype=F64, requires_grad=True)
    w = torch.randn(m, n, generator=gen(3), dtype=F64, requires_grad=True)
    bias = torch.randn(m, generator=gen(4), dtype=F64, requires_grad=True)
    d = fractional_delays((m, n), max_step, dt, seed=5).requires_grad_()
    fn = lambda x_, w_, d_, b_: synaptic_delay_linear(x_, w_, d_, dt, taps, "interp", bias=b_)[0]  # noqa: E731
    assert gradcheck(fn, (x, w, d, bias), eps=1e-6, atol=1e-8)
    fn(x, w, d, bias).pow(2).sum().backward()
    assert d.grad.abs().min() > 1e-8


def test_gradcheck_gaussian_hard_wrt_input_and_weight():
    t_len, b, n, m, dt, sigma, dmax = 10, 2, 3, 4, 1.0, 1.0, 4.0
    taps = delay_taps(dmax, dt, "gaussian", sigma)
    x = torch.randn(t_len, b, n, generator=gen(6), dtype=F64, requires_grad=True)
    w = torch.randn(m, n, generator=gen(7), dtype=F64, requires_grad=True)
    bias = torch.randn(m, generator=gen(8), dtype=F64, requires_grad=True)
    d_ax = torch.rand(n, generator=gen(9), dtype=F64) * dmax
    d_syn = torch.rand(m, n, generator=gen(10), dtype=F64) * dmax
    fa = lambda x_: axonal_delay(x_, d_ax, dt, taps, "gaussian", sigma)[0]  # noqa: E731
    fs = lambda x_, w_, b_: synaptic_delay_linear(x_, w_, d_syn, dt, taps, "gaussian", sigma, bias=b_)[0]  # noqa: E731
    assert gradcheck(fa, (x,), eps=1e-6, atol=1e-8)
    assert gradcheck(fs, (x, w, bias), eps=1e-6, atol=1e-8)
    # d/dx of the hard op is the exact hard shift: the gradient of sum(y * c) is c shifted back
    c = torch.randn(t_len, b, n, generator=gen(11), dtype=F64)
    (gx,) = torch.autograd.grad((fa(x) * c).sum(), x)
    steps = torch.floor(d_ax / dt + 0.5)
    ref = exact_shift(c.flip(0), steps).flip(0)  # gx[s] = c[s + round(d)]
    torch.testing.assert_close(gx, ref, rtol=0, atol=0)


def test_gradcheck_gaussian_smooth_wrt_delay():
    t_len, b, n, m, dt, sigma, dmax = 10, 2, 3, 2, 0.5, 0.7, 2.0
    taps = delay_taps(dmax, dt, "gaussian", sigma)
    x = torch.randn(t_len, b, n, generator=gen(12), dtype=F64, requires_grad=True)
    w = torch.randn(m, n, generator=gen(13), dtype=F64, requires_grad=True)
    d_ax = (torch.rand(n, generator=gen(14), dtype=F64) * dmax).requires_grad_()
    d_syn = (torch.rand(m, n, generator=gen(15), dtype=F64) * dmax).requires_grad_()
    fa = lambda x_, d_: axonal_delay(x_, d_, dt, taps, "gaussian", sigma, smooth=True)[0]  # noqa: E731
    fs = lambda x_, w_, d_: synaptic_delay_linear(  # noqa: E731
        x_, w_, d_, dt, taps, "gaussian", sigma, smooth=True
    )[0]
    assert gradcheck(fa, (x, d_ax), eps=1e-6, atol=1e-8)
    assert gradcheck(fs, (x, w, d_syn), eps=1e-6, atol=1e-8)


def test_gaussian_hard_delay_grad_equals_smooth_delay_grad():
    t_len, b, n, m, dt, sigma, dmax = 16, 3, 4, 5, 1.0, 1.5, 6.0
    taps = delay_taps(dmax, dt, "gaussian", sigma)
    x = binary_spikes(t_len, b, n, 0.3, seed=16)
    w = torch.randn(m, n, generator=gen(17), dtype=F64)
    d_ax = (torch.rand(n, generator=gen(18), dtype=F64) * dmax).requires_grad_()
    d_syn = (torch.rand(m, n, generator=gen(19), dtype=F64) * dmax).requires_grad_()
    up_ax = torch.randn(t_len, b, n, generator=gen(20), dtype=F64)
    up_syn = torch.randn(t_len, b, m, generator=gen(21), dtype=F64)

    def ax(smooth):
        y = axonal_delay(x, d_ax, dt, taps, "gaussian", sigma, smooth=smooth)[0]
        return torch.autograd.grad(y, d_ax, up_ax)[0]

    def syn(smooth):
        y = synaptic_delay_linear(x, w, d_syn, dt, taps, "gaussian", sigma, smooth=smooth)[0]
        return torch.autograd.grad(y, d_syn, up_syn)[0]

    g_hard, g_smooth = ax(False), ax(True)
    assert g_hard.abs().max() > 1e-3
    assert torch.equal(g_hard, g_smooth)
    g_hard, g_smooth = syn(False), syn(True)
    assert g_hard.abs().max() > 1e-3
    assert torch.equal(g_hard, g_smooth)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gaussian_hard_forward_is_rounded_integer_shift_and_binary(dtype):
    t_len, b, n, dt, sigma, dmax = 30, 2, 6, 0.5, 1.0, 5.0
    taps = delay_taps(dmax, dt, "gaussian", sigma)
    x = binary_spikes(t_len, b, n, 0.25, seed=22, dtype=dtype)
    d = (torch.rand(n, generator=gen(23), dtype=F64) * dmax).to(dtype).requires_grad_()
    y, _ = axonal_delay(x, d, dt, taps, "gaussian", sigma)
    steps = torch.floor(d.detach().double() / dt + 0.5)
    assert y.dtype == dtype
    assert torch.equal(y.detach(), exact_shift(x, steps))
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert y.detach().sum() > 0
    # synaptic, identity weights with the delays on the diagonal: the same shift
    ys, _ = synaptic_delay_linear(x, torch.eye(n, dtype=dtype), d.diag(), dt, taps, "gaussian", sigma)
    assert torch.equal(ys.detach(), exact_shift(x, steps))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_interp_integer_delays_are_exact_shifts(dtype):
    t_len, b, n, dt = 20, 2, 5, 0.5
    taps = delay_taps(4.0, dt, "interp")
    x = torch.randn(t_len, b, n, generator=gen(24)).to(dtype)
    steps = torch.tensor([0, 1, 3, 5, 8])
    d = (steps.to(dtype) * dt).requires_grad_()
    y, _ = axonal_delay(x, d, dt, taps, "interp")
    torch.testing.assert_close(y.detach(), exact_shift(x, steps), rtol=0, atol=0)


def test_interp_fractional_delay_values():
    t_len, b, n, dt = 12, 2, 3, 1.0
    taps = delay_taps(5.0, dt, "interp")
    x = torch.randn(t_len, b, n, generator=gen(25), dtype=F64)
    d = torch.tensor([0.25, 2.5, 3.8], dtype=F64)
    y, _ = axonal_delay(x, d, dt, taps, "interp")
    n_steps = torch.floor(d / dt)
    f = d / dt - n_steps
    ref = (1 - f) * exact_shift(x, n_steps) + f * exact_shift(x, n_steps + 1)
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-14)
    # a single spike at t=2 delayed by 2.5 steps is split half/half over t=4 and t=5
    s = torch.zeros(8, 1, 1, dtype=F64)
    s[2] = 1.0
    ys, _ = axonal_delay(s, torch.tensor([2.5], dtype=F64), dt, taps, "interp")
    assert ys[:, 0, 0].tolist() == [0, 0, 0, 0, 0.5, 0.5, 0, 0]


def test_interp_delay_gradient_value():
    # dy/dD = (x[t-n-1] - x[t-n]) / dt, also at an integer delay
    t_len, dt = 10, 0.5
    taps = delay_taps(3.0, dt, "interp")
    x = torch.randn(t_len, 1, 2, generator=gen(26), dtype=F64)
    d = torch.tensor([1.0, 1.3], dtype=F64, requires_grad=True)  # 2 and 2.6 steps
    y, _ = axonal_delay(x, d, dt, taps, "interp")
    up = torch.randn(t_len, 1, 2, generator=gen(27), dtype=F64)
    (g,) = torch.autograd.grad(y, d, up)
    n_steps = torch.tensor([2.0, 2.0], dtype=F64)
    dy = (exact_shift(x, n_steps + 1) - exact_shift(x, n_steps)) / dt
    torch.testing.assert_close(g, (dy * up).sum((0, 1)), rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_two_chunks_equal_whole(mode):
    t_len, b, n, m, dt, sigma, dmax = 23, 2, 4, 3, 0.5, 0.8, 4.0
    taps = delay_taps(dmax, dt, mode, sigma)
    x = binary_spikes(t_len, b, n, 0.3, seed=28)
    w = torch.randn(m, n, generator=gen(29), dtype=F64)
    bias = torch.randn(m, generator=gen(30), dtype=F64)
    d_ax = (torch.rand(n, generator=gen(31), dtype=F64) * dmax).requires_grad_()
    d_syn = (torch.rand(m, n, generator=gen(32), dtype=F64) * dmax).requires_grad_()
    cut = 7  # shorter than taps-1: the buffer carries input from before the previous chunk too
    assert cut < taps - 1

    y_whole, s_whole = axonal_delay(x, d_ax, dt, taps, mode, sigma)
    y1, s1 = axonal_delay(x[:cut], d_ax, dt, taps, mode, sigma)
    y2, s2 = axonal_delay(x[cut:], d_ax, dt, taps, mode, sigma, state=s1)
    torch.testing.assert_close(torch.cat([y1, y2]), y_whole, rtol=0, atol=1e-14)
    assert torch.equal(s2.buffer, s_whole.buffer)
    assert torch.equal(s_whole.buffer, x[t_len - (taps - 1) :])
    up = torch.randn(t_len, b, n, generator=gen(33), dtype=F64)
    g_whole = torch.autograd.grad(y_whole, d_ax, up)[0]
    g_chunk = torch.autograd.grad(torch.cat([y1, y2]), d_ax, up)[0]
    torch.testing.assert_close(g_chunk, g_whole, rtol=1e-12, atol=1e-12)

    z_whole, r_whole = synaptic_delay_linear(x, w, d_syn, dt, taps, mode, sigma, bias=bias)
    z1, r1 = synaptic_delay_linear(x[:cut], w, d_syn, dt, taps, mode, sigma, bias=bias)
    z2, r2 = synaptic_delay_linear(x[cut:], w, d_syn, dt, taps, mode, sigma, bias=bias, state=r1)
    torch.testing.assert_close(torch.cat([z1, z2]), z_whole, rtol=0, atol=1e-12)
    assert torch.equal(r2.buffer, r_whole.buffer)
    assert z_whole.abs().sum() > 0


@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_synaptic_with_shared_delays_equals_axonal_then_linear(mode):
    t_len, b, n, m, dt, sigma, dmax = 15, 2, 4, 3, 1.0, 1.0, 5.0
    taps = delay_taps(dmax, dt, mode, sigma)
    x = torch.randn(t_len, b, n, generator=gen(34), dtype=F64)
    w = torch.randn(m, n, generator=gen(35), dtype=F64, requires_grad=True)
    bias = torch.randn(m, generator=gen(36), dtype=F64)
    d = (torch.rand(n, generator=gen(37), dtype=F64) * dmax).requires_grad_()
    z, _ = synaptic_delay_linear(x, w, d.expand(m, n), dt, taps, mode, sigma, bias=bias)
    y, _ = axonal_delay(x, d, dt, taps, mode, sigma)
    ref = y @ w.T + bias
    torch.testing.assert_close(z, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn(t_len, b, m, generator=gen(38), dtype=F64)
    g_syn = torch.autograd.grad(z, (w, d), up)
    g_ref = torch.autograd.grad(ref, (w, d), up)
    assert g_ref[1].abs().max() > 1e-6
    for a, r in zip(g_syn, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_batch_elements_independent(mode):
    t_len, b, n, m, dt, sigma, dmax = 12, 3, 4, 2, 1.0, 1.0, 4.0
    taps = delay_taps(dmax, dt, mode, sigma)
    x = torch.randn(t_len, b, n, generator=gen(39), dtype=F64)
    w = torch.randn(m, n, generator=gen(40), dtype=F64)
    d_ax = torch.rand(n, generator=gen(41), dtype=F64) * dmax
    d_syn = torch.rand(m, n, generator=gen(42), dtype=F64) * dmax
    y, _ = axonal_delay(x, d_ax, dt, taps, mode, sigma)
    z, _ = synaptic_delay_linear(x, w, d_syn, dt, taps, mode, sigma)
    x_changed = x.clone()
    x_changed[:, 1] = torch.randn(t_len, n, generator=gen(43), dtype=F64)
    y_changed, _ = axonal_delay(x_changed, d_ax, dt, taps, mode, sigma)
    assert not torch.equal(y_changed[:, 1], y[:, 1])
    for i in range(b):
        yi, _ = axonal_delay(x[:, i : i + 1], d_ax, dt, taps, mode, sigma)
        zi, _ = synaptic_delay_linear(x[:, i : i + 1], w, d_syn, dt, taps, mode, sigma)
        torch.testing.assert_close(yi, y[:, i : i + 1], rtol=0, atol=1e-14)
        torch.testing.assert_close(zi, z[:, i : i + 1], rtol=0, atol=1e-14)
        if i != 1:
            assert torch.equal(y_changed[:, i], y[:, i])


@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_dt_scaling_same_shift_in_ms(mode):
    # spikes at the same times in ms, delays in ms: the output spikes land at the same ms
    duration, sigma, dmax = 20.0, 1.0, 6.0
    d_ms = torch.tensor([0.0, 1.0, 3.0, 6.0, 4.5], dtype=F64)
    spike_ms = torch.tensor([2.0, 5.0, 7.0, 1.0, 3.0], dtype=F64)
    outs = {}
    for dt in (1.0, 0.5):
        t_len = int(duration / dt)
        x = torch.zeros(t_len, 1, 5, dtype=F64)
        x[(spike_ms / dt).round().long(), 0, torch.arange(5)] = 1.0
        x[(spike_ms / dt).round().long() + int(round(8.0 / dt)), 0, torch.arange(5)] = 1.0
        taps = delay_taps(dmax, dt, mode, sigma)
        y, _ = axonal_delay(x, d_ms, dt, taps, mode, sigma)
        times = torch.arange(t_len, dtype=F64) * dt
        # first moment (mean spike time in ms) of each output channel
        outs[dt] = (y[:, 0] * times[:, None]).sum(0) / y[:, 0].sum(0)
        assert torch.allclose(y.sum(0), x.sum(0))  # mass preserved
    expected = spike_ms + 4.0 + d_ms  # mean of the two spikes (t and t+8), shifted by D
    torch.testing.assert_close(outs[0.5], expected, rtol=0, atol=1e-12)
    if mode == "interp":  # 4.5 ms at dt=1 is interpolated half/half: the mean is exact too
        torch.testing.assert_close(outs[1.0], expected, rtol=0, atol=1e-12)
    else:  # hard shift at dt=1 rounds 4.5 ms up to 5 ms; integer-ms delays are exact
        torch.testing.assert_close(outs[1.0][:4], expected[:4], rtol=0, atol=1e-12)
        assert abs(outs[1.0][4].item() - (expected[4].item() + 0.5)) < 1e-12


@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_dt_scaling_delay_gradient_in_ms(mode):
    # a ramp x(t) = t (ms) delayed by D gives y = t - D: dy/dD = -1 per ms at any dt
    sigma, d_ms, duration = 1.0, 6.0, 30.0
    for dt in (1.0, 0.5):
        t_len = int(duration / dt)
        taps = int(round(14.0 / dt))  # window wide enough for 6 ms +- 6 sigma: no truncation
        x = (torch.arange(t_len, dtype=F64) * dt).reshape(t_len, 1, 1)
        d = torch.tensor([d_ms], dtype=F64, requires_grad=True)
        y, _ = axonal_delay(x, d, dt, taps, mode, sigma)
        t0 = taps  # steady state, past the zero-padded start
        torch.testing.assert_close(y[t0:, 0, 0].detach(), x[t0:, 0, 0] - d_ms, rtol=0, atol=1e-9)
        (g,) = torch.autograd.grad(y[t0:].sum(), d)
        # tolerance: the discrete Gaussian's mean deviates from d by O(exp(-2 pi^2 s^2)) ~ 1e-7 at s=1
        torch.testing.assert_close(g / (t_len - t0), torch.tensor([-1.0], dtype=F64), rtol=0, atol=1e-6)


def test_float32_and_no_grad_delays():
    t_len, b, n, m, dt = 10, 2, 3, 4, 1.0
    for mode, sigma in (("interp", 0.0), ("gaussian", 1.0)):
        taps = delay_taps(4.0, dt, mode, sigma)
        x = torch.randn(t_len, b, n, generator=gen(44))
        w = torch.randn(m, n, generator=gen(45))
        d32 = torch.rand(m, n, generator=gen(46)) * 4.0
        z32, st = synaptic_delay_linear(x, w, d32, dt, taps, mode, sigma)
        z64, _ = synaptic_delay_linear(x.double(), w.double(), d32.double(), dt, taps, mode, sigma)
        assert z32.dtype == torch.float32 and st.buffer.dtype == torch.float32
        assert not z32.requires_grad
        torch.testing.assert_close(z32.double(), z64, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            y, _ = axonal_delay(x, d32[0].clone().requires_grad_(), dt, taps, mode, sigma)
        assert not y.requires_grad and y.abs().sum() > 0


def test_init_delay_state():
    like = torch.zeros(1, dtype=F64)
    s = init_delay_state(3, 5, 7, like)
    assert s.buffer.shape == (6, 3, 5) and s.buffer.dtype == F64
    assert torch.count_nonzero(s.buffer) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_cuda_matches_cpu(mode):
    t_len, b, n, m, dt, sigma, dmax = 20, 2, 4, 3, 0.5, 1.0, 4.0
    taps = delay_taps(dmax, dt, mode, sigma)
    x = torch.randn(t_len, b, n, generator=gen(47), dtype=F64)
    w = torch.randn(m, n, generator=gen(48), dtype=F64)
    d = torch.rand(m, n, generator=gen(49), dtype=F64) * dmax
    out = {}
    for dev in ("cpu", "cuda"):
        dd = d.to(dev).requires_grad_()
        ww = w.to(dev).requires_grad_()
        z, _ = synaptic_delay_linear(x.to(dev), ww, dd, dt, taps, mode, sigma)
        grads = torch.autograd.grad(z.pow(2).sum(), (ww, dd))
        out[dev] = [z.cpu(), *(g.cpu() for g in grads)]
    for a, r in zip(out["cuda"], out["cpu"]):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_interp_gather_equals_its_convolution():
    """Axonal ``interp`` runs as two gathers; the depthwise convolution with :func:`delay_kernel` is its
    reference (values and gradients for input, buffer and delays, including clamped and integer delays)."""
    from spiketime.functional.delay import _causal_conv, _interp_shift

    g = torch.Generator().manual_seed(11)
    dt, taps, T, B, N = 0.5, 9, 14, 3, 6
    x = torch.rand(T, B, N, generator=g, dtype=torch.float64, requires_grad=True)
    buf = torch.rand(taps - 1, B, N, generator=g, dtype=torch.float64, requires_grad=True)
    d = torch.tensor([0.0, 0.3, 1.0, 2.7, 3.5, 9.0], dtype=torch.float64, requires_grad=True)  # 9 ms: clamped to 4
    w = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    outs = []
    for fn in (
        lambda: _interp_shift(x, buf, d, dt, taps),
        lambda: _causal_conv(x, buf, delay_kernel(d, dt, taps, "interp").unsqueeze(1), groups=N, bias=None),
    ):
        y, st = fn()
        outs.append(
            (y.detach(), st.buffer.detach(), *torch.autograd.grad((y * w).sum() + st.buffer.sum(), [x, buf, d]))
        )
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [14, 3])  # T >= taps-1 and T < taps-1 (the new buffer mixes old buffer and input)
def test_compiled_interp_equals_gathers(monkeypatch, T):
    """The compiled CPU kernel of the interp axonal delay against the two-gather path it replaces."""
    from spiketime.functional import delay as delay_mod
    from spiketime.kernels import cpu

    if cpu.library() is None:
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(12)
    dt, taps, B, N = 1.0, 7, 2, 70
    x = torch.rand(T, B, N, generator=g, dtype=torch.float64, requires_grad=True)
    buf = torch.rand(taps - 1, B, N, generator=g, dtype=torch.float64, requires_grad=True)
    d = (torch.rand(N, generator=g, dtype=torch.float64) * 8.0).requires_grad_()  # some beyond taps-1: clamped
    w = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    outs = []
    for compiled in (True, False):
        monkeypatch.setattr(delay_mod.cpu, "supports", lambda *t, c=compiled: c)
        y, st = delay_mod._interp_shift(x, buf, d, dt, taps)
        outs.append(
            (y.detach(), st.buffer.detach(), *torch.autograd.grad((y * w).sum() + st.buffer.sum(), [x, buf, d]))
        )
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
