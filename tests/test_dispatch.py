"""One kernel dispatch point (spiketime.kernels.select / describe) and the surrogate table the kernels use.

Every op (lif, li, axonal_delay, synaptic_delay, linear) asks ``kernels.select`` which implementation runs;
``backend="reference"`` and ``"auto"``/``"fused"`` give the same values and gradients (float64); ``"fused"``
without a fused kernel raises one line, for every op alike; ``describe()`` reports the real choices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from conftest import one_line
from spiketime import kernels, surrogate
from spiketime.functional.delay import DelayState, axonal_delay, delay_taps, synaptic_delay_linear
from spiketime.functional.li import LIState, li_sequence
from spiketime.functional.lif import LIFParams, LIFState, lif_sequence
from spiketime.kernels import cpu, sparse
from spiketime.nn.layers import DelayedLinear
from spiketime.surrogate import TABLE, Arctan, SurrogateCode

F64 = torch.float64
C = cpu.library() is not None  # the C compiler works here
LIF_CPU = "c" if C else "torch-loop"


@pytest.fixture
def no_c_kernel(monkeypatch):
    """The compiled CPU kernels switched off (SPIKETIME_CPU_KERNEL=0) for one test, reloaded after it."""
    monkeypatch.setenv("SPIKETIME_CPU_KERNEL", "0")
    cpu.library.cache_clear()
    yield
    cpu.library.cache_clear()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grads(out: torch.Tensor, leaves: list[torch.Tensor], seed: int = 99) -> list[torch.Tensor]:
    w = torch.randn(out.shape, generator=_gen(seed), dtype=out.dtype)
    return list(torch.autograd.grad((out * w).sum(), leaves))


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- one runner per op


def _run_lif(backend: str) -> list[torch.Tensor]:
    g = _gen(1)
    x = (torch.randn(30, 3, 5, generator=g, dtype=F64) * 0.9 + 1.2).requires_grad_()
    tau = (5.0 + 20.0 * torch.rand(5, generator=g, dtype=F64)).requires_grad_()
    tau_syn = (3.0 + 3.0 * torch.rand(5, generator=g, dtype=F64)).requires_grad_()
    v0 = torch.randn(3, 5, generator=g, dtype=F64).requires_grad_()
    p = LIFParams(tau, tau_syn, 1.0, "subtract", Arctan(1.5))
    s, fin, v = lif_sequence(
        x,
        p,
        1.0,
        LIFState(v0, torch.zeros(3, 5, dtype=F64), torch.zeros(3, 5, dtype=F64)),
        record_v=True,
        backend=backend,
    )
    assert s.sum() > 10, "the test needs spikes"
    out = torch.cat([s, 0.1 * v, fin.v.unsqueeze(0)])
    return [out.detach(), *_grads(out, [x, tau, tau_syn, v0])]


def _run_li(backend: str) -> list[torch.Tensor]:
    g = _gen(2)
    x = torch.randn(25, 2, 4, generator=g, dtype=F64, requires_grad=True)
    tau = torch.tensor([3.0, 7.0, 15.0, 40.0], dtype=F64, requires_grad=True)
    v0 = torch.randn(2, 4, generator=g, dtype=F64, requires_grad=True)
    v, st = li_sequence(x, tau, 0.5, LIState(v0), backend=backend)
    out = torch.cat([v, st.v.unsqueeze(0)])
    return [out.detach(), *_grads(out, [x, tau, v0])]


def _run_axonal(backend: str, mode: str = "interp") -> list[torch.Tensor]:
    g = _gen(3)
    dt, dmax, sigma = 0.5, 3.0, 0.6
    taps = delay_taps(dmax, dt, mode, sigma)
    x = torch.rand(14, 2, 6, generator=g, dtype=F64, requires_grad=True)
    buf = torch.rand(taps - 1, 2, 6, generator=g, dtype=F64, requires_grad=True)
    d = torch.tensor([0.0, 0.3, 1.0, 2.7, 3.5, 9.0], dtype=F64, requires_grad=True)  # 9 ms: clamped
    y, st = axonal_delay(x, d, dt, taps, mode, sigma, state=DelayState(buf), backend=backend)
    out = torch.cat([y, st.buffer])
    return [out.detach(), *_grads(out, [x, buf, d])]


def _run_synaptic(backend: str) -> list[torch.Tensor]:
    g = _gen(4)
    dt, taps = 1.0, 5
    x = torch.rand(12, 2, 4, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    d = (torch.rand(3, 4, generator=g, dtype=F64) * 3.0).requires_grad_()
    y, _ = synaptic_delay_linear(x, w, d, dt, taps, "interp", backend=backend)
    return [y.detach(), *_grads(y, [x, w, d])]


def _spikes(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    g = _gen(seed)
    return (torch.rand(shape, generator=g) < density).to(F64) * torch.randint(1, 3, shape, generator=g).to(F64)


def _run_linear(backend: str, density: float = 0.02) -> list[torch.Tensor]:
    x = _spikes((40, 3, 50), density, 5).requires_grad_()
    w = torch.randn(7, 50, generator=_gen(6), dtype=F64, requires_grad=True)
    b = torch.randn(7, generator=_gen(7), dtype=F64, requires_grad=True)
    y = sparse.linear(x, w, b, backend=backend)
    return [y.detach(), *_grads(y, [x, w, b])]


RUNNERS = {
    "lif": _run_lif,
    "li": _run_li,
    "axonal_delay": _run_axonal,
    "synaptic_delay": _run_synaptic,
    "linear": _run_linear,
}


# --------------------------------------------------------------------------- describe() and the record


def test_describe_is_json_and_reports_the_real_choice():
    d = kernels.describe()
    assert json.loads(json.dumps(d)) == d  # plain JSON types only
    assert d["c_compiled"] is C and d["triton"] is kernels.triton_available()
    assert d["backends"] == ["auto", "fused", "reference"]
    assert set(kernels.OPS) <= set(d) and {"fused", "ops_used"} <= set(d)
    assert d["lif"]["cpu"] == d["li"]["cpu"] == LIF_CPU
    assert d["axonal_delay"]["cpu"] == ("c" if C else "gather")
    assert d["fused"]["axonal_delay"]["cpu"] == ("c" if C else None)
    assert d["synaptic_delay"] == {"cpu": "reference", "cuda": "reference"}
    assert d["fused"]["synaptic_delay"] == {"cpu": None, "cuda": None}
    assert d["linear"] == {"cpu": "event", "cuda": "reference"}
    cuda_scan = "triton" if kernels.triton_available() else "torch-loop"
    assert d["lif"]["cuda"] == d["fused"]["li"]["cuda"] == cuda_scan


def test_ops_used_records_what_ran():
    kernels.reset_ops_used()
    assert kernels.describe()["ops_used"] == {}
    for backend in ("reference", "auto"):
        _run_lif(backend)
        _run_li(backend)
        _run_axonal(backend)
        _run_synaptic(backend)
    _run_linear("auto", density=0.02)  # sparse: the event kernel
    _run_linear("auto", density=0.5)  # dense: the matmul
    used = kernels.describe()["ops_used"]
    assert used == {
        "lif": {"cpu": ["reference", LIF_CPU]},
        "li": {"cpu": ["reference", LIF_CPU]},
        "axonal_delay": {"cpu": ["reference", "c" if C else "gather"]},
        "synaptic_delay": {"cpu": ["reference"]},
        "linear": {"cpu": ["event", "reference"]},
    }
    json.dumps(used)
    kernels.reset_ops_used()
    assert kernels.describe()["ops_used"] == {}


def test_ops_used_recorded_under_torch_compile():
    """select() runs at trace time inside a compiled function (no graph break) and its record is replayed."""
    x = torch.randn(10, 2, 3) + 1.0
    p = LIFParams(torch.full((3,), 10.0), None, 1.0, "subtract", Arctan())

    def f(x):
        s, fin = lif_sequence(x, p, 1.0)
        return s.sum(0) + fin.v

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), f(x))
    kernels.reset_ops_used()
    compiled(x)
    assert kernels.describe()["ops_used"] == {"lif": {"cpu": [LIF_CPU]}}


def test_without_the_c_compiler(no_c_kernel):
    d = kernels.describe()
    assert d["c_compiled"] is False
    assert d["lif"]["cpu"] == d["li"]["cpu"] == "torch-loop"  # the fused op's PyTorch loop: still fused
    assert d["axonal_delay"]["cpu"] == "gather" and d["fused"]["axonal_delay"]["cpu"] is None
    _close(_run_lif("fused"), _run_lif("reference"))
    _close(_run_axonal("auto"), _run_axonal("reference"))
    with pytest.raises(ValueError) as e:
        _run_axonal("fused")
    one_line(e, "backend='fused'", "axonal_delay", "cpu", "torch.float64", "mode 'interp'")


# --------------------------------------------------------------------------- same values and gradients


FUSED_HERE = [op for op in kernels.OPS if kernels.describe()["fused"][op]["cpu"] is not None]


@pytest.mark.parametrize("op", kernels.OPS)
def test_auto_equals_reference_float64(op):
    _close(RUNNERS[op]("auto"), RUNNERS[op]("reference"))


@pytest.mark.parametrize("op", FUSED_HERE)
def test_fused_equals_reference_float64(op):
    _close(RUNNERS[op]("fused"), RUNNERS[op]("reference"))


def test_fused_event_linear_runs_at_any_density():
    kernels.reset_ops_used()
    _close(_run_linear("fused", density=0.6), _run_linear("reference", density=0.6))
    assert kernels.describe()["ops_used"]["linear"]["cpu"] == ["event", "reference"]


def test_gaussian_axonal_delay_auto_is_the_reference():
    kernels.reset_ops_used()
    _close(_run_axonal("auto", "gaussian"), _run_axonal("reference", "gaussian"))
    assert kernels.describe()["ops_used"] == {"axonal_delay": {"cpu": ["reference"]}}


def test_delayed_linear_passes_its_backend():
    x = _spikes((20, 2, 6), 0.02, 8)
    for kind, op, auto in (("axonal", "axonal_delay", "c" if C else "gather"), ("none", "linear", "event")):
        kernels.reset_ops_used()
        out = {}
        for backend in ("reference", "auto"):
            lin = DelayedLinear(6, 4, 1.0, kind, 3.0, generator=_gen(0), backend=backend).double()
            out[backend] = lin(x)[0]
        torch.testing.assert_close(out["auto"], out["reference"], rtol=1e-10, atol=1e-12)
        assert kernels.describe()["ops_used"][op]["cpu"] == ["reference", auto]
    with pytest.raises(ValueError, match="backend must be one of"):
        DelayedLinear(6, 4, 1.0, backend="gpu")
    with pytest.raises(ValueError, match="synaptic_delay has no fused kernel"):
        DelayedLinear(6, 4, 1.0, "synaptic", 3.0, backend="fused")(x)


# --------------------------------------------------------------------------- "fused" without a fused kernel


def _fused_gaussian_axonal() -> None:
    _run_axonal("fused", "gaussian")


def _fused_linear_mixed_dtypes() -> None:
    sparse.linear(_spikes((5, 2, 8), 0.1, 9).float(), torch.randn(3, 8, dtype=F64), backend="fused")


def _fused_linear_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sparse.linear(_spikes((5, 2, 8), 0.1, 9).float(), torch.randn(3, 8), backend="fused")


@pytest.mark.parametrize(
    "case,needles",
    [
        (lambda: _run_synaptic("fused"), ("synaptic_delay", "cpu", "torch.float64", "its fused kernels: none")),
        (_fused_gaussian_axonal, ("axonal_delay", "cpu", "torch.float64", "mode 'gaussian'")),
        (_fused_linear_mixed_dtypes, ("linear", "cpu", "torch.float32", "weight torch.float64")),
        (_fused_linear_autocast, ("linear", "cpu", "autocast True")),
    ],
    ids=["synaptic_delay", "axonal_gaussian", "linear_dtypes", "linear_autocast"],
)
def test_fused_without_a_fused_kernel_is_one_line(case, needles):
    with pytest.raises(ValueError) as e:
        case()
    one_line(e, "backend='fused'", "has no fused kernel on", "use backend='auto' or 'reference'", *needles)


@pytest.mark.parametrize("triton", [False, True])
def test_the_same_rule_on_cuda(monkeypatch, triton):
    """The decision for CUDA (no tensors needed): fused where a kernel exists, else the same one-line error."""
    monkeypatch.setattr(kernels, "_triton", lambda: triton)
    f32 = torch.float32
    assert kernels.select("lif", "fused", "cuda", f32) == ("triton" if triton else "torch-loop")
    assert kernels.select("li", "auto", "cuda:0", f32) == ("triton" if triton else "torch-loop")
    assert kernels.select("axonal_delay", "auto", "cuda", f32, smooth=True) == "gather"
    assert kernels.select("axonal_delay", "auto", "cuda", f32, mode="gaussian", smooth=True) == "reference"
    assert kernels.select("linear", "auto", "cuda", f32, weight_dtype=f32) == "reference"
    failing = [("linear", {"weight_dtype": f32}), ("synaptic_delay", {}), ("axonal_delay", {"smooth": True})]
    if triton:
        assert kernels.select("axonal_delay", "fused", "cuda", f32) == "triton"
    else:
        failing.append(("axonal_delay", {}))
    for op, opts in failing:
        with pytest.raises(ValueError) as e:
            kernels.select(op, "fused", "cuda", f32, **opts)
        one_line(e, "backend='fused'", op, "cuda", "torch.float32")
    for op in kernels.OPS:
        assert kernels.select(op, "reference", "cuda", f32) == "reference"


@pytest.mark.parametrize("op", kernels.OPS)
def test_bad_backend_is_one_line_for_every_op(op):
    with pytest.raises(ValueError) as e:
        RUNNERS[op]("gpu")
    one_line(e, "backend must be one of", "'gpu'")


def test_unknown_op():
    with pytest.raises(ValueError, match="op must be one of"):
        kernels.select("conv", "auto", "cpu", F64)


# --------------------------------------------------------------------------- the surrogate table


def test_table_is_the_kernels_source():
    assert list(surrogate.SURROGATES) == list(TABLE)
    assert len({e.code for e in TABLE.values()}) == len(TABLE)
    header = cpu.surrogate_header()
    for name, e in TABLE.items():
        assert surrogate.make_surrogate(name).__class__ is e.cls
        assert surrogate.kernel_args(e.cls()) == (name, float(getattr(e.cls(), e.param)))
        assert f"case {e.code}: {{ {e.c_grad} }}" in header and f"case {e.code}: {{ {e.c_prim} }}" in header
        assert cpu.surrogate_code(name) == e.code


@dataclass(frozen=True)
class Tanh:
    """A surrogate that exists only in this test: ``grad = k / (2 cosh(k x)^2)``, primitive ``(1 + tanh(k x)) / 2``."""

    k: float = 3.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k / torch.cosh(self.k * x) ** 2

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1.0 + torch.tanh(self.k * x))


TANH = SurrogateCode(
    "tanh",
    Tanh,
    "k",
    17,
    c_grad="REAL c = (REAL)cosh((double)(k * x)); return (REAL)0.5 * k / (c * c);",
    c_prim="return (REAL)0.5 * ((REAL)1 + (REAL)tanh((double)(k * x)));",
    triton_grad="c = tl.exp(k * x)\nr = _div(2.0 * k, (c + _div(1.0, c)) * (c + _div(1.0, c)))",
    triton_prim="r = _div(1.0, 1.0 + tl.exp(-2.0 * k * x))",
)


@pytest.mark.skipif(not C, reason="no C compiler")
def test_a_surrogate_added_to_the_table_reaches_the_c_kernel(monkeypatch, tmp_path):
    """A new entry compiles into a new library (the header is in its cache key) and the fused scan then
    equals the reference, which differentiates the entry's PyTorch formula."""
    old = cpu.library_path()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the test's library is not left in the user's cache
    monkeypatch.setitem(TABLE, "tanh", TANH)
    monkeypatch.setitem(surrogate.SURROGATES, "tanh", Tanh)
    cpu.library.cache_clear()
    try:
        assert "case 17: { REAL c = (REAL)cosh" in cpu.surrogate_header()
        assert cpu.library_path().name != old.name
        assert cpu.library() is not None and cpu.library_path().is_file()
        g = _gen(10)
        x = torch.randn(20, 2, 4, generator=g, dtype=F64) * 0.9 + 1.2
        tau = torch.full((4,), 8.0, dtype=F64, requires_grad=True)
        for smooth in (False, True):
            res = {}
            for backend in ("reference", "fused"):
                xx = x.clone().requires_grad_()
                s, _, v = lif_sequence(
                    xx, LIFParams(tau, None, 1.0, "zero", Tanh(2.5), smooth=smooth), 1.0, record_v=True, backend=backend
                )
                out = torch.cat([s, v])
                res[backend] = [out.detach(), *_grads(out, [xx, tau])]
            assert smooth or res["reference"][0][:20].sum() > 5
            _close(res["fused"], res["reference"])
    finally:
        cpu.library.cache_clear()  # the next use loads the library of the real table again


