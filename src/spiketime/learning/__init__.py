"""Learners usable from a plain PyTorch loop: BPTT (:mod:`~spiketime.learning.bptt`), online three-factor
learning (:mod:`~spiketime.learning.online`), SpikingGamma online learning
(:mod:`~spiketime.learning.gamma_online`), SAM/ASAM (:class:`SAM`) for all of them, and the losses."""

from spiketime.errors import TrainingDiverged
from spiketime.learning.baseline import count_baseline
from spiketime.learning.bptt import batches, bptt_epoch, bptt_step, epoch_generator, evaluate, time_major
from spiketime.learning.gamma_online import GammaOnlineLearner, gamma_online_gradients, run_sequence
from spiketime.learning.losses import class_scores, readout_loss, spike_rate
from spiketime.learning.online import OnlineLearner, OnlineResult, online_gradients
from spiketime.learning.sam import SAM, perturbed, sam_perturbation

__all__ = [
    "SAM",
    "GammaOnlineLearner",
    "OnlineLearner",
    "OnlineResult",
    "TrainingDiverged",
    "batches",
    "bptt_epoch",
    "bptt_step",
    "class_scores",
    "count_baseline",
    "epoch_generator",
    "evaluate_model",
    "gamma_online_gradients",
    "online_gradients",
    "perturbed",
    "readout_loss",
    "run_sequence",
    "sam_perturbation",
    "spike_rate",
    "time_major",
]

# ``spiketime.evaluate`` is the package of timing tests, so the top level names this function evaluate_model
evaluate_model = evaluate
