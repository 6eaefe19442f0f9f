"""SpikingNetwork and module behaviour: state, chunking, batch independence, determinism, groups."""

import pytest
import torch

from spiketime.app.config import ModelConfig
from spiketime.app.factories import lif_network
from spiketime.nn import LI, LIF, DelayedLinear


def _net(delays="axonal", mode="interp", **kw):
    cfg = ModelConfig(hidden=[12, 10], delays=delays, delay_mode=mode, delay_max=6.0, weight_scale=2.0, **kw)
    return lif_network(5, 3, cfg, dt=1.0, seed=7).double()


def _input(T=50, B=4, C=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, generator=g) < 0.15).double()


@pytest.mark.parametrize(
    "delays,mode",
    [
        ("none", "interp"),
        ("axonal", "interp"),
        ("synaptic", "interp"),
        ("axonal", "gaussian"),
        ("synaptic", "gaussian"),
    ],
)
def test_two_chunks_equal_whole(delays, mode):
    net, x = _net(delays, mode, tau_syn=3.0), _input()
    y, st = net(x)
    y1, s1 = net(x[:23])
    y2, _ = net(x[23:], s1)
    assert torch.equal(torch.cat([y1, y2]), y)
    _, _, outs = net.run(x)
    assert outs[0].sum() > 0 and outs[1].sum() > 0  # hidden layers actually spike


def test_batch_independent_and_deterministic():
    x = _input()
    y, _ = _net()(x)
    y_single, _ = _net()(x[:, 1:2])
    torch.testing.assert_close(y_single, y[:, 1:2], rtol=1e-12, atol=1e-12)
    assert torch.equal(_net()(x)[0], y)  # same seed -> same model -> same output
    other = lif_network(5, 3, ModelConfig(hidden=[12, 10], delay_max=6.0, weight_scale=2.0), 1.0, seed=8).double()
    assert not torch.equal(other(x)[0], y)


def test_param_groups_and_projection():
    net = _net("synaptic")
    groups = net.param_groups()
    assert {k: len(v) for k, v in groups.items()} == {
        "weights": 3,
        "time_constants": 4,
        "delays": 2,
    }  # tau_mem + tau_syn
    with torch.no_grad():
        net.projections[0].delays.add_(100.0)
        net.projections[1].delays.sub_(100.0)
    net.project_()
    assert net.projections[0].delays.max().item() == 6.0 and net.projections[1].delays.min().item() == 0.0
    assert set(net.learned_delays()) == {"layer 1", "layer 2"}
    assert net.learned_delays()["layer 1"].numel() == 12 * 5


def test_tau_stays_positive_and_gets_gradient():
    lif = LIF(4, dt=1.0, tau_mem=10.0)
    assert torch.allclose(lif.tau_mem, torch.full((4,), 10.0))
    x = torch.rand(30, 2, 4) * 3
    s, _ = lif(x)
    s.sum().backward()
    assert lif.log_tau_mem.grad is not None and lif.log_tau_mem.grad.abs().sum() > 0
    li = LI(3, dt=1.0, tau=5.0)
    v, _ = li(torch.ones(10, 1, 3))
    assert torch.all(v[-1] < 1) and torch.all(v[-1] > 0.85)


def test_errors_name_the_problem():
    net = _net()
    with pytest.raises(ValueError, match=r"x_seq must be \[T, B, N\]"):
        net(torch.zeros(10, 5))
    with pytest.raises(ValueError, match="expects 5"):
        net(torch.zeros(10, 2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="delays must be one of"):
        DelayedLinear(3, 2, 1.0, delays="dendritic")
