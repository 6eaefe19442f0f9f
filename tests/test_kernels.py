"""The fused LIF scan (C kernel on CPU, PyTorch loop fallback) against the step-by-step autograd reference.

Tolerances: float64 values and gradients agree to 1e-12 (relative 1e-10); float32 spikes are
bit-identical (the C kernel is built with -ffp-contract=off and rounds each step like PyTorch) and
gradients agree to rtol 1e-4 / atol 1e-5 (summation order differs).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from spiketime.app.bench import saved_tensor_bytes
from spiketime.functional.li import LIState, li_sequence
from spiketime.functional.lif import LIFParams, LIFState, lif_sequence
from spiketime.kernels import cpu
from spiketime.kernels.lif_scan import (
    lif_scan,
    lif_scan_bwd_torch,
    lif_scan_fwd,
    lif_scan_fwd_torch,
)
from spiketime.surrogate import Arctan, FastSigmoid, Gaussian, Sigmoid, Triangle

CASES = list(itertools.product(["subtract", "zero"], [None, 5.0], [False, True], [False, True]))


def _inputs(T, B, N, dtype, syn, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, N, generator=g, dtype=dtype) * 0.9 + 1.3
    tau = 5.0 + 20.0 * torch.rand(N, generator=g, dtype=dtype)
    tau_syn = None if syn is None else syn + 3.0 * torch.rand(N, generator=g, dtype=dtype)
    st = [torch.randn(B, N, generator=g, dtype=dtype) * 0.5 for _ in range(3)]
    st[2] = (st[2] > 0).to(dtype)
    leaves = [x, tau, *st] + ([tau_syn] if tau_syn is not None else [])
    for t in leaves:
        t.requires_grad_(requires_grad)
    return x, tau, tau_syn, LIFState(*st), leaves


def _run(backend, x, tau, tau_syn, st, leaves, reset, detach, smooth, surrogate=FastSigmoid()):
    p = LIFParams(tau, tau_syn, 1.0, reset, surrogate, detach, smooth)
    s, fin, v = lif_sequence(x, p, 1.0, st, record_v=True, backend=backend)
    g = torch.Generator().manual_seed(1)
    ws, wv, wf = (
        torch.randn(s.shape, generator=g, dtype=x.dtype),
        torch.randn(s.shape, generator=g, dtype=x.dtype),
        torch.randn(s.shape[1:], generator=g, dtype=x.dtype),
    )
    loss = (s * ws).sum() + 0.1 * (v * wv).sum() + ((fin.v + fin.i + fin.s) * wf).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(t) if q is None else q for t, q in zip(leaves, grads)]
    return s.detach(), v.detach(), grads


@pytest.mark.parametrize("reset,syn,detach,smooth", CASES)
def test_fused_equals_reference_float64(reset, syn, detach, smooth):
    x, tau, tau_syn, st, leaves = _inputs(40, 3, 7, torch.float64, syn)
    ref = _run("reference", x, tau, tau_syn, st, leaves, reset, detach, smooth)
    fused = _run("fused", x, tau, tau_syn, st, leaves, reset, detach, smooth)
    assert smooth or ref[0].sum() > 10, "the test needs spikes"
    assert torch.equal(ref[0], fused[0]) if not smooth else torch.allclose(ref[0], fused[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(fused[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "surrogate",
    [FastSigmoid(3.0), Gaussian(0.4), Arctan(1.5), Triangle(0.7), Sigmoid(4.0)],
    ids=lambda s: type(s).__name__,
)
def test_every_surrogate_equals_reference(surrogate):
    x, tau, tau_syn, st, leaves = _inputs(25, 2, 6, torch.float64, 5.0, seed=3)
    for smooth in (False, True):
        ref = _run("reference", x, tau, tau_syn, st, leaves, "subtract", False, smooth, surrogate)
        fused = _run("fused", x, tau, tau_syn, st, leaves, "subtract", False, smooth, surrogate)
        torch.testing.assert_close(fused[0], ref[0], rtol=0, atol=1e-12)
        for a, b in zip(fused[2], ref[2]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("syn", [False, True])
def test_gradcheck_smooth_scan(reset, syn):
    """The hand-written backward pass against finite differences (smooth spikes make the scan differentiable)."""
    g = torch.Generator().manual_seed(2)
    T, B, N = 9, 2, 3
    d = dict(dtype=torch.float64)
    x = (torch.randn(T, B, N, generator=g, **d) + 0.8).requires_grad_()
    beta = (0.6 + 0.3 * torch.rand(N, generator=g, **d)).requires_grad_()
    alpha = (0.5 + 0.3 * torch.rand(N, generator=g, **d)).requires_grad_() if syn else None
    v0, i0, s0 = (torch.rand(B, N, generator=g, **d).requires_grad_() for _ in range(3))

    def f(x, beta, v0, i0, s0, *alpha_):
        s, v, i_T = lif_scan(x, beta, alpha_[0] if alpha_ else None, v0, i0, s0, 1.0, reset, Gaussian(0.5), smooth=True)
        return s, v, i_T

    args = (x, beta, v0, i0, s0) + ((alpha,) if syn else ())
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_float32_spikes_bit_identical_and_grads_close(reset):
    x, tau, tau_syn, st, leaves = _inputs(200, 8, 33, torch.float32, 5.0, seed=5)
    ref = _run("reference", x, tau, tau_syn, st, leaves, reset, False, False)
    fused = _run("fused", x, tau, tau_syn, st, leaves, reset, False, False)
    assert ref[0].sum() > 100
    assert torch.equal(ref[0], fused[0])
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-6, atol=1e-6)
    for a, b in zip(fused[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(cpu.library() is None, reason="no C compiler: the compiled scan is not available")
@pytest.mark.parametrize("reset,syn,detach,smooth", CASES)
def test_c_kernel_equals_torch_loop(reset, syn, detach, smooth):
    """The two CPU implementations of the fused op (the C kernel and its PyTorch fallback loop)."""
    g = torch.Generator().manual_seed(7)
    T, B, N = 30, 3, 70  # N > 64 crosses the C kernel's chunk boundary
    d = dict(dtype=torch.float64)
    x = torch.randn(T, B, N, generator=g, **d) + 0.5
    beta = 0.5 + 0.45 * torch.rand(N, generator=g, **d)
    alpha = None if syn is None else 0.4 + 0.5 * torch.rand(N, generator=g, **d)
    v0, i0 = torch.randn(B, N, generator=g, **d), torch.randn(B, N, generator=g, **d)
    s0 = (torch.rand(B, N, generator=g, **d) > 0.5).to(torch.float64)
    code = {"subtract": 0, "zero": 1}[reset]
    fw = (x, beta, alpha, v0, i0, s0, 1.0, code, "arctan", 2.0, smooth)
    a, b = cpu.lif_scan_fwd_c(*fw), lif_scan_fwd_torch(*fw)
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, rtol=1e-12, atol=1e-12)
    g_s, g_v, g_iT = (
        torch.randn(T, B, N, generator=g, **d),
        torch.randn(T, B, N, generator=g, **d),
        torch.randn(B, N, **d),
    )
    i_all = a[2] if alpha is not None else x
    bw = (g_s, g_v, g_iT, a[1], i_all, beta, alpha, v0, i0, s0, 1.0, code, "arctan", 2.0, smooth, detach)
    for u, w in zip(cpu.lif_scan_bwd_c(*bw), lif_scan_bwd_torch(*bw)):
        torch.testing.assert_close(u, w, rtol=1e-10, atol=1e-12)


def test_leaky_integrator_fused_equals_reference():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([3.0, 7.0, 15.0, 40.0], dtype=torch.float64, requires_grad=True)
    v0 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(30, 3, 4, generator=g, dtype=torch.float64)
    res = []
    for backend in ("reference", "fused"):
        v, st = li_sequence(x, tau, 0.5, LIState(v0), backend=backend)
        res.append((v.detach(), *torch.autograd.grad((v * w).sum() + st.v.sum(), [x, tau, v0])))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_opcheck_custom_op_registration():
    """Schema, fake (meta) implementation and autograd registration of the custom op, as torch.compile needs them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 3, generator=g, requires_grad=True)
    beta = torch.full((3,), 0.9, requires_grad=True)
    alpha = torch.full((3,), 0.7, requires_grad=True)
    z = torch.zeros(2, 3)
    for a in (alpha, None):
        torch.library.opcheck(
            lif_scan_fwd,
            (x, beta, a, z, z, z, 1.0, 0, "fast_sigmoid", 5.0, False, False),
            test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
        )


