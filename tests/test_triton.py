"""The Triton kernels (:mod:`spiketime.kernels.triton_lif`, :mod:`spiketime.kernels.triton_delay`) against
their references.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, which must be set
before ``triton`` is imported), in one subprocess that runs this file as a script (``python
tests/test_triton.py WORKER``) over every case and reports a JSON line per case; the tests below read
those reports. The references are ``lif_scan._fwd_any`` / ``_bwd_any`` (the compiled CPU scan, or the
PyTorch loop) and :func:`spiketime.functional.delay.axonal_delay` differentiated by autograd.

Tolerances. Step spikes: ``s, v, i`` bitwise equal to the compiled CPU scan (same operations, no FMA;
with the PyTorch loop instead, whose ``addcmul`` is fused, within the float tolerance). Otherwise,
float32 compute (fp32, or bf16/fp16 ``x`` with fp32 ``beta``): ``rtol=1e-5, atol=1e-6 * max(1, max|ref|)``
(the surrogates' ``exp``/``erf``/``atan`` differ from libm by an ulp or so, and the sums over ``t, b``
are reordered), one ulp for values stored in 16 bits (smooth ``s`` in bf16: the interpreter rounds
float32 to bf16 by truncation, the GPU to nearest); float64: ``rtol=1e-10, atol=1e-12 * max(1,
max|ref|)``; bf16 compute dtype (``x`` and ``beta`` both bf16: the kernel computes in float32 and rounds
the state per step, the reference here is float32): smooth spikes only, ``rtol=atol=3e-2 * max(1,
max|ref|)``. The CUDA tests at the end (skipped without a GPU) run the compiled kernels at T=500, B=64,
N=256 against the CPU references: step-spike forward bitwise, the rest ``rtol=1e-4`` (``1e-2`` for
16-bit outputs).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

SURS = ("fast_sigmoid", "gaussian", "arctan", "triangle", "sigmoid")
SCALES = {"fast_sigmoid": 5.0, "gaussian": 0.3, "arctan": 2.0, "triangle": 0.5, "sigmoid": 5.0}
T_, B_, N_ = 12, 3, 37  # B*N = 111 crosses the BLOCK=64 boundary; T=12 has full chunks and a remainder


def _lif_cases() -> dict[str, dict]:
    cases = {}
    # every (reset, smooth, surrogate) twice, with (synapse, detach_reset) and their complement: half of
    # the full product, every option against every other
    for reset in (0, 1, 2):
        for smooth in (False, True):
            for si, sur in enumerate(SURS):
                for flip in (False, True):
                    syn = ((reset + si) % 2 == 0) != flip
                    detach = ((reset + si // 2 + smooth) % 2 == 1) != flip
                    cases[
                        f"r{reset}-{'syn' if syn else 'nosyn'}-{'smooth' if smooth else 'step'}-"
                        f"{'det' if detach else 'nodet'}-{sur}"
                    ] = dict(reset=reset, syn=syn, smooth=smooth, detach=detach, sur=sur)
    for sur in ("fast_sigmoid", "gaussian"):  # leaky integrator: theta = inf, reset "none"
        for syn in (False, True):
            cases[f"li-inf-{'syn' if syn else 'nosyn'}-{sur}"] = dict(
                reset=2, syn=syn, smooth=False, detach=False, sur=sur, theta=math.inf
            )
    cases["f64-r0-syn-smooth-arctan"] = dict(
        reset=0, syn=True, smooth=True, detach=False, sur="arctan", dtype="float64"
    )
    cases["f64-r1-nosyn-step-gaussian"] = dict(
        reset=1, syn=False, smooth=False, detach=False, sur="gaussian", dtype="float64"
    )
    cases["bf16x-r1-syn-step-fast_sigmoid"] = dict(
        reset=1, syn=True, smooth=False, detach=False, sur="fast_sigmoid", dtype="bfloat16"
    )
    cases["bf16x-r0-nosyn-smooth-triangle"] = dict(
        reset=0, syn=False, smooth=True, detach=True, sur="triangle", dtype="bfloat16"
    )
    cases["f16x-r0-syn-step-arctan"] = dict(
        reset=0, syn=True, smooth=False, detach=False, sur="arctan", dtype="float16"
    )
    cases["bf16all-r0-syn-smooth-fast_sigmoid"] = dict(
        reset=0, syn=True, smooth=True, detach=False, sur="fast_sigmoid", dtype="bfloat16", beta_dtype="bfloat16"
    )
    # unused gradients (empty g_s / g_v: zero, not read) and fixed decays (empty i_all: no current read)
    cases["nogs-r0-syn-step-gaussian"] = dict(
        reset=0, syn=True, smooth=False, detach=False, sur="gaussian", empty=("g_s",)
    )
    cases["nogv-nodec-r1-syn-smooth-arctan"] = dict(
        reset=1, syn=True, smooth=True, detach=False, sur="arctan", empty=("g_v", "i_all")
    )
    cases["nodec-r1-nosyn-step-triangle"] = dict(
        reset=1, syn=False, smooth=False, detach=False, sur="triangle", empty=("i_all",)
    )
    cases["nogs-nogv-r0-nosyn-step-fast_sigmoid"] = dict(
        reset=0, syn=False, smooth=False, detach=False, sur="fast_sigmoid", empty=("g_s", "g_v")
    )
    cases["T1-r1-syn-step-gaussian"] = dict(reset=1, syn=True, smooth=False, detach=False, sur="gaussian", T=1)
    cases["T9-r0-syn-step-triangle"] = dict(reset=0, syn=True, smooth=False, detach=False, sur="triangle", T=9)
    cases["T0-r0-syn-step-triangle"] = dict(reset=0, syn=True, smooth=False, detach=False, sur="triangle", T=0)
    return cases


def _delay_cases() -> dict[str, dict]:
    cases = {}
    for mode in ("interp", "gaussian"):
        cases[f"{mode}-f32"] = dict(mode=mode)
        cases[f"{mode}-short"] = dict(mode=mode, T=3)  # T < taps - 1: the new buffer keeps part of the old
        cases[f"{mode}-nobuf"] = dict(mode=mode, buffer=False)
        cases[f"{mode}-f64"] = dict(mode=mode, dtype="float64")
        cases[f"{mode}-bf16"] = dict(mode=mode, dtype="bfloat16")
    cases["gaussian-taps1"] = dict(mode="gaussian", dt=1.0, dmax=0.0, sigma=1e-10)  # taps = 1: an empty buffer
    return cases


LIF_CASES = _lif_cases()
DELAY_CASES = _delay_cases()


# ---------------------------------------------------------------------------------------------
# Worker (runs in the subprocess, with TRITON_INTERPRET=1)
# ---------------------------------------------------------------------------------------------


def _c_kernel() -> bool:
    from spiketime.kernels import cpu

    return cpu.library() is not None


def _tols(dtype: torch.dtype, ref: torch.Tensor, lowp: bool = False) -> dict:
    scale = max(1.0, float(ref.detach().abs().max())) if ref.numel() else 1.0
    if lowp:
        return dict(rtol=3e-2, atol=3e-2 * scale)
    if ref.dtype in (torch.bfloat16, torch.float16):
        # a value computed in float32 and stored in 16 bits: one ulp (the interpreter rounds float32 -> bf16
        # by truncation, the GPU to nearest)
        return dict(rtol=8e-3, atol=4e-3 * scale)
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12 * scale)
    return dict(rtol=1e-5, atol=1e-6 * scale)


def _compare(name: str, got: torch.Tensor, ref: torch.Tensor, exact: bool = False, lowp: bool = False) -> None:
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != {ref.dtype}"
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert not got.isnan().any() or ref.isnan().any(), f"{name}: NaN"
    if exact:
        assert torch.equal(got, ref), f"{name}: not equal, max diff {(got.double() - ref.double()).abs().max()}"
    else:
        torch.testing.assert_close(got, ref, msg=lambda m: f"{name}: {m}", **_tols(ref.dtype, ref, lowp))


def _lif_case(c: dict, gen: torch.Generator) -> None:
    from spiketime.kernels import triton_lif as TL
    from spiketime.kernels.lif_scan import _bwd_any, _fwd_any

    dt = getattr(torch, c.get("dtype", "float32"))
    bdt = getattr(torch, c.get("beta_dtype", "float32" if dt != torch.float64 else "float64"))
    T, B, N = c.get("T", T_), B_, N_
    syn, reset, sur = c["syn"], c["reset"], c["sur"]
    theta = c.get("theta", 1.0)
    lowp = bdt in (torch.bfloat16, torch.float16)

    def rnd(*shape, scale=1.0, shift=0.0, dtype=torch.float64):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).to(dtype)

    x = rnd(T, B, N, scale=0.8, shift=0.35, dtype=dt)
    beta = (torch.rand(N, generator=gen, dtype=torch.float64) * 0.5 + 0.45).to(bdt)
    alpha = (torch.rand(N, generator=gen, dtype=torch.float64) * 0.6 + 0.3).to(bdt) if syn else None
    ct = torch.promote_types(dt, bdt)
    v0 = rnd(B, N, scale=0.6, dtype=ct)
    i0 = rnd(B, N, scale=0.5, dtype=ct) if syn else torch.zeros(B, N, dtype=ct)
    s0 = (torch.rand(B, N, generator=gen) > 0.6).to(ct)
    args = (x, beta, alpha, v0, i0, s0, theta, reset, sur, SCALES[sur], c["smooth"], c["detach"])
    if lowp:  # the reference: the same inputs, computed in float32 (the kernel's arithmetic)
        up = lambda t: None if t is None else t.float()  # noqa: E731
        ref = _fwd_any(up(x), up(beta), up(alpha), up(v0), up(i0), up(s0), *args[6:])
        ref = (ref[0].to(dt), *(r.to(ct) for r in ref[1:]))
    else:
        ref = _fwd_any(*args)
    got = TL.lif_scan_fwd_triton(*args)
    # step spikes: the operations and roundings of lif_scan.c (the PyTorch loop, used when the C kernel cannot
    # be built, fuses its addcmul: one rounding fewer)
    exact = not c["smooth"] and not lowp and _c_kernel()
    for name, g, r in zip(("s", "v", "i", "i_T"), got, ref):
        _compare(name, g, r, exact=exact, lowp=lowp)
    g_s = rnd(T, B, N, dtype=dt)
    g_v = rnd(T, B, N, scale=0.3, dtype=ct)
    g_iT = rnd(B, N, scale=0.5, dtype=ct)
    i_all = ref[2] if syn else x
    empty = c.get("empty", ())
    g_s, g_v, i_all = (
        t.new_empty(0) if name in empty else t for name, t in (("g_s", g_s), ("g_v", g_v), ("i_all", i_all))
    )
    bargs = (g_s, g_v, g_iT, ref[1], i_all, beta, alpha, v0, i0, s0, *args[6:])
    if lowp:
        up2 = lambda t: None if t is None else t.float()  # noqa: E731
        rb = _bwd_any(*(up2(t) if torch.is_tensor(t) else t for t in bargs[:10]), *bargs[10:])
        rb = tuple(r.to(ct) for r in rb)
    else:
        rb = _bwd_any(*bargs)
    gb = TL.lif_scan_bwd_triton(*bargs)
    for name, g, r in zip(("g_x", "g_beta", "g_alpha", "g_v0", "g_i0", "g_s0"), gb, rb):
        _compare(name, g, r, lowp=lowp)


def _delay_case(c: dict, gen: torch.Generator) -> None:
    from spiketime.functional.delay import DelayState, axonal_delay, delay_taps
    from spiketime.kernels.triton_delay import axonal_delay_triton

    dt_ms, dmax, sigma = c.get("dt", 0.5), c.get("dmax", 3.0), c.get("sigma", 0.6)
    mode = c["mode"]
    dtype = getattr(torch, c.get("dtype", "float32"))
    T, B, N = c.get("T", T_), B_, N_
    taps = delay_taps(dmax, dt_ms, mode, sigma)
    x = torch.randn(T, B, N, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    ddt = torch.float64 if dtype == torch.float64 else torch.float32
    D = torch.rand(N, generator=gen, dtype=ddt) * ((taps - 1) * dt_ms + 1.0) - 0.5  # some clamped below/above
    special = [0.0, dt_ms, 2.5 * dt_ms, (taps - 1) * dt_ms, dmax, -0.25]  # integers, window edge, half-steps
    D[: len(special)] = torch.tensor(special, dtype=ddt)
    D.requires_grad_(True)
    buf = None
    if c.get("buffer", True):
        buf = torch.randn(taps - 1, B, N, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    y, st = axonal_delay(x, D, dt_ms, taps, mode, sigma, state=None if buf is None else DelayState(buf))
    y2, nb2 = axonal_delay_triton(x, D, dt_ms, taps, mode, sigma, buf)
    lowp = dtype == torch.bfloat16
    _compare("y", y2, y, exact=mode == "gaussian", lowp=lowp)
    _compare("new_buffer", nb2, st.buffer, exact=True)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(dtype)
    gnb = torch.randn(st.buffer.shape, generator=gen, dtype=torch.float64).to(dtype)
    ins = [x, D] + ([buf] if buf is not None else [])
    ref = torch.autograd.grad((y.double() * gy).sum() + (st.buffer.double() * gnb).sum(), ins)
    got = torch.autograd.grad((y2.double() * gy).sum() + (nb2.double() * gnb).sum(), ins)
    for name, g, r in zip(("g_x", "g_delays", "g_buffer"), got, ref):
        _compare(name, g, r, exact=mode == "gaussian" and name != "g_delays" and not lowp, lowp=lowp)


def _worker() -> None:
    import traceback

    from spiketime.kernels import triton_delay, triton_lif

    triton_lif.set_launch_config((64, 4, 5), (64, 4, 4))  # fwd: 2 chunks + 2 steps; bwd: 2 chunks + 4 steps
    triton_delay.LAUNCH.update(tt=8, block=64)
    torch.manual_seed(0)
    for kind, cases, fn in (("lif", LIF_CASES, _lif_case), ("delay", DELAY_CASES, _delay_case)):
        for i, (name, c) in enumerate(cases.items()):
            gen = torch.Generator().manual_seed(1000 + i)
            try:
                fn(c, gen)
                res = {"ok": True}
            except Exception as e:  # reported to the test of this case
                res = {"ok": False, "error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc(limit=4)}
            print("RESULT " + json.dumps({"kind": kind, "name": name, **res}), flush=True)


# ---------------------------------------------------------------------------------------------
# Tests (the interpreter run, once per session)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreted() -> dict:
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        TRITON_INTERPRET="1",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, __file__, "WORKER"], env=env, capture_output=True, text=True, timeout=600, cwd=root
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT ") :])
            results[(r["kind"], r["name"])] = r
    if not results:
        pytest.fail(f"interpreter worker failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    results["stderr"] = proc.stderr[-4000:]
    return results


def _check(results: dict, kind: str, name: str) -> None:
    r = results.get((kind, name))
    if r is None:
        pytest.fail(f"no result for {kind} {name} (worker crashed?):\n{results['stderr']}")
    assert r["ok"], f"{r['error']}\n{r['tb']}"


@pytest.mark.parametrize("name", list(LIF_CASES))
def test_lif_scan_interpreted(interpreted, name):
    _check(interpreted, "lif", name)


@pytest.mark.parametrize("name", list(DELAY_CASES))
def test_axonal_delay_interpreted(interpreted, name):
    _check(interpreted, "delay", name)


def test_surrogate_helpers_are_generated_from_the_table():
    """``_sg_grad``/``_sg_prim`` are built from :data:`spiketime.surrogate.TABLE`: one branch per entry with its
    Triton snippet (the interpreted cases above check their values against the C kernel's)."""
    import linecache

    from spiketime.kernels import triton_lif
    from spiketime.surrogate import TABLE

    for fn, kind in ((triton_lif._sg_grad, "grad"), (triton_lif._sg_prim, "prim")):
        src = "".join(linecache.getlines(fn.fn.__code__.co_filename))
        assert src.startswith(f"def _sg_{kind}(x, k, SUR: tl.constexpr):")
        for entry in TABLE.values():
            assert f"SUR == {entry.code}:  # {entry.name}" in src
            assert all(line in src for line in getattr(entry, f"triton_{kind}").splitlines())
    assert set(SURS) == set(TABLE)


def test_lif_cases_cover_every_option():
    opts = ("reset", "syn", "smooth", "detach", "sur")
    values = {"reset": (0, 1, 2), "syn": (False, True), "smooth": (False, True), "detach": (False, True), "sur": SURS}
    seen = {(a, c[a], b, c[b]) for c in LIF_CASES.values() for a in opts for b in opts if a != b}
    assert all((a, u, b, w) in seen for a in opts for b in opts if a != b for u in values[a] for w in values[b])


# ---------------------------------------------------------------------------------------------
# CUDA: the compiled kernels at realistic sizes
# ---------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU (compiled Triton kernels)",
)


GPU_SHAPE = (500, 64, 256)  # T, B, N


def _gpu_tol(ref: torch.Tensor, rel: float) -> dict:
    return dict(rtol=rel, atol=rel * max(1.0, float(ref.detach().abs().max()) if ref.numel() else 1.0))


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize(
    "reset,syn,smooth,sur",
    [
        (0, True, False, "fast_sigmoid"),
        (1, False, False, "gaussian"),
        (2, True, False, "arctan"),
        (0, False, True, "triangle"),
        (1, True, True, "arctan"),
        (0, True, True, "gaussian"),
    ],
)
def test_lif_scan_cuda(dtype, reset, syn, smooth, sur):
    from spiketime.kernels import triton_lif as TL
    from spiketime.kernels.lif_scan import _bwd_any, _fwd_any

    T, B, N = GPU_SHAPE
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(T, B, N, generator=g) * 0.8 + 0.35).to(dt)
    beta = torch.rand(N, generator=g) * 0.5 + 0.45
    alpha = torch.rand(N, generator=g) * 0.6 + 0.3 if syn else None
    v0, i0 = torch.randn(B, N, generator=g) * 0.5, torch.randn(B, N, generator=g) * 0.5
    s0 = (torch.rand(B, N, generator=g) > 0.6).float()
    rest = (1.0, reset, sur, SCALES[sur], smooth, False)
    cuda = lambda t: None if t is None else t.cuda()  # noqa: E731
    ref = _fwd_any(x, beta, alpha, v0, i0, s0, *rest)
    got = TL.lif_scan_fwd_triton(*map(cuda, (x, beta, alpha, v0, i0, s0)), *rest)
    torch.cuda.synchronize()
    if not smooth and _c_kernel():  # no special function, no FMA: bitwise equal to the C scan
        assert torch.equal(got[0].cpu(), ref[0]) and torch.equal(got[1].cpu(), ref[1])
    else:  # s in a 16-bit dtype: one ulp of it
        for r, o in zip(ref, got):
            torch.testing.assert_close(
                o.cpu(), r, **_gpu_tol(r, 1e-2 if r.dtype in (torch.bfloat16, torch.float16) else 1e-4)
            )
    g_s = torch.randn(T, B, N, generator=g).to(dt)
    g_v = torch.randn(T, B, N, generator=g) * 0.3
    g_iT = torch.randn(B, N, generator=g)
    i_all = ref[2] if syn else x
    bargs = (g_s, g_v, g_iT, ref[1], i_all, beta, alpha, v0, i0, s0)
    rb = _bwd_any(*bargs, *rest)
    gb = TL.lif_scan_bwd_triton(*map(cuda, bargs), *rest)
    for r, o in zip(rb, gb):
        torch.testing.assert_close(o.cpu(), r, **_gpu_tol(r, 1e-4))


