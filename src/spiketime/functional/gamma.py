"""Gamma buckets of SpikingGamma (Koopman, Otte, Bohté 2026): a cascade of ``K`` leaky integrators per input.

Every presynaptic neuron ``i`` feeds ``K`` buckets that spill into each other, with ``a_k = exp(-dt/tau_k)``::

    b_1[t] = a_1 b_1[t-1] + (1 - a_1) u[t]
    b_k[t] = a_k b_k[t-1] + (1 - a_{k-1}) b_{k-1}[t-1]        k = 2..K

Bucket ``k`` takes what bucket ``k-1`` leaked in the previous step, so the buckets hold ever later and wider
smoothed copies of the input ``u``. With equal time constants (``a_k = a``) the response to a unit impulse at
``t = 0`` is a discrete gamma (negative binomial) shape (:func:`gamma_kernel_closed_form`)::

    b_k[t] = (1 - a)^k C(t, k-1) a^(t-k+1)        for t >= k-1, else 0

each of unit mass (``sum_t b_k[t] = 1``). With distinct time constants a constant input ``u = c`` settles at
``b_k = c (1 - a_1) / (1 - a_k)`` (``-> c tau_k / tau_1`` as ``dt -> 0``), which is also the mass of bucket
``k``'s impulse response. Shapes: ``u`` [B, N], buckets [B, N, K] (any leading shape works: ``b`` has the shape
of ``u`` plus a trailing ``K``, and the decays broadcast against it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spiketime.functional.lif import decay


class BucketState(NamedTuple):
    b: Tensor  # [B, N, K]


def power_law_taus(K: int, tau_1: float, factor: float) -> Tensor:
    """``tau_k = tau_1 * factor^(k-1)`` for ``k = 1..K`` (ms): shape [K], computed in float64, returned float32."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K!r}")
    if not tau_1 > 0:
        raise ValueError(f"tau_1 must be > 0, got {tau_1!r}")
    if not factor >= 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    k = torch.arange(K, dtype=torch.float64)
    return (tau_1 * torch.as_tensor(factor, dtype=torch.float64) ** k).to(torch.float32)


def bucket_decays(taus: Tensor, dt: float) -> Tensor:
    """``a_k = exp(-dt / tau_k)``, shape like ``taus`` ([K] or [N, K])."""
    return decay(taus, dt)


def bucket_init(shape: tuple[int, ...], K: int, like: Tensor) -> BucketState:
    """All-zero buckets ``[*shape, K]`` with the dtype and device of ``like``."""
    return BucketState(like.new_zeros(*shape, K))


def bucket_step(u: Tensor, state: BucketState, decays: Tensor) -> BucketState:
    """One step of the cascade: ``b_1 <- a_1 b_1 + (1 - a_1) u``, ``b_k <- a_k b_k + (1 - a_{k-1}) b_{k-1}[t-1]``.

    ``u`` [B, N], ``state.b`` [B, N, K], ``decays`` [K] or [N, K] (broadcast against ``b``)."""
    b = state.b
    leak = 1.0 - decays  # (1 - a_k): the fraction of bucket k that spills into bucket k+1 each step
    inflow = torch.cat([leak[..., :1] * u.unsqueeze(-1), leak[..., :-1] * b[..., :-1]], dim=-1)
    return BucketState(decays * b + inflow)


def bucket_sequence(u_seq: Tensor, decays: Tensor, state: BucketState | None = None) -> tuple[Tensor, BucketState]:
    """Run :func:`bucket_step` over ``u_seq`` [T, B, N]: buckets [T, B, N, K] and the final state.

    Autograd flows to ``u_seq``, to ``decays`` and to the initial state."""
    if u_seq.dim() < 2:
        raise ValueError(f"u_seq must be [T, B, ...], got shape {tuple(u_seq.shape)}")
    K = decays.shape[-1]
    if state is None:
        state = bucket_init(tuple(u_seq.shape[1:]), K, u_seq)
    out = []
    for u in u_seq:
        state = bucket_step(u, state, decays)
        out.append(state.b)
    b_seq = torch.stack(out) if out else u_seq.new_zeros(*u_seq.shape, K)
    return b_seq, state


def bucket_impulse_response(taus: Tensor, dt: float, T: int) -> Tensor:
    """Response [T, K] of the buckets (time constants ``taus`` [K], ms) to ``u[0] = 1``, ``u[t > 0] = 0``:
    the recursion of :func:`bucket_step` run in float64."""
    a = bucket_decays(taus.detach().to(torch.float64), dt)
    u = torch.zeros(T, 1, 1, dtype=torch.float64)
    if T > 0:
        u[0] = 1.0
    b_seq, _ = bucket_sequence(u, a)
    return b_seq[:, 0, 0]


def gamma_kernel_closed_form(tau: float, dt: float, K: int, T: int) -> Tensor:
    """Closed form [T, K] (float64) of :func:`bucket_impulse_response` when all ``K`` time constants equal ``tau``:
    ``b_k[t] = (1 - a)^k C(t, k-1) a^(t-k+1)`` for ``t >= k-1`` (else 0), ``a = exp(-dt/tau)``.

    Derivation: ``b_1[t] = (1-a) a^t``; if ``b_k[t] = (1-a)^k C(t, k-1) a^(t-k+1)`` then
    ``b_{k+1}[t] = sum_{s=1..t} a^(t-s) (1-a) b_k[s-1] = (1-a)^(k+1) a^(t-k) sum_{s=1..t} C(s-1, k-1)``
    and the hockey-stick identity gives ``sum_{s=1..t} C(s-1, k-1) = C(t, k)``."""
    a = math.exp(-dt / tau)
    out = torch.zeros(T, K, dtype=torch.float64)
    for k in range(1, K + 1):
        for t in range(k - 1, T):
            out[t, k - 1] = (1.0 - a) ** k * math.comb(t, k - 1) * a ** (t - k + 1)
    return out