def test_torch_compile_traces_the_fused_scan():
    x, tau, tau_syn, st, leaves = _inputs(20, 2, 5, torch.float32, 5.0, seed=8)
    p = LIFParams(tau, tau_syn, 1.0, "subtract", FastSigmoid())

    def f(x):
        s, fin = lif_sequence(x, p, 1.0)
        return s.sum(0) + fin.v

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    out_c, out_e = compiled(x), f(x)
    torch.testing.assert_close(out_c, out_e)
    (gc,) = torch.autograd.grad(out_c.sum(), x)
    (ge,) = torch.autograd.grad(out_e.sum(), x)
    torch.testing.assert_close(gc, ge)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_computes_in_float32(dtype):
    """bf16/fp16 currents (as autocast gives them): spikes in the input dtype, state in float32, equal to a
    float32 run on the same (rounded) input."""
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(50, 4, 16, generator=g) + 0.7).to(dtype).requires_grad_()
    tau = torch.full((16,), 10.0, requires_grad=True)
    p = LIFParams(tau, None, 1.0, "subtract", FastSigmoid())
    s, fin = lif_sequence(x, p, 1.0)
    s32, fin32 = lif_sequence(x.detach().float(), p, 1.0)
    assert s.dtype == dtype
    assert torch.equal(s.float(), s32)
    (s.float().sum() + fin.v.float().sum()).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def test_cpu_kernel_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SPIKETIME_CPU_KERNEL", "0")
    cpu.library.cache_clear()
    try:
        assert cpu.library() is None
        x, tau, tau_syn, st, leaves = _inputs(15, 2, 4, torch.float64, None)
        ref = _run("reference", x, tau, tau_syn, st, leaves, "subtract", False, False)
        fused = _run("fused", x, tau, tau_syn, st, leaves, "subtract", False, False)
        assert torch.equal(ref[0], fused[0])
    finally:
        monkeypatch.delenv("SPIKETIME_CPU_KERNEL")
        cpu.library.cache_clear()


