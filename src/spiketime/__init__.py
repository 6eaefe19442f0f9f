"""spiketime: spiking neural networks that learn precise spike timing.

``import spiketime as st`` gives the documented names of the library (neurons, delays, networks, learners,
losses, surrogates, quantisation, hardware models, NIR in/out, datasets); each is imported on first use, so
``import spiketime`` itself is quick and loads no torch. The application (config, CLI, run directories) is
:mod:`spiketime.app`, built on these names.

Example::

    import torch
    import spiketime as st

    net = st.SpikingNetwork(40, 3, hidden=[32], dt=1.0, delays="axonal", delay_max=10.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = (torch.rand(50, 8, 40) < 0.05).float(), torch.randint(0, 3, (8,))   # [T, B, C], [B]
    loss = st.bptt_step(net, x, y, opt, loss="max")
"""

from __future__ import annotations

from spiketime._lazy import lazy_names

__version__ = "0.1.0"
"""The version of spiketime (recorded in every run's metrics.json)."""

SUBPACKAGES = (
    "functional",
    "kernels",
    "nn",
    "learning",
    "hardware",
    "export",
    "data",
    "evaluate",
    "surrogate",
    "errors",
    "files",
    "progress",
)

_NAMES: dict[str, str] = {
    # spiketime.functional
    "BucketState": "spiketime.functional",
    "DelayState": "spiketime.functional",
    "LIFParams": "spiketime.functional",
    "LIFState": "spiketime.functional",
    "LIState": "spiketime.functional",
    "SigmaDeltaParams": "spiketime.functional",
    "SigmaDeltaState": "spiketime.functional",
    "axonal_delay": "spiketime.functional",
    "bucket_decays": "spiketime.functional",
    "bucket_impulse_response": "spiketime.functional",
    "bucket_init": "spiketime.functional",
    "bucket_sequence": "spiketime.functional",
    "bucket_step": "spiketime.functional",
    "decay": "spiketime.functional",
    "delay_kernel": "spiketime.functional",
    "delay_taps": "spiketime.functional",
    "fake_quantize": "spiketime.functional",
    "init_delay_state": "spiketime.functional",
    "li_sequence": "spiketime.functional",
    "li_step": "spiketime.functional",
    "lif_init": "spiketime.functional",
    "lif_sequence": "spiketime.functional",
    "lif_sequence_recurrent": "spiketime.functional",
    "lif_step": "spiketime.functional",
    "power_law_taus": "spiketime.functional",
    "qmax": "spiketime.functional",
    "quantize": "spiketime.functional",
    "sigma_delta_init": "spiketime.functional",
    "sigma_delta_step": "spiketime.functional",
    "synaptic_delay_linear": "spiketime.functional",
    "weight_scale": "spiketime.functional",
    # spiketime.nn
    "DelayedLinear": "spiketime.nn",
    "GammaBuckets": "spiketime.nn",
    "GammaConv2d": "spiketime.nn",
    "GammaDense": "spiketime.nn",
    "GammaNetwork": "spiketime.nn",
    "LI": "spiketime.nn",
    "LIF": "spiketime.nn",
    "Recurrent": "spiketime.nn",
    "SpikingNetwork": "spiketime.nn",
    # spiketime.learning
    "GammaOnlineLearner": "spiketime.learning",
    "OnlineLearner": "spiketime.learning",
    "OnlineResult": "spiketime.learning",
    "SAM": "spiketime.learning",
    "batches": "spiketime.learning",
    "bptt_epoch": "spiketime.learning",
    "bptt_step": "spiketime.learning",
    "class_scores": "spiketime.learning",
    "count_baseline": "spiketime.learning",
    "epoch_generator": "spiketime.learning",
    "evaluate_model": "spiketime.learning",
    "gamma_online_gradients": "spiketime.learning",
    "online_gradients": "spiketime.learning",
    "perturbed": "spiketime.learning",
    "readout_loss": "spiketime.learning",
    "run_sequence": "spiketime.learning",
    "sam_perturbation": "spiketime.learning",
    "spike_rate": "spiketime.learning",
    "time_major": "spiketime.learning",
    # spiketime.errors
    "InputError": "spiketime.errors",
    "TrainingDiverged": "spiketime.errors",
    # spiketime.hardware
    "HARDWARE_BITS": "spiketime.hardware",
    "HardwareLayer": "spiketime.hardware",
    "HardwareSpec": "spiketime.hardware",
    "QUANT_MODES": "spiketime.hardware",
    "activation_sparsity": "spiketime.hardware",
    "evaluate_hardware": "spiketime.hardware",
    "float_costs": "spiketime.hardware",
    "footprint_bytes": "spiketime.hardware",
    "hard_spikes": "spiketime.hardware",
    "hardware_layers": "spiketime.hardware",
    "leak_shift": "spiketime.hardware",
    "network_synops": "spiketime.hardware",
    "quantized_weights_model": "spiketime.hardware",
    "run_fake_quant": "spiketime.hardware",
    "run_integer": "spiketime.hardware",
    "synops": "spiketime.hardware",
    # spiketime.export
    "from_nir": "spiketime.export",
    "to_nir": "spiketime.export",
    "write_nir": "spiketime.export",
    # spiketime.data
    "DataFormatError": "spiketime.data",
    "EventSet": "spiketime.data",
    "Split": "spiketime.data",
    "Splits": "spiketime.data",
    "bin_events": "spiketime.data",
    "data_home": "spiketime.data",
    "ensure_dataset": "spiketime.data",
    "inspect": "spiketime.data",
    "load_array_file": "spiketime.data",
    "rate_normalise": "spiketime.data",
    "read_aedat31": "spiketime.data",
    "read_dvs_gesture": "spiketime.data",
    "read_nmnist": "spiketime.data",
    "read_shd": "spiketime.data",
    "split_seed": "spiketime.data",
    "timing_task": "spiketime.data",
    "write_aedat31": "spiketime.data",
    "write_nmnist": "spiketime.data",
    "write_shd": "spiketime.data",
    # spiketime.evaluate
    "DEFAULT_LEVELS": "spiketime.evaluate",
    "LEVEL_UNITS": "spiketime.evaluate",
    "PERTURBATIONS": "spiketime.evaluate",
    "perturb": "spiketime.evaluate",
    "perturbation_curve": "spiketime.evaluate",
    "plot_delay_histogram": "spiketime.evaluate",
    "plot_learning_curves": "spiketime.evaluate",
    "plot_perturbation": "spiketime.evaluate",
    "plot_raster": "spiketime.evaluate",
    # spiketime.surrogate
    "Arctan": "spiketime.surrogate",
    "FastSigmoid": "spiketime.surrogate",
    "Gaussian": "spiketime.surrogate",
    "SURROGATES": "spiketime.surrogate",
    "Sigmoid": "spiketime.surrogate",
    "Surrogate": "spiketime.surrogate",
    "Triangle": "spiketime.surrogate",
    "make_surrogate": "spiketime.surrogate",
    "spike": "spiketime.surrogate",
}

__all__ = ["__version__", *SUBPACKAGES, *_NAMES]


__getattr__ = lazy_names("spiketime", {**dict.fromkeys(SUBPACKAGES, ""), **_NAMES}, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
