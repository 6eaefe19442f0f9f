"""Hardware-aware evaluation: INT8/INT4 weights, fixed-point membranes, an integer-exact simulator, SynOps.

:func:`evaluate_hardware` runs a trained :class:`~spiketime.nn.network.SpikingNetwork` as a chip would
(:class:`HardwareSpec`: weight bits, per-channel scales, membrane bits) and counts what it costs.
"""

from spiketime.functional.quant import HARDWARE_BITS, QUANT_MODES, fake_quantize, leak_shift, quantize, weight_scale
from spiketime.hardware.evaluate import evaluate_hardware, float_costs, hard_spikes, quantized_weights_model
from spiketime.hardware.fixed_point import HardwareLayer, HardwareSpec, hardware_layers, run_fake_quant
from spiketime.hardware.integer_sim import run_integer
from spiketime.hardware.metrics import activation_sparsity, footprint_bytes, network_synops, synops

__all__ = [
    "HARDWARE_BITS",
    "QUANT_MODES",
    "HardwareLayer",
    "HardwareSpec",
    "activation_sparsity",
    "evaluate_hardware",
    "fake_quantize",
    "float_costs",
    "footprint_bytes",
    "hard_spikes",
    "hardware_layers",
    "leak_shift",
    "network_synops",
    "quantize",
    "quantized_weights_model",
    "run_fake_quant",
    "run_integer",
    "synops",
    "weight_scale",
]
