"""Timing-only tests of a trained network: perturbation curves (jitter, deletion, reversal) and plots."""

from spiketime.evaluate.levels import DEFAULT_LEVELS, LEVEL_UNITS, PERTURBATIONS
from spiketime.evaluate.perturb import perturb, perturbation_curve
from spiketime.evaluate.plots import plot_delay_histogram, plot_learning_curves, plot_perturbation, plot_raster

__all__ = ["DEFAULT_LEVELS", "LEVEL_UNITS", "PERTURBATIONS", "perturb", "perturbation_curve", "plot_delay_histogram",
           "plot_learning_curves", "plot_perturbation", "plot_raster"]
