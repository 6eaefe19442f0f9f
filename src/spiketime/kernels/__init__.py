"""Fast kernels behind the functional API, and the one place that decides which implementation runs.

Every op has a plain-PyTorch reference, differentiated by autograd, which the tests use as the oracle;
most also have fused kernels (``torch.library`` custom ops or autograd functions with a hand-written
backward pass). :func:`select` decides, from ``(op, backend, device, dtype, options)``, which
implementation runs, and every op asks it (:func:`spiketime.functional.lif.lif_sequence` ``"lif"``,
:func:`~spiketime.functional.li.li_sequence` ``"li"``, :func:`~spiketime.functional.delay.axonal_delay`
``"axonal_delay"``, :func:`~spiketime.functional.delay.synaptic_delay_linear` ``"synaptic_delay"``,
:func:`spiketime.kernels.sparse.linear` ``"linear"``). The implementations:

* ``lif``, ``li`` -- fused: ``"c"`` (the compiled C scan, CPU, with a C compiler), ``"triton"`` (CUDA, with
  Triton), ``"torch-loop"`` (the same custom op's PyTorch loop, any device: no C compiler, no Triton);
  reference ``"reference"`` (:func:`~spiketime.functional.lif.lif_step` step by step).
* ``axonal_delay`` -- fused: ``"c"`` (CPU, mode ``interp``, float32/float64, with a C compiler),
  ``"triton"`` (CUDA, ``smooth=False``, with Triton); ``"gather"`` (mode ``interp``: two gathers under
  autograd, not fused); reference ``"reference"`` (the depthwise ``conv1d`` with
  :func:`~spiketime.functional.delay.delay_kernel`).
* ``synaptic_delay`` -- no fused kernel; reference ``"reference"`` (one ``conv1d``).
* ``linear`` -- fused: ``"event"`` (CPU, float32/float64 input and weight of the same dtype, outside
  autocast: event-driven ``embedding_bag``, :mod:`spiketime.kernels.sparse`); reference ``"reference"``
  (``x @ W^T``).

``backend`` (one of :data:`BACKENDS`, checked by :func:`check_backend`) means the same for every op:

* ``"reference"``: the reference, always.
* ``"auto"``: the fused kernel where one exists for this op, device, dtype and options, else the fastest
  other path (``"gather"`` for an ``interp`` axonal delay, else the reference); ``linear`` takes its
  event kernel only on sparse input (sampled density at most :data:`spiketime.kernels.sparse.MAX_DENSITY`).
* ``"fused"``: the fused kernel, always (``linear``: whatever the density). Where the op has none for this
  device, dtype and options, :func:`select` raises a one-line ``ValueError`` naming the op, the device,
  the dtype and the fused kernels the op does have; it never falls back silently. (``lif``/``li`` always
  have one: the ``"torch-loop"`` custom op runs on any device.)

What was chosen is inspectable: :func:`describe` returns a JSON-serialisable dict of what ``auto`` picks
per op on CPU and CUDA here, whether the C kernels compiled and Triton imports, and ``ops_used``, the
implementations that :func:`select` chose in this process (its only state: a record of what ran, cleared
by :func:`reset_ops_used`; under ``torch.compile`` a choice is recorded when traced and on each replay).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

BACKENDS = ("auto", "fused", "reference")
OPS = ("lif", "li", "axonal_delay", "synaptic_delay", "linear")
DEVICES = ("cpu", "cuda")  # the devices describe() reports

_FLOAT = (torch.float32, torch.float64)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_LIF_FUSED = "c on cpu (with a C compiler), triton on cuda (with Triton), torch-loop on any device"
FUSED_KERNELS = {  # op -> its fused kernels, as the 'fused' error names them
    "lif": _LIF_FUSED,
    "li": _LIF_FUSED,
    "axonal_delay": "c on cpu for mode 'interp' in float32/float64 (with a C compiler), "
    "triton on cuda with smooth=False (with Triton)",
    "synaptic_delay": "none",
    "linear": "event on cpu for float32/float64 input and a weight of the same dtype, outside autocast",
}
_RAN: dict[tuple[str, str, str], None] = {}  # (op, device type, implementation) chosen by select(), in order


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports (the CUDA kernels need it; without it CUDA runs the fused PyTorch loop)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def check_backend(backend: str) -> str:
    """``backend`` itself if it is one of :data:`BACKENDS`, else a one-line ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


@torch.compiler.assume_constant_result  # torch.compile: a constant of the trace (the library loads or not)
def c_compiled() -> bool:
    """Whether the compiled CPU kernels load (compiling them on first use; :func:`spiketime.kernels.cpu.library`)."""
    from spiketime.kernels import cpu

    return cpu.library() is not None


@torch.compiler.assume_constant_result
def _triton() -> bool:
    return triton_available()


