"""Adaptive sigma-delta spiking neuron of SpikingGamma: codes its activation ``y = ReLU(x)`` with spikes.

One step, with ``a_r = exp(-dt/tau_ref)`` and ``a_th = exp(-dt/tau_th)`` (``theta`` is the threshold of the
previous step, used for both the decision and the spike height)::

    yhat'    = a_r yhat[t-1]                                       the estimate decays (refractory kernel)
    s[t]     = H(y[t] - yhat' - theta[t-1] / 2)                    spike when the error exceeds half the threshold
    yhat[t]  = yhat' + s[t] theta[t-1]                             a spike adds its height to the estimate
    u[t]     = s[t] theta[t-1]  ( = yhat[t] - a_r yhat[t-1] )      the transmitted value
    theta[t] = theta0 + (theta[t-1] - theta0) a_th + m_f s[t] theta[t-1]

``H(z) = 1`` for ``z > 0``. At most one spike per step, so ``-theta/2 < y - yhat <= theta/2`` holds after every
step in which the error entering it lay in ``(-theta/2, 3 theta/2]``: for inputs that change slowly next to the
threshold. A sustained ``y`` spikes ``r = (1 - a_r) y / theta`` times per step and lifts the threshold to about
``theta0 + m_f y (1 - a_r) / (1 - a_th)`` (``= theta0 + m_f y`` when ``tau_th = tau_ref``, at every ``dt``): the
coding error grows with ``y`` (Weber-like) and the rate saturates at ``(1 - a_r) / m_f`` per step.

Gradient (no surrogate): the coding error is treated as a constant, ``d yhat / d y = 1``. The estimate the graph
sees is the straight-through ``yhat_st[t] = yhat[t] + (y[t] - y[t].detach())`` (forward value exactly ``yhat[t]``,
gradient identity to ``y[t]``), and ``u[t] = s[t] theta[t-1] + g - g.detach()`` with
``g = yhat_st[t] - a_r yhat_st[t-1]``: forward value exactly ``s theta``, ``du[t]/dy[t] = 1`` and, through the
state, ``du[t]/dy[t-1] = -a_r`` (BPTT). The spike and threshold logic carry no gradient. The state keeps
``yhat_st``; :func:`detach_state` cuts it for online learning.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spiketime.functional.lif import decay


class SigmaDeltaState(NamedTuple):
    """The state of a sigma-delta layer: the estimate ``yhat`` of its input from its own spikes and the current threshold, each ``[B, M]``."""

    yhat: Tensor  # [B, M] estimate of y from the neuron's own spikes (straight-through: carries the graph to y)
    theta: Tensor  # [B, M] current threshold (= height of the next spike), no graph


class SigmaDeltaParams(NamedTuple):
    """A sigma-delta layer's parameters: resting threshold ``theta0``, time constants ``tau_ref`` and ``tau_th`` (ms), threshold gain ``m_f``."""

    theta0: float | Tensor = 0.1  # resting threshold (scalar or [M])
    tau_ref: float | Tensor = 20.0  # ms, decay of the estimate yhat
    tau_th: float | Tensor = 20.0  # ms, relaxation of the threshold to theta0 (= tau_ref: steady theta0 + m_f y)
    m_f: float | Tensor = 0.5  # threshold multiplier per spike


def sigma_delta_init(
    batch: int, m: int | tuple[int, ...], like: Tensor, theta0: float | Tensor = 0.1
) -> SigmaDeltaState:
    """Resting state: ``yhat = 0``, ``theta = theta0``, shape ``[batch, m]`` (or ``[batch, *m]``), dtype/device of
    ``like``."""
    shape = (batch, *m) if isinstance(m, tuple) else (batch, m)
    yhat = like.new_zeros(shape)
    theta = torch.as_tensor(theta0, dtype=like.dtype, device=like.device).expand(shape).clone()
    return SigmaDeltaState(yhat, theta)


def _decay(tau: float | Tensor, dt: float, like: Tensor) -> Tensor:
    return decay(torch.as_tensor(tau, dtype=like.dtype, device=like.device), dt)


def sigma_delta_step(
    x: Tensor, state: SigmaDeltaState, params: SigmaDeltaParams, dt: float
) -> tuple[Tensor, Tensor, SigmaDeltaState]:
    """One sigma-delta step on the input current ``x`` [B, M] (module docstring): returns the transmitted value
    ``u = s theta`` [B, M], the spikes ``s`` (0/1, no graph) and the new state."""
    a_r = _decay(params.tau_ref, dt, x)
    a_th = _decay(params.tau_th, dt, x)
    theta0 = torch.as_tensor(params.theta0, dtype=x.dtype, device=x.device)
    y = torch.relu(x)
    theta = state.theta.detach()
    prev_st = a_r * state.yhat  # graph: -> y[t-1] through the previous straight-through estimate
    prev = prev_st.detach()
    s = (y.detach() - prev > 0.5 * theta).to(x.dtype)
    height = s * theta
    yhat = prev + height
    yhat_st = yhat + (y - y.detach())
    g = yhat_st - prev_st
    u = height + (g - g.detach())
    theta_new = theta0 + (theta - theta0) * a_th + params.m_f * height
    return u, s, SigmaDeltaState(yhat_st, theta_new)


def detach_state(state: SigmaDeltaState) -> SigmaDeltaState:
    """The state cut from the graph (online learning: no gradient through time)."""
    return SigmaDeltaState(state.yhat.detach(), state.theta.detach())
