"""Fast kernels behind the functional API, chosen automatically.

Every op here has a plain-PyTorch reference (the step functions of :mod:`spiketime.functional`,
differentiated by autograd), which the tests use as the oracle. ``backend="auto"`` picks the fused
kernels (``torch.library`` custom ops: a C-level loop on CPU, Triton on CUDA when installed);
``backend="reference"`` forces the step-by-step autograd path.
"""

from __future__ import annotations

import functools

BACKENDS = ("auto", "fused", "reference")


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports (the CUDA kernels need it; without it CUDA runs the fused PyTorch loop)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend
