"""Event-driven input projection (spiketime.kernels.sparse) against the dense product."""

from __future__ import annotations

import pytest
import torch

from spiketime.app.config import ModelConfig
from spiketime.app.factories import lif_network
from spiketime.kernels import sparse


def _spikes(shape, density, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).to(dtype) * torch.randint(1, 3, shape, generator=g).to(dtype)


@pytest.mark.parametrize("x_grad", [False, True])
def test_event_linear_equals_dense(x_grad):
    x = _spikes((40, 3, 50), 0.02).requires_grad_(x_grad)
    w = torch.randn(7, 50, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert sparse.event_driven(x, w)
    g = torch.randn(40, 3, 7, dtype=torch.float64)
    y = sparse.linear(x, w, b)
    y_ref = x @ w.t() + b
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    leaves = [w, b] + ([x] if x_grad else [])
    for a, r in zip(torch.autograd.grad((y * g).sum(), leaves), torch.autograd.grad((y_ref * g).sum(), leaves)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_gradcheck_event_linear():
    x = _spikes((6, 2, 9), 0.05, seed=1).requires_grad_()
    w = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_, w_: sparse._EventLinear.apply(x_.reshape(-1, 9), w_), (x, w))


def test_rows_without_events_and_empty_input():
    x = torch.zeros(5, 2, 8, dtype=torch.float64)
    x[3, 1, 2] = 1.0
    w = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(sparse.linear(x, w), x @ w.t())
    torch.testing.assert_close(
        sparse.linear(torch.zeros(4, 2, 8, dtype=torch.float64), w), torch.zeros(4, 2, 3, dtype=torch.float64)
    )


def test_dense_input_takes_the_dense_path():
    w = torch.randn(3, 8)
    assert not sparse.event_driven(torch.rand(10, 2, 8), w)
    assert sparse.event_driven(_spikes((200, 2, 8), 0.01, dtype=torch.float32), w)
    assert not sparse.event_driven(_spikes((200, 2, 8), 0.01, dtype=torch.float64), w)  # dtype mismatch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not sparse.event_driven(_spikes((200, 2, 8), 0.01, dtype=torch.float32), w)


@pytest.mark.parametrize("delays", ["none", "axonal"])
def test_network_same_with_and_without_event_path(monkeypatch, delays):
    x = _spikes((60, 4, 30), 0.03, seed=2)
    y = torch.tensor([0, 1, 2, 1])
    res = []
    for max_density in (sparse.MAX_DENSITY, 0.0):
        monkeypatch.setattr(sparse, "MAX_DENSITY", max_density)
        net = lif_network(30, 3, ModelConfig(hidden=[16, 16], delays=delays, delay_max=5.0), 1.0, seed=0).double()
        out, _ = net(x)
        loss = torch.nn.functional.cross_entropy(out.max(0).values, y)
        res.append((out.detach(), *torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad])))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
