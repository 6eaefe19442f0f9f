"""Thin ``torch.nn.Module`` wrappers over :mod:`spiketime.functional`.

Every module owns its parameters and configuration, never hidden state: ``forward(x_seq, state=None) ->
(y_seq, state)`` on time-major ``[T, B, N]`` tensors; the networks add their hidden spike trains with
``forward(x_seq, state, return_spikes=True) -> (y_seq, state, spikes)``.
"""

from spiketime.nn.gamma import GammaBuckets, GammaConv2d, GammaDense, GammaNetwork
from spiketime.nn.layers import LI, LIF, DelayedLinear, Recurrent
from spiketime.nn.network import SpikingNetwork

__all__ = [
    "LIF",
    "LI",
    "DelayedLinear",
    "GammaBuckets",
    "GammaConv2d",
    "GammaDense",
    "GammaNetwork",
    "Recurrent",
    "SpikingNetwork",
]
