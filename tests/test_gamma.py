"""SpikingGamma: gamma buckets, ordered time constants, resolution, sigma-delta coding, gradients, modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from spiketime.functional.gamma import (
    BucketState,
    bucket_decays,
    bucket_impulse_response,
    bucket_sequence,
    bucket_step,
    gamma_kernel_closed_form,
    power_law_taus,
)
from spiketime.functional.sigma_delta import (
    SigmaDeltaParams,
    detach_state,
    sigma_delta_init,
    sigma_delta_step,
)
from spiketime.nn.gamma import GammaBuckets, GammaConv2d, GammaDense, GammaNetwork

D = torch.float64


# 1. closed form -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 2, 3, 4])
@pytest.mark.parametrize("tau,dt", [(7.0, 1.0), (3.0, 0.5)])
def test_equal_tau_recursion_is_discrete_gamma(K, tau, dt):
    r = bucket_impulse_response(torch.full((K,), tau), dt, 150)
    c = gamma_kernel_closed_form(tau, dt, K, 150)
    assert r.dtype == D and r.shape == (150, K)
    torch.testing.assert_close(r, c, atol=1e-12, rtol=0)
    assert (r[: K - 1, K - 1] == 0).all() and r[K - 1, K - 1] > 0  # bucket k first responds at t = k-1
    a = math.exp(-dt / tau)
    assert r[0, 0].item() == pytest.approx(1 - a, abs=1e-15)


def test_bucket_step_equation_and_steady_state():
    taus = torch.tensor([2.0, 3.0, 5.0], dtype=D)
    a = bucket_decays(taus, 1.0)
    b0 = torch.tensor([[[0.3, -0.2, 0.7]]], dtype=D)
    u = torch.tensor([[1.5]], dtype=D)
    b = bucket_step(u, BucketState(b0), a).b[0, 0]
    ref = [a[0] * 0.3 + (1 - a[0]) * 1.5, a[1] * -0.2 + (1 - a[0]) * 0.3, a[2] * 0.7 + (1 - a[1]) * -0.2]
    torch.testing.assert_close(b, torch.stack(ref))
    # a constant input settles at b_k = (1 - a_1) / (1 - a_k), also the mass of bucket k's impulse response
    b_seq, _ = bucket_sequence(torch.ones(400, 1, 1, dtype=D), a)
    gain = (1 - a[0]) / (1 - a)
    torch.testing.assert_close(b_seq[-1, 0, 0], gain, atol=1e-10, rtol=0)
    torch.testing.assert_close(bucket_impulse_response(taus, 1.0, 400).sum(0), gain, atol=1e-10, rtol=0)


# 2. time constants --------------------------------------------------------------------------------------------


def test_power_law_taus_and_validation():
    t = power_law_taus(4, 5.0, 1.5)
    assert t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([5.0, 7.5, 11.25, 16.875]))
    torch.testing.assert_close(power_law_taus(1, 2.0, 1.0), torch.tensor([2.0]))
    for kw, name in [({"K": 0}, "K"), ({"tau_1": 0.0}, "tau_1"), ({"factor": 0.9}, "factor")]:
        args = {"K": 3, "tau_1": 5.0, "factor": 1.5} | kw
        with pytest.raises(ValueError, match=name) as e:
            power_law_taus(**args)
        assert "\n" not in str(e.value)


def test_ordered_taus_init_and_after_random_steps():
    m = GammaBuckets(6, dt=1.0, K=5, tau_1=4.0, factor=1.7)
    ref = power_law_taus(5, 4.0, 1.7).expand(6, 5)
    torch.testing.assert_close(m.taus, ref, rtol=2e-6, atol=0)  # float32 parameters: a few ulps
    torch.testing.assert_close(
        GammaBuckets(3, 1.0, 4, 5.0, 1.5).taus, power_law_taus(4, 5.0, 1.5).expand(3, 4), rtol=2e-6, atol=0
    )
    with pytest.raises(ValueError, match="factor"):
        GammaBuckets(2, 1.0, K=3, factor=1.0)
    m = m.double()
    ref = m.taus.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # random walks of ~4.5 per parameter: ratios reach 1.001 (the floor) and ~1000
        opt.zero_grad()
        for p in m.parameters():
            p.grad = torch.randn(p.shape, generator=g, dtype=D)
        opt.step()
    taus = m.taus
    assert not torch.allclose(taus, ref)  # the steps did move them
    assert (taus > 0).all() and (taus.diff(dim=-1) > 0).all()
    assert (taus[:, 1:] / taus[:, :-1] >= math.exp(1e-3) * (1 - 1e-12)).all()
    fixed = GammaBuckets(2, 1.0, learn_taus=False)
    assert not any(p.requires_grad for p in fixed.parameters())


# 3. resolution ------------------------------------------------------------------------------------------------


def _step_response(taus: torch.Tensor, dt: float, t_ms: float) -> torch.Tensor:
    """Step response (u = 1 from t = 0) at times dt, 2 dt, ..., t_ms: [t_ms / dt, K]."""
    b, _ = bucket_sequence(torch.ones(round(t_ms / dt), 1, 1, dtype=D), bucket_decays(taus, dt))
    return b[:, 0, 0]


def test_step_response_is_resolution_independent_within_measured_bounds():
    """The step response sampled at the same ms at dt = 1, 1/2, 1/3 ms (taus 5 .. 25 ms). Bucket 1 is an exact
    discretisation (``1 - exp(-t/tau_1)``). Later buckets differ in (i) their gain ``(1-a_1)/(1-a_k)``, which
    tends to ``tau_k/tau_1`` as dt -> 0 (bucket 5: 4.66 at dt = 1, 4.86 at dt = 1/3, 5.06 in the limit), and
    (ii) shape: each cascade step lags by one dt, which shifts bucket k by ~(k/2 - 1) dt. Measured: shape
    (response / own gain) differs by <= 0.018 (dt/2) and <= 0.024 (dt/3); raw <= 0.25 (5 % of the gain)."""
    taus = power_law_taus(5, 5.0, 1.5).double()

    def gain(dt):
        return (1 - torch.exp(-dt / taus[0])) / (1 - torch.exp(-dt / taus))

    ref, gain_ref = _step_response(taus, 1.0, 200), gain(1.0)
    for n, tol in [(2, 0.02), (3, 0.025)]:
        r = _step_response(taus, 1.0 / n, 200)
        gain_n = gain(1.0 / n)
        r = r[n - 1 :: n]  # times 1, 2, ... ms
        assert r.shape == ref.shape
        torch.testing.assert_close(r[:, 0], ref[:, 0], atol=1e-12, rtol=0)
        shape_diff = (r / gain_n - ref / gain_ref).abs().max(0).values
        assert (shape_diff <= tol).all(), shape_diff
        assert (shape_diff[1:] > 5e-3).all()  # the lag is real: the tolerance is not vacuous
        assert ((r - ref).abs().max(0).values <= 0.055 * taus / taus[0]).all()
        assert (gain_n[1:] > gain_ref[1:]).all() and (gain_n[1:] < taus[1:] / taus[0]).all()  # -> tau_k/tau_1


# 4. sigma-delta -----------------------------------------------------------------------------------------------


def _run_sd(y: torch.Tensor, p: SigmaDeltaParams, dt: float = 1.0):
    st = sigma_delta_init(1, y.shape[-1], y, p.theta0)
    out = {"u": [], "s": [], "yhat": [], "theta_used": [], "theta": []}
    for x in y:
        out["theta_used"].append(st.theta)
        u, s, st = sigma_delta_step(x.unsqueeze(0), st, p, dt)
        out["u"].append(u[0])
        out["s"].append(s[0])
        out["yhat"].append(st.yhat[0])
        out["theta"].append(st.theta[0])
    return {k: torch.stack(v).squeeze(1) if k == "theta_used" else torch.stack(v) for k, v in out.items()}


def test_sigma_delta_equations_one_step():
    p = SigmaDeltaParams(theta0=0.1, tau_ref=10.0, tau_th=30.0, m_f=0.5)
    a_r, a_th = math.exp(-0.1), math.exp(-1 / 30)
    st = sigma_delta_init(1, 3, torch.zeros(1, dtype=D))._replace(
        yhat=torch.tensor([[0.5, 0.5, 0.0]], dtype=D), theta=torch.tensor([[0.2, 0.2, 0.3]], dtype=D)
    )
    x = torch.tensor([[0.7, 0.5, -1.0]], dtype=D)  # errors 0.7 - 0.5 a_r > 0.1 (spike), 0.5 - 0.5 a_r < 0.1, 0
    u, s, new = sigma_delta_step(x, st, p, 1.0)
    assert s.tolist() == [[1.0, 0.0, 0.0]]
    torch.testing.assert_close(u, torch.tensor([[0.2, 0.0, 0.0]], dtype=D), atol=0, rtol=0)
    torch.testing.assert_close(new.yhat, torch.tensor([[0.5 * a_r + 0.2, 0.5 * a_r, 0.0]], dtype=D))
    th = [0.1 + 0.1 * a_th + 0.5 * 0.2, 0.1 + 0.1 * a_th, 0.1 + 0.2 * a_th]
    torch.testing.assert_close(new.theta, torch.tensor([th], dtype=D))


def test_sigma_delta_error_bounded_by_half_threshold():
    """After a 20-step transient, -theta/2 < y - yhat <= theta/2 at every step, with theta the threshold the step
    decided with (it rises after a spike and relaxes otherwise, so the bound against the updated threshold can
    exceed 1/2 by a few %). yhat is exactly the running sum of spike heights through the refractory kernel."""
    t = torch.arange(400, dtype=D)
    for amp in (0.5, 1.0, 3.0):
        y = (amp * (1 + 0.5 * torch.sin(2 * math.pi * t / 200))).view(400, 1)
        r = _run_sd(y, SigmaDeltaParams())
        err = (y - r["yhat"])[20:, 0]
        th = r["theta_used"][20:, 0]
        assert (err <= th / 2 + 1e-12).all() and (err > -th / 2 - 1e-12).all()
        assert (err.abs() / th).max() > 0.45  # the bound is tight
        torch.testing.assert_close(r["u"], r["s"] * r["theta_used"].view(400, 1), atol=0, rtol=0)
        yhat, a_r = torch.zeros(1, dtype=D), math.exp(-1 / 20)
        for k in range(400):
            yhat = a_r * yhat + r["u"][k]
        torch.testing.assert_close(yhat, r["yhat"][-1], atol=1e-12, rtol=0)


def test_sigma_delta_silent_on_zero_and_adapts_to_activity():
    zero = _run_sd(torch.zeros(200, 4, dtype=D), SigmaDeltaParams())
    assert zero["s"].sum() == 0 and (zero["u"] == 0).all() and (zero["theta"] == 0.1).all()
    neg = _run_sd(-torch.ones(200, 4, dtype=D), SigmaDeltaParams())
    assert neg["s"].sum() == 0  # y = ReLU(x) = 0
    counts, thetas = [], []
    for amp in (0.5, 1.0, 2.0, 4.0):
        r = _run_sd(torch.full((400, 1), amp, dtype=D), SigmaDeltaParams())
        counts.append(r["s"].sum().item())
        thetas.append(r["theta"][-100:].mean().item())
        assert thetas[-1] == pytest.approx(0.1 + 0.5 * amp, rel=0.15)  # steady theta0 + m_f y (tau_th = tau_ref)
    assert counts == sorted(counts) and thetas == sorted(thetas)
    assert counts[-1] < 2 * counts[0]  # 8x the input, < 2x the spikes
    fixed = _run_sd(torch.full((400, 1), 4.0, dtype=D), SigmaDeltaParams(m_f=0.0))
    assert fixed["s"].sum() > 3 * counts[-1]  # without adaptation many more spikes


# 5. gradients -------------------------------------------------------------------------------------------------


def test_straight_through_gradient_one_step_and_bptt():
    p = SigmaDeltaParams()
    x = torch.tensor([[0.8, 2.0, -0.5, 0.01]], dtype=D, requires_grad=True)
    u, s, st = sigma_delta_step(x, sigma_delta_init(1, 4, x, p.theta0), p, 1.0)
    (gx,) = torch.autograd.grad(u.sum(), x, retain_graph=True)
    torch.testing.assert_close(gx, torch.tensor([[1.0, 1.0, 0.0, 1.0]], dtype=D))  # ReLU' times d u / d y = 1
    # BPTT: u[t] = yhat_st[t] - a_r yhat_st[t-1] -> d u[1] / d x[0] = -a_r; detach_state cuts it
    x1 = torch.tensor([[0.3, 0.3, 0.3, 0.3]], dtype=D, requires_grad=True)
    u1, _, st1 = sigma_delta_step(x1, st, p, 1.0)
    g0, g1 = torch.autograd.grad(u1.sum(), (x, x1))
    torch.testing.assert_close(g0, -math.exp(-1 / 20) * torch.tensor([[1.0, 1.0, 0.0, 1.0]], dtype=D))
    torch.testing.assert_close(g1, torch.ones(1, 4, dtype=D))
    u2, _, _ = sigma_delta_step(x1, detach_state(st), p, 1.0)
    assert torch.equal(u2, u1)
    (g0,) = torch.autograd.grad(u2.sum(), x, allow_unused=True)
    assert g0 is None
    assert not detach_state(st1).yhat.requires_grad


def test_gradcheck_bucket_sequence():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(12, 2, 3, generator=g, dtype=D, requires_grad=True)
    for decays in (torch.tensor([0.6, 0.8, 0.9], dtype=D), 0.5 + 0.4 * torch.rand(3, 3, generator=g, dtype=D)):
        decays.requires_grad_()
        assert torch.autograd.gradcheck(lambda u, a: bucket_sequence(u, a)[0], (u, decays))


@pytest.mark.parametrize("mode", ["neuron", "synapse"])
def test_gradcheck_gamma_dense_readout(mode):
    g = torch.Generator().manual_seed(1)
    layer = GammaDense(3, 2, dt=1.0, K=3, tau_1=2.0, factor=1.6, bucket_weights=mode, neuron=None, generator=g)
    layer = layer.double()
    u = torch.randn(10, 2, 3, generator=g, dtype=D)
    names = ["weight", "bucket_weight", "buckets.log_tau1", "buckets.raw_log_ratio", "bias"]
    params = {
        k: (v.detach().clone() + 0.1 * torch.randn(v.shape, generator=g, dtype=D)).requires_grad_()
        for k, v in layer.named_parameters()
        if k in names
    }
    assert sorted(params) == sorted(names)

    def f(*vals):
        return functional_call(layer, dict(zip(names, vals)), (u,))[0]

    assert torch.autograd.gradcheck(f, tuple(params[k] for k in names))


# 6. network ---------------------------------------------------------------------------------------------------


def _net(**kw):
    return GammaNetwork(4, 3, [8, 6], dt=1.0, seed=2, **kw).double()


def test_network_shapes_and_step_equals_forward():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.rand(120, 2, 4, generator=g, dtype=D)
    for kw in ({}, {"bucket_weights": "synapse", "normalize_spikes": False}):
        net = _net(**kw)
        logits, _, spikes = net(x, return_spikes=True)
        assert logits.shape == (120, 2, 3) and [s.shape for s in spikes] == [(120, 2, 8), (120, 2, 6)]
        assert spikes[0].sum() > 0
        if kw.get("normalize_spikes", True):
            assert spikes[1].sum() > 0  # the second hidden layer is active too
        state, outs, sps = None, [], []
        for xt in x:
            o, state, step_outputs = net.step(xt, state)
            outs.append(o)
            sps.append(step_outputs[:-1])
            assert step_outputs[-1] is o
        torch.testing.assert_close(torch.stack(outs), logits, atol=1e-12, rtol=0)
        for i, s in enumerate(spikes):
            assert torch.equal(torch.stack([sp[i] for sp in sps]), s)
        # a forward in two chunks with the state carried over equals one forward
        l1, st, outputs = net.run(x[:50])
        assert outputs[-1] is l1 and len(outputs) == 3
        l2, _, _ = net.run(x[50:], st)
        torch.testing.assert_close(torch.cat([l1, l2]), logits, atol=1e-12, rtol=0)
        det = net.detach_state(state)
        assert all(not t.requires_grad for t in torch.utils._pytree.tree_leaves(det) if torch.is_tensor(t))


def test_network_backward_reaches_every_parameter():
    net = _net()
    x = 3 * torch.rand(80, 2, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    logits, _ = net(x)
    logits.pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_set_dt_recomputes_decays():
    net = _net()
    before = [layer.buckets.decays.detach() for layer in net.layers]
    gain = net.spike_gain()
    net.set_dt(0.5)
    assert net.dt == 0.5 and all(layer.dt == 0.5 for layer in net.layers)
    for a, layer in zip(before, net.layers):
        torch.testing.assert_close(layer.buckets.decays.detach() ** 2, a, atol=1e-14, rtol=0)
    assert net.spike_gain() == pytest.approx(1 / (1 - math.exp(-0.5 / 20)))
    assert net.spike_gain() > 1.9 * gain
    logits, spikes = net(torch.rand(30, 1, 4, dtype=D))
    assert logits.shape == (30, 1, 3)


# 7. convolution -----------------------------------------------------------------------------------------------


def test_conv_shapes_and_1x1_equals_dense_per_pixel():
    g = torch.Generator().manual_seed(3)
    C, O, K, H, W, T, B = 3, 4, 3, 5, 4, 30, 2
    conv = GammaConv2d(C, O, 3, dt=1.0, K=K, padding=1, generator=g)
    out, s, st = conv(torch.rand(T, B, C, H, W, generator=g))
    assert out.shape == s.shape == (T, B, O, H, W) and st.buckets.b.shape == (B, C, H, W, K)
    assert GammaConv2d(C, O, 3, dt=1.0, K=K, stride=2, generator=g)(torch.rand(T, B, C, H, W))[0].shape[-2:] == (2, 1)

    dense = GammaDense(C, O, dt=1.0, K=K, bucket_weights="synapse", generator=g).double()
    conv1 = GammaConv2d(C, O, 1, dt=1.0, K=K, generator=g).double()
    with torch.no_grad():
        dense.bucket_weight.mul_(1 + torch.rand(dense.bucket_weight.shape, generator=g, dtype=D))
        dense.bias.copy_(0.1 * torch.randn(O, generator=g, dtype=D))
        dense.buckets.log_tau1.add_(0.2 * torch.randn(C, generator=g, dtype=D))
        conv1.weight.copy_(dense.effective_weight.reshape(O, C * K, 1, 1))
        conv1.bias.copy_(dense.bias)
        conv1.buckets.log_tau1.copy_(dense.buckets.log_tau1)
        conv1.buckets.raw_log_ratio.copy_(dense.buckets.raw_log_ratio)
    x = 3 * torch.rand(T, B, C, H, W, generator=g, dtype=D)
    out_c, s_c, _ = conv1(x)
    flat = x.permute(0, 1, 3, 4, 2).reshape(T, B * H * W, C)  # every pixel a batch element
    out_d, s_d, _ = dense(flat)
    back = out_d.reshape(T, B, H, W, O).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(out_c, back, atol=1e-12, rtol=0)
    assert torch.equal(s_c, s_d.reshape(T, B, H, W, O).permute(0, 1, 4, 2, 3))
    assert s_c.sum() > 0
    state, steps = None, []
    for xt in x:
        o, _, state = conv1.step(xt, state)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps), out_c, atol=1e-12, rtol=0)


def test_input_events_reach_the_first_buckets_alike_at_every_dt():
    """An input event (a count in one bin) is a unit spike: the first layer's buckets, read at the same times in
    ms, follow the same trajectory at dt = 1 and 0.25 ms (discretisation error O(dt / tau)); raw counts would be
    4x apart."""
    traj = {}
    for dt in (1.0, 0.25):
        net = GammaNetwork(2, 2, [3], dt=dt, K=3, tau_1=8.0).double()
        steps = round(60 / dt)
        x = torch.zeros(steps, 1, 2, dtype=D)
        x[round(5 / dt), 0, 0] = 1.0  # one event at 5 ms on input 0
        state, b = None, []
        for xt in x:
            _, state, _ = net.step(xt, state)
            b.append(state[0].buckets.b[0, 0].detach())
        traj[dt] = torch.stack(b)[round(10 / dt) - 1 :: round(10 / dt)]  # at 10, 20, ..., 60 ms
    peak = float(traj[1.0].max())
    torch.testing.assert_close(traj[0.25], traj[1.0], rtol=0.1, atol=0.05 * peak)  # bucket k lags ~(k-1) dt
    assert peak > 0.02  # ~1 / tau_1 after the event, not ~dt / tau_1
    raw = GammaNetwork(2, 2, [3], dt=1.0, K=3, tau_1=8.0, normalize_spikes=False)
    assert raw.spike_gain() == 1.0