def _fused(
    op: str,
    dev: str,
    dtype: torch.dtype,
    mode: str,
    smooth: bool,
    weight_dtype: torch.dtype | None,
) -> str | None:
    """The fused kernel of ``op`` for this device, dtype and options, or None where it has none."""
    if op in ("lif", "li"):
        if dev == "cpu" and dtype in _FLOATS and c_compiled():  # bf16/fp16 are integrated in float32
            return "c"
        if dev == "cuda" and _triton():
            return "triton"
        return "torch-loop"
    if op == "axonal_delay":
        if dev == "cpu" and mode == "interp" and dtype in _FLOAT and c_compiled():
            return "c"
        if dev == "cuda" and not smooth and _triton():
            return "triton"
        return None
    if op == "linear":
        same = weight_dtype is None or weight_dtype == dtype
        if dev == "cpu" and dtype in _FLOAT and same and not torch.is_autocast_enabled("cpu"):
            return "event"
        return None
    return None  # synaptic_delay


def _choose(
    op: str,
    backend: str,
    dev: str,
    dtype: torch.dtype,
    mode: str,
    smooth: bool,
    weight_dtype: torch.dtype | None,
    prefer_fused: Callable[[], bool] | None,
) -> str:
    check_backend(backend)
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if backend == "reference":
        return "reference"
    fused = _fused(op, dev, dtype, mode, smooth, weight_dtype)
    if fused is None:
        if backend == "fused":
            opts = {
                "axonal_delay": f", mode {mode!r}, smooth={smooth}",
                "synaptic_delay": f", mode {mode!r}",
                "linear": f", weight {weight_dtype}, autocast {torch.is_autocast_enabled('cpu')}",
            }.get(op, "")
            raise ValueError(
                f"backend='fused': {op} has no fused kernel on {dev} for {dtype}{opts} (its fused "
                f"kernels: {FUSED_KERNELS[op]}); use backend='auto' or 'reference'"
            )
        return "gather" if op == "axonal_delay" and mode == "interp" else "reference"
    if backend == "auto" and prefer_fused is not None and not prefer_fused():
        return "reference"
    return fused


def select(
    op: str,
    backend: str,
    device: torch.device | str,
    dtype: torch.dtype,
    *,
    mode: str = "interp",
    smooth: bool = False,
    weight_dtype: torch.dtype | None = None,
    prefer_fused: Callable[[], bool] | None = None,
) -> str:
    """The implementation of ``op`` (one of :data:`OPS`) that runs for ``backend`` on ``device`` with input
    ``dtype``: ``"c"``, ``"triton"``, ``"torch-loop"``, ``"event"``, ``"gather"`` or ``"reference"`` (the
    table and the rules are in the module docstring), recorded in ``describe()["ops_used"]``.

    Options: ``mode``, ``smooth`` (the delays' kernel mode and smooth flag); ``weight_dtype`` (``linear``'s
    weight); ``prefer_fused``, called only under ``"auto"`` where a fused kernel exists: whether it pays off
    for this input (``linear``: the input is sparse enough). ``backend="fused"`` without a fused kernel: a
    one-line ``ValueError``; an unknown backend or op: the same."""
    dev = torch.device(device).type
    impl = _choose(op, backend, dev, dtype, mode, smooth, weight_dtype, prefer_fused)
    _RAN[(op, dev, impl)] = None
    return impl


def reset_ops_used() -> None:
    """Forget the choices recorded so far (``describe()["ops_used"]`` becomes empty)."""
    _RAN.clear()


def describe() -> dict[str, Any]:
    """What the kernels are and do here, as a JSON-serialisable dict.

    * one key per op of :data:`OPS`: ``{device: implementation}`` that ``backend="auto"`` picks on ``cpu``
      and ``cuda`` in this environment, for float32 input (delays in mode ``interp``, ``smooth=False``;
      ``linear`` on sparse input), e.g. ``{"lif": {"cpu": "c", "cuda": "triton"}, ...}``;
    * ``"fused"``: ``{op: {device: fused kernel or None}}``, what ``backend="fused"`` runs (None: it raises);
    * ``"c_compiled"``: whether the compiled CPU kernels load; ``"triton"``: whether Triton imports;
    * ``"backends"``: :data:`BACKENDS`;
    * ``"ops_used"``: ``{op: {device: [implementations]}}``, what :func:`select` chose in this process so far
      (in first-use order).

    Calling it compiles the CPU kernels if they are not built yet (see :func:`c_compiled`)."""
    out: dict[str, Any] = {}
    for op in OPS:
        out[op] = {dev: _choose(op, "auto", dev, torch.float32, "interp", False, None, None) for dev in DEVICES}
    out["fused"] = {op: {dev: _fused(op, dev, torch.float32, "interp", False, None) for dev in DEVICES} for op in OPS}
    out["c_compiled"] = bool(c_compiled())
    out["triton"] = bool(triton_available())
    out["backends"] = list(BACKENDS)
    used: dict[str, dict[str, list[str]]] = {}
    for op, dev, impl in list(_RAN):
        used.setdefault(op, {}).setdefault(dev, []).append(impl)
    out["ops_used"] = used
    return out