def test_bad_backend_is_one_line_error():
    x = torch.zeros(3, 1, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        lif_sequence(x, LIFParams(torch.tensor(10.0)), 1.0, backend="cuda")


@pytest.mark.parametrize("syn", [None, 5.0])
def test_fixed_time_constants_save_no_currents(syn):
    """With fixed time constants the scan keeps only ``v`` for its backward pass, and the gradients are unchanged."""
    x, tau, tau_syn, st, _ = _inputs(50, 4, 8, torch.float64, syn, requires_grad=False)
    x.requires_grad_()
    leaves = [x]
    p_fixed = LIFParams(tau, tau_syn, 1.0, "subtract", FastSigmoid())
    ref = _run("reference", x, tau, tau_syn, st, leaves, "subtract", False, False)
    fused = _run("fused", x, tau, tau_syn, st, leaves, "subtract", False, False)
    torch.testing.assert_close(fused[2][0], ref[2][0], rtol=1e-10, atol=1e-12)
    learnt = tau.clone().requires_grad_()
    fixed = saved_tensor_bytes(lambda: lif_sequence(x, p_fixed, 1.0), exclude=[])
    learning = saved_tensor_bytes(lambda: lif_sequence(x, p_fixed._replace(tau_mem=learnt), 1.0), exclude=[])
    current = x.numel() * x.element_size()  # the [T,B,N] currents; the rest is the [N] decay's own graph
    assert current <= learning - fixed <= current + 1024
