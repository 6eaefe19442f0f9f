"""Thin ``torch.nn.Module`` wrappers over :mod:`spiketime.functional`.

Every module owns its parameters and configuration, never hidden state:
``forward(x_seq, state=None) -> (y_seq, state)`` on time-major ``[T, B, N]`` tensors.
"""

from spiketime.nn.layers import LI, LIF, DelayedLinear, Recurrent
from spiketime.nn.network import SpikingNetwork

__all__ = ["LIF", "LI", "DelayedLinear", "Recurrent", "SpikingNetwork"]
