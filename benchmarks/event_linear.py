"""Where the event-driven input projection (spiketime.kernels.sparse) pays off: forward + backward of
``[T*B, C] @ [C, 256]`` at several input densities, event-driven against dense, on this machine.

    python benchmarks/event_linear.py            # rows: C, density, event ms, dense ms
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from spiketime.kernels import sparse


def best_ms(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(rows: int = 32000, out: int = 256) -> None:
    gen = torch.Generator().manual_seed(0)
    print(f"{'C':>4} {'density':>8} {'event ms':>9} {'dense ms':>9}")
    for c in (700, 256):
        w = torch.randn(out, c, generator=gen, requires_grad=True)
        g = torch.randn(rows, out, generator=gen)
        for density in (0.02, 0.05, 0.1, 0.2):
            x = (torch.rand(rows, c, generator=gen) < density).float()
            event = best_ms(lambda x=x, w=w, g=g: sparse._EventLinear.apply(x, w).backward(g))
            dense = best_ms(lambda x=x, w=w, g=g: (x @ w.t()).backward(g))
            print(f"{c:>4} {density:>8.2f} {event:>9.0f} {dense:>9.0f}")


if __name__ == "__main__":
    main()