def test_math_of_the_test_surrogate():
    x = torch.linspace(-2, 2, 101, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(Tanh(2.0).primitive(x).sum(), x)
    torch.testing.assert_close(g, Tanh(2.0).grad(x.detach()), rtol=1e-12, atol=1e-12)
    assert math.isclose(float(Tanh(2.0).primitive(torch.tensor(0.0))), 0.5)


def test_kernels_import_one_way():
    """No import cycle through the kernel modules, and nothing in ``spiketime.kernels`` imports the layers above
    it (grimp counts imports inside functions too)."""
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("spiketime")
    mods = sorted(g.find_descendants("spiketime.kernels") | {"spiketime.kernels"})
    for a in mods:
        for b in g.find_modules_directly_imported_by(a):
            assert not g.find_shortest_chain(importer=b, imported=a), f"cycle {a} -> {b}"
            assert not b.startswith(("spiketime.functional", "spiketime.nn", "spiketime.learning", "spiketime.app")), (
                f"{a} imports {b}"
            )


def test_metrics_json_records_the_kernels_a_run_used(tmp_path, tiny_sets):
    """`spiketime train` writes kernels.describe() into metrics.json: the LIF scan that trained the run is named
    (the C kernel with a compiler, else the fused torch loop) and reference runs record the reference path."""
    import json

    from spiketime.app.cli.main import main

    for backend in ("auto", "reference"):
        out = tmp_path / backend
        assert (
            main(
                [
                    "train",
                    "--out",
                    str(out),
                    *tiny_sets,
                    "--set",
                    "train.epochs=1",
                    "--set",
                    f"model.backend={backend}",
                    "--quiet",
                ]
            )
            == 0
        )
        k = json.loads((out / "metrics.json").read_text())["kernels"]
        used = k["ops_used"]["lif"]["cpu"]
        if backend == "reference":
            assert "reference" in used
        else:
            assert used and "reference" not in used and (not k["c_compiled"] or "c" in used)
        assert set(k["backends"]) == {"auto", "fused", "reference"}