@needs_cuda
@pytest.mark.parametrize("empty", [("g_s",), ("g_v", "i_all")])
def test_lif_scan_cuda_unused_gradients(empty):
    """Empty ``g_s``/``g_v`` (zero, not read) and empty ``i_all`` (decays need no gradient)."""
    from spiketime.kernels import triton_lif as TL
    from spiketime.kernels.lif_scan import _bwd_any, _fwd_any

    T, B, N = GPU_SHAPE
    g = torch.Generator().manual_seed(11)
    x = torch.randn(T, B, N, generator=g) * 0.8 + 0.35
    beta, alpha = torch.rand(N, generator=g) * 0.5 + 0.45, torch.rand(N, generator=g) * 0.6 + 0.3
    v0, i0, s0 = torch.randn(B, N, generator=g) * 0.5, torch.zeros(B, N), torch.zeros(B, N)
    rest = (1.0, 1, "gaussian", 0.3, False, False)
    _, v, i, _ = _fwd_any(x, beta, alpha, v0, i0, s0, *rest)
    grads = {"g_s": torch.randn(T, B, N, generator=g), "g_v": torch.randn(T, B, N, generator=g), "i_all": i}
    g_s, g_v, i_all = (grads[k].new_empty(0) if k in empty else grads[k] for k in ("g_s", "g_v", "i_all"))
    bargs = (g_s, g_v, torch.randn(B, N, generator=g), v, i_all, beta, alpha, v0, i0, s0)
    rb = _bwd_any(*bargs, *rest)
    gb = TL.lif_scan_bwd_triton(*(t.cuda() for t in bargs), *rest)
    for r, o in zip(rb, gb):
        torch.testing.assert_close(o.cpu(), r, **_gpu_tol(r, 1e-4))


