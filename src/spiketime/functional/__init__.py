"""The equations, one function each, on time-major ``[T, B, ...]`` tensors with an explicit ``dt`` (ms).

LIF and LI neurons (:mod:`~spiketime.functional.lif`, :mod:`~spiketime.functional.li`), learnable axonal and
synaptic delays (:mod:`~spiketime.functional.delay`), gamma buckets (:mod:`~spiketime.functional.gamma`),
sigma-delta neurons (:mod:`~spiketime.functional.sigma_delta`) and symmetric integer quantisation
(:mod:`~spiketime.functional.quant`). Fast kernels sit behind the same functions (:mod:`spiketime.kernels`).
"""

from spiketime.functional.delay import (
    DelayState,
    axonal_delay,
    delay_kernel,
    delay_taps,
    init_delay_state,
    synaptic_delay_linear,
)
from spiketime.functional.gamma import (
    BucketState,
    bucket_decays,
    bucket_impulse_response,
    bucket_init,
    bucket_sequence,
    bucket_step,
    power_law_taus,
)
from spiketime.functional.li import LIState, li_sequence, li_step
from spiketime.functional.lif import (
    LIFParams,
    LIFState,
    decay,
    lif_init,
    lif_sequence,
    lif_sequence_recurrent,
    lif_step,
)
from spiketime.functional.quant import fake_quantize, qmax, quantize, weight_scale
from spiketime.functional.sigma_delta import SigmaDeltaParams, SigmaDeltaState, sigma_delta_init, sigma_delta_step

__all__ = [
    "BucketState",
    "DelayState",
    "LIFParams",
    "LIFState",
    "LIState",
    "SigmaDeltaParams",
    "SigmaDeltaState",
    "axonal_delay",
    "bucket_decays",
    "bucket_impulse_response",
    "bucket_init",
    "bucket_sequence",
    "bucket_step",
    "decay",
    "delay_kernel",
    "delay_taps",
    "fake_quantize",
    "init_delay_state",
    "li_sequence",
    "li_step",
    "lif_init",
    "lif_sequence",
    "lif_sequence_recurrent",
    "lif_step",
    "power_law_taus",
    "qmax",
    "quantize",
    "sigma_delta_init",
    "sigma_delta_step",
    "synaptic_delay_linear",
    "weight_scale",
]
