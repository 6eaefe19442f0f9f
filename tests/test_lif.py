"""LIF / LI functional core: equations, gradients, chunking, batch independence."""

import math

import pytest
import torch

from spiketime.functional.li import LIState, li_sequence
from spiketime.functional.lif import LIFParams, lif_init, lif_sequence, lif_step
from spiketime.surrogate import Arctan, FastSigmoid, Gaussian


def _params(n, dtype=torch.float64, **kw):
    g = torch.Generator().manual_seed(1)
    tau = 5.0 + 15.0 * torch.rand(n, generator=g, dtype=dtype)
    return LIFParams(tau_mem=tau, **kw)


def test_step_matches_equation_subtract_and_zero():
    x = torch.tensor([[3.0, 0.5]], dtype=torch.float64)
    tau = torch.tensor([10.0, 10.0], dtype=torch.float64)
    beta = math.exp(-1.0 / 10.0)
    st = lif_init(1, 2, x)._replace(
        v=torch.tensor([[1.5, 0.2]], dtype=torch.float64), s=torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    )
    s, new = lif_step(x, st, LIFParams(tau), dt=1.0)
    v = torch.tensor([[beta * 1.5 + (1 - beta) * 3.0 - 1.0, beta * 0.2 + (1 - beta) * 0.5]], dtype=torch.float64)
    torch.testing.assert_close(new.v, v)
    assert torch.equal(s, (v > 1.0).double())
    s0, new0 = lif_step(x, st, LIFParams(tau, reset="zero"), dt=1.0)
    torch.testing.assert_close(
        new0.v, torch.tensor([[(1 - beta) * 3.0, beta * 0.2 + (1 - beta) * 0.5]], dtype=torch.float64)
    )


def test_cuba_synapse():
    x = torch.zeros(5, 1, 1, dtype=torch.float64)
    x[0] = 1.0
    p = LIFParams(
        torch.tensor([10.0], dtype=torch.float64), tau_syn=torch.tensor([5.0], dtype=torch.float64), theta=100.0
    )
    _, _, v = lif_sequence(x, p, dt=1.0, record_v=True)
    a, b = math.exp(-1 / 5), math.exp(-1 / 10)
    i = [a**t for t in range(5)]
    ref, vv = [], 0.0
    for t in range(5):
        vv = b * vv + (1 - b) * i[t]
        ref.append(vv)
    torch.testing.assert_close(v[:, 0, 0], torch.tensor(ref, dtype=torch.float64))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(alpha=2.0), Gaussian(sigma=0.5), Arctan()], ids=repr)
def test_gradcheck_smooth_lif(reset, surrogate):
    """With the spike replaced by the surrogate's smooth primitive, autograd through the LIF scan
    (input and learnable tau) matches finite differences in float64."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(12, 2, 3, generator=g, dtype=torch.float64) * 3).requires_grad_()
    tau = (5.0 + 10 * torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_()
    tau_syn = torch.full((3,), 4.0, dtype=torch.float64, requires_grad=True)

    def f(x, tau, tau_syn):
        p = LIFParams(tau, tau_syn, theta=1.0, reset=reset, surrogate=surrogate, smooth=True)
        s, _ = lif_sequence(x, p, dt=1.0)
        return s

    assert torch.autograd.gradcheck(f, (x, tau, tau_syn))


def test_hard_spike_gradient_is_surrogate_of_smooth_network_one_step():
    """One step: the hard network's gradient equals the smooth network's (same surrogate), since the
    only nonlinearity is the spike."""
    x = torch.tensor([[0.7, 2.5, 1.2]], dtype=torch.float64, requires_grad=True)
    tau = torch.full((3,), 10.0, dtype=torch.float64)
    st = lif_init(1, 3, x)._replace(v=torch.tensor([[0.9, 0.1, 0.95]], dtype=torch.float64))
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    s_h, _ = lif_step(x, st, LIFParams(tau, surrogate=FastSigmoid(3.0)), 1.0)
    s_s, _ = lif_step(x, st, LIFParams(tau, surrogate=FastSigmoid(3.0), smooth=True), 1.0)
    (g_h,) = torch.autograd.grad((s_h * w).sum(), x)
    (g_s,) = torch.autograd.grad((s_s * w).sum(), x)
    torch.testing.assert_close(g_h, g_s)


def test_chunks_equal_whole_and_batch_independent():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 4, 6, generator=g, dtype=torch.float64) * 4
    p = _params(6, tau_syn=torch.full((6,), 3.0, dtype=torch.float64))
    whole, st_w = lif_sequence(x, p, 1.0)
    a, st = lif_sequence(x[:17], p, 1.0)
    b, st2 = lif_sequence(x[17:], p, 1.0, st)
    assert torch.equal(torch.cat([a, b]), whole)
    for u, v in zip(st2, st_w):
        assert torch.equal(u, v)
    assert whole.sum() > 10  # the test input makes spikes
    single, _ = lif_sequence(x[:, 2:3], p, 1.0)
    assert torch.equal(single, whole[:, 2:3])
    y, s_li = li_sequence(x, p.tau_mem, 1.0)
    y1, s1 = li_sequence(x[:9], p.tau_mem, 1.0)
    y2, _ = li_sequence(x[9:], p.tau_mem, 1.0, s1)
    assert torch.equal(torch.cat([y1, y2]), y)
    assert isinstance(s_li, LIState)


def test_dt_enters_only_through_decays():
    """Halving dt with each input repeated twice gives nearly the same membrane at matching times."""
    tau = torch.tensor([20.0], dtype=torch.float64)
    x = torch.full((100, 1, 1), 0.8, dtype=torch.float64)
    _, _, v1 = lif_sequence(x, LIFParams(tau, theta=10.0), 1.0, record_v=True)
    _, _, v2 = lif_sequence(x.repeat_interleave(2, 0), LIFParams(tau, theta=10.0), 0.5, record_v=True)
    torch.testing.assert_close(v2[1::2], v1, rtol=0, atol=1e-12)  # constant input: exact
    torch.testing.assert_close(v1[-1, 0, 0], torch.tensor(0.8 * (1 - math.exp(-5)), dtype=torch.float64))


def test_detach_reset_changes_only_the_graph():
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(20, 2, 3, generator=g, dtype=torch.float64) * 4).requires_grad_()
    tau = torch.full((3,), 8.0, dtype=torch.float64)
    s1, _ = lif_sequence(x, LIFParams(tau), 1.0)
    s2, _ = lif_sequence(x, LIFParams(tau, detach_reset=True), 1.0)
    assert torch.equal(s1, s2)
    g1 = torch.autograd.grad(s1.sum(), x)[0]
    g2 = torch.autograd.grad(s2.sum(), x)[0]
    assert not torch.allclose(g1, g2)


def test_bad_shapes_and_reset():
    with pytest.raises(ValueError, match="x_seq must be"):
        lif_sequence(torch.zeros(3, 4), LIFParams(torch.ones(4)), 1.0)
    with pytest.raises(ValueError, match="reset must be"):
        lif_sequence(torch.zeros(3, 1, 4), LIFParams(torch.ones(4), reset="bogus"), 1.0)
