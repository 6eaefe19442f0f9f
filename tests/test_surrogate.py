"""Surrogate contract in float64: forward is exactly the step, backward is the derivative of the primitive."""

import pytest
import torch

from spiketime.surrogate import SURROGATES, Arctan, FastSigmoid, Gaussian, Sigmoid, Triangle, make_surrogate, spike

ALL = [
    FastSigmoid(),
    FastSigmoid(alpha=100.0),
    Gaussian(),
    Gaussian(sigma=0.1),
    Arctan(),
    Arctan(alpha=5.0),
    Triangle(),
    Triangle(width=2.0),
    Sigmoid(),
    Sigmoid(alpha=20.0),
]


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_forward_is_exact_step(s):
    x = torch.linspace(-3, 3, 1001, dtype=torch.float64)
    out = spike(x, s)
    assert out.dtype == torch.float64
    assert torch.equal(out, (x > 0).double())
    assert spike(torch.zeros(1, dtype=torch.float64), s).item() == 0.0


@pytest.mark.parametrize("s", ALL, ids=repr)
def test_backward_equals_derivative_of_primitive(s):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(400, generator=g, dtype=torch.float64) - 0.5) * 4
    if isinstance(s, Triangle):  # keep finite differences off the kinks at 0 and +-width
        x = x[((x.abs() - s.width).abs() > 1e-3) & (x.abs() > 1e-3)]
    x.requires_grad_(True)
    upstream = torch.randn(x.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(spike(x, s), x, upstream)
    h = 1e-6
    fd = (s.primitive(x.detach() + h) - s.primitive(x.detach() - h)) / (2 * h)
    torch.testing.assert_close(grad, upstream * fd, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad, upstream * s.grad(x.detach()), rtol=0, atol=0)


def test_documented_shapes():
    x = torch.tensor([0.0, 0.1, -0.2], dtype=torch.float64)
    torch.testing.assert_close(FastSigmoid(alpha=100.0).grad(x), 1 / (100 * x.abs() + 1) ** 2)
    # unit-area shapes integrate to 1
    grid = torch.linspace(-60, 60, 2_000_001, dtype=torch.float64)
    for s in (Gaussian(), Arctan(alpha=50.0), Triangle()):
        area = torch.trapezoid(s.grad(grid), grid).item()
        assert abs(area - 1.0) < 2e-3, (s, area)


def test_primitive_gradcheck():
    x = torch.tensor([-0.7, -0.05, 0.03, 0.4], dtype=torch.float64, requires_grad=True)
    for s in (FastSigmoid(), Gaussian(), Arctan()):
        assert torch.autograd.gradcheck(s.primitive, (x,))


def test_registry_and_frozen():
    assert set(SURROGATES) == {"fast_sigmoid", "gaussian", "arctan", "triangle", "sigmoid"}
    assert make_surrogate("fast_sigmoid", 25.0) == FastSigmoid(alpha=25.0)
    with pytest.raises(ValueError, match="surrogate must be one of"):
        make_surrogate("nope")
    with pytest.raises(Exception):
        FastSigmoid().alpha = 3.0  # frozen