@needs_cuda
def test_lif_scan_cuda_custom_op_and_leaky_integrator():
    """Through the registered op (autograd included) and with theta = inf (no NaN)."""
    from spiketime.kernels.lif_scan import lif_scan_fwd

    T, B, N = GPU_SHAPE
    x = torch.randn(T, B, N, device="cuda", requires_grad=True)
    beta = torch.full((N,), 0.9, device="cuda", requires_grad=True)
    z = torch.zeros(B, N, device="cuda")
    s, v, _, i_T = lif_scan_fwd(x, beta, None, z, z, z, math.inf, 2, "fast_sigmoid", 5.0, False, False)
    (v.sum() + s.sum() + i_T.sum()).backward()
    assert s.abs().sum() == 0 and torch.isfinite(v).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(beta.grad).all()
    xc, bc = x.detach().cpu().requires_grad_(True), beta.detach().cpu().requires_grad_(True)
    zc = z.cpu()
    s2, v2, _, i2 = lif_scan_fwd(xc, bc, None, zc, zc, zc, math.inf, 2, "fast_sigmoid", 5.0, False, False)
    (v2.sum() + s2.sum() + i2.sum()).backward()
    torch.testing.assert_close(v.detach().cpu(), v2.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.cpu(), xc.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(beta.grad.cpu(), bc.grad, **_gpu_tol(bc.grad, 1e-4))


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("mode", ["interp", "gaussian"])
def test_axonal_delay_cuda(mode, dtype):
    """Against the reference on the CPU (cuDNN's float32 convolutions may run in TF32)."""
    from spiketime.functional.delay import DelayState, axonal_delay, delay_taps
    from spiketime.kernels.triton_delay import axonal_delay_triton

    T, B, N = GPU_SHAPE
    dt_ms, dmax, sigma = 1.0, 20.0, 1.5
    taps = delay_taps(dmax, dt_ms, mode, sigma)
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, N, generator=g).to(dt).requires_grad_(True)
    buf = torch.randn(taps - 1, B, N, generator=g).to(dt).requires_grad_(True)
    D = (torch.rand(N, generator=g) * (dmax + 2.0) - 1.0).requires_grad_(True)
    D.data[:3] = torch.tensor([0.0, 5.0, dmax])
    y, st = axonal_delay(x, D, dt_ms, taps, mode, sigma, state=DelayState(buf))
    xc, bc, Dc = (t.detach().cuda().requires_grad_(True) for t in (x, buf, D))
    y2, nb2 = axonal_delay_triton(xc, Dc, dt_ms, taps, mode, sigma, bc)
    lowp = dt != torch.float32
    torch.testing.assert_close(y2.cpu(), y.detach(), **_gpu_tol(y.float(), 1e-2 if lowp else 1e-5))
    assert torch.equal(nb2.cpu(), st.buffer.detach())
    gy = torch.randn(y.shape, generator=g).to(dt)
    ref = torch.autograd.grad((y * gy).sum(), [x, D, buf])
    got = torch.autograd.grad((y2 * gy.cuda()).sum(), [xc, Dc, bc])
    for name, r, o in zip(("g_x", "g_delays", "g_buffer"), ref, got):
        torch.testing.assert_close(o.cpu(), r, **_gpu_tol(r.float(), 2e-2 if lowp else 1e-4), msg=name)


if __name__ == "__main__" and sys.argv[1:] == ["WORKER"]:
    _worker()
