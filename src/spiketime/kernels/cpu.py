"""The compiled CPU kernels: ``lif_scan.c`` (the LIF scan) and ``axonal_delay.c`` (the ``interp`` axonal
delay), built once with the system C compiler into one library and called through ctypes.

The shared library is cached in ``$XDG_CACHE_HOME/spiketime/kernels`` (default ``~/.cache``) under a
name that hashes the source, the compiler command and the CPU model, and is written under a temporary
name and renamed, so concurrent first uses (parallel sweep jobs) never load a half-written file. When
no compiler works, :func:`library` returns None (with one warning) and the fused scan runs its
PyTorch loop instead; ``SPIKETIME_CPU_KERNEL=0`` forces that too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SOURCES = [Path(__file__).with_name(name) for name in ("lif_scan.c", "axonal_delay.c")]
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC"]
SURROGATE_CODES = {"fast_sigmoid": 0, "gaussian": 1, "arctan": 2, "triangle": 3, "sigmoid": 4}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spiketime" / "kernels"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler(compiler: str | None = None) -> str:
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC or install gcc)")
    return cc


def library_path(compiler: str | None = None) -> Path:
    """Where the library of these sources, this compiler command and this CPU is cached (built or not)."""
    cc = _compiler(compiler)
    src = b"".join(path.read_bytes() for path in SOURCES)
    key = hashlib.sha256(src + " ".join([cc, *FLAGS, _cpu_model(), platform.machine()]).encode()).hexdigest()[:16]
    return cache_dir() / f"spiketime-{key}.so"


def build(compiler: str | None = None) -> Path:
    """Compile the kernel sources (if not cached) and return the path of the shared library."""
    cc = _compiler(compiler)
    out = library_path(cc)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *FLAGS, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed to compile the CPU kernels: {res.stderr.strip().splitlines()[-1:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when it cannot be built (then the PyTorch loop is used)."""
    if os.environ.get("SPIKETIME_CPU_KERNEL", "1") == "0":
        return None
    try:
        return ctypes.CDLL(str(build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        warnings.warn(f"spiketime: compiled CPU kernels unavailable ({e}); using the slower PyTorch paths",
                      RuntimeWarning, stacklevel=2)
        return None


def prepare(progress: bool = False) -> None:
    """Load the kernels now (not inside the first training batch), compiling them on first use on this machine;
    ``progress``: say so on stderr when they are compiled."""
    from spiketime.progress import status

    if os.environ.get("SPIKETIME_CPU_KERNEL", "1") == "0" or library.cache_info().currsize:
        return
    try:
        built = library_path().is_file()
    except RuntimeError:  # no compiler: library() warns
        built = True
    status(progress and not built, "compiling the CPU kernels (once per machine and version, a few seconds)")
    library()


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    """Data pointer of ``t``; NULL for None or an empty tensor (an unused gradient: zero)."""
    return ctypes.c_void_p(t.data_ptr() if t is not None and t.numel() else None)


def supports(*tensors: Tensor) -> bool:
    """Whether the compiled kernels handle these tensors (CPU, float32/float64) and the library loads."""
    return all(t.device.type == "cpu" and t.dtype in _SUFFIX for t in tensors) and library() is not None


def lif_scan_fwd_c(
    x: Tensor, beta: Tensor, alpha: Tensor | None, v0: Tensor, i0: Tensor, s0: Tensor,
    theta: float, reset: int, surrogate: str, scale: float, smooth: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Compiled forward scan; same contract as :func:`spiketime.kernels.lif_scan.lif_scan_fwd_torch`."""
    lib = library()
    suffix = _SUFFIX[x.dtype]
    T, B, N = x.shape
    x = x.contiguous()
    beta, v0, i0, s0 = (t.to(x.dtype).contiguous() for t in (beta, v0, i0, s0))
    alpha = None if alpha is None else alpha.to(x.dtype).contiguous()
    s, v = torch.empty_like(x), torch.empty_like(x)
    i = torch.empty_like(x) if alpha is not None else x.new_empty(0)
    i_T = torch.empty_like(v0)
    getattr(lib, f"lif_fwd_{suffix}")(
        _ptr(x), _ptr(beta), _ptr(alpha), _ptr(v0), _ptr(i0), _ptr(s0), _ptr(s), _ptr(v),
        _ptr(i), _ptr(i_T), ctypes.c_long(T), ctypes.c_long(B), ctypes.c_long(N),
        ctypes.c_double(theta), ctypes.c_int(reset), ctypes.c_int(SURROGATE_CODES[surrogate]),
        ctypes.c_double(scale), ctypes.c_int(int(smooth)), ctypes.c_int(torch.get_num_threads()))
    return s, v, i, i_T


def lif_scan_bwd_c(
    g_s: Tensor, g_v: Tensor, g_iT: Tensor, v_seq: Tensor, i_all: Tensor, beta: Tensor, alpha: Tensor | None,
    v0: Tensor, i0: Tensor, s0: Tensor, theta: float, reset: int, surrogate: str, scale: float, smooth: bool,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Compiled backward scan; same contract as :func:`spiketime.kernels.lif_scan.lif_scan_bwd_torch`."""
    lib = library()
    dt = v_seq.dtype
    suffix = _SUFFIX[dt]
    T, B, N = v_seq.shape
    v_seq, g_s, g_v, i_all = (t.to(dt).contiguous() for t in (v_seq, g_s, g_v, i_all))
    g_iT, beta, v0, i0, s0 = (t.to(dt).contiguous() for t in (g_iT, beta, v0, i0, s0))
    alpha = None if alpha is None else alpha.to(dt).contiguous()
    g_x = torch.empty_like(v_seq)
    g_beta_bn = torch.empty_like(v0)
    g_alpha_bn = torch.empty_like(v0) if alpha is not None else None
    g_v0, g_i0, g_s0 = torch.empty_like(v0), torch.empty_like(v0), torch.empty_like(v0)
    getattr(lib, f"lif_bwd_{suffix}")(
        _ptr(g_s), _ptr(g_v), _ptr(g_iT), _ptr(v_seq), _ptr(i_all), _ptr(beta), _ptr(alpha),
        _ptr(v0), _ptr(i0), _ptr(s0), _ptr(g_x), _ptr(g_beta_bn), _ptr(g_alpha_bn), _ptr(g_v0), _ptr(g_i0),
        _ptr(g_s0), ctypes.c_long(T), ctypes.c_long(B), ctypes.c_long(N), ctypes.c_double(theta),
        ctypes.c_int(reset), ctypes.c_int(SURROGATE_CODES[surrogate]), ctypes.c_double(scale),
        ctypes.c_int(int(smooth)), ctypes.c_int(int(detach_reset)), ctypes.c_int(torch.get_num_threads()))
    g_alpha = g_alpha_bn.sum(0) if g_alpha_bn is not None else v_seq.new_empty(0)
    return g_x, g_beta_bn.sum(0), g_alpha, g_v0, g_i0, g_s0


class _AxonalInterp(torch.autograd.Function):
    """``y[t] = (1 - f) xp[t - n] + f xp[t - n - 1]`` over ``xp = cat(buffer, x)``; gradients for ``x``,
    ``buffer`` and ``f`` (``shift = taps - 1 - n`` is an integer per neuron, no gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, buffer: Tensor, shift: Tensor, f: Tensor) -> Tensor:
        T, B, N = x.shape
        taps = buffer.shape[0] + 1
        x, buffer, f = x.contiguous(), buffer.to(x.dtype).contiguous(), f.to(x.dtype).contiguous()
        shift = shift.to(torch.long).contiguous()
        y = torch.empty_like(x)
        getattr(library(), f"axonal_interp_fwd_{_SUFFIX[x.dtype]}")(
            _ptr(x), _ptr(buffer), _ptr(shift), _ptr(f), _ptr(y), ctypes.c_long(T), ctypes.c_long(B),
            ctypes.c_long(N), ctypes.c_long(taps), ctypes.c_int(torch.get_num_threads()))
        ctx.save_for_backward(x, buffer, shift, f)
        return y

    @staticmethod
    def backward(ctx: Any, g_y: Tensor) -> tuple[Tensor, Tensor, None, Tensor]:
        x, buffer, shift, f = ctx.saved_tensors
        T, B, N = x.shape
        g_y = g_y.to(x.dtype).contiguous()
        need_x = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        g_x = torch.empty_like(x) if need_x else None
        g_buf = torch.empty_like(buffer) if need_x else None
        g_f_bn = x.new_empty(B, N)
        getattr(library(), f"axonal_interp_bwd_{_SUFFIX[x.dtype]}")(
            _ptr(g_y), _ptr(x), _ptr(buffer), _ptr(shift), _ptr(f), _ptr(g_x), _ptr(g_buf), _ptr(g_f_bn),
            ctypes.c_long(T), ctypes.c_long(B), ctypes.c_long(N), ctypes.c_long(buffer.shape[0] + 1),
            ctypes.c_int(torch.get_num_threads()))
        return g_x, g_buf, None, (g_f_bn.sum(0) if ctx.needs_input_grad[3] else None)


def axonal_interp_c(x: Tensor, buffer: Tensor, shift: Tensor, f: Tensor) -> Tensor:
    """Compiled ``interp`` axonal delay (see :func:`spiketime.functional.delay._interp_shift`)."""
    return _AxonalInterp.apply(x, buffer, shift, f)
