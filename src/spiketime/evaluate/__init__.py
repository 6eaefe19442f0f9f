"""Timing-only tests of a trained network: perturbation curves (jitter, deletion, reversal) and plots.

The names are imported on first use (the CLI reads :data:`PERTURBATIONS` without loading torch)."""

from spiketime._lazy import lazy_names
from spiketime.evaluate.levels import DEFAULT_LEVELS, LEVEL_UNITS, PERTURBATIONS

_NAMES = {
    "perturb": "spiketime.evaluate.perturb",
    "perturbation_curve": "spiketime.evaluate.perturb",
    **{
        n: "spiketime.evaluate.plots"
        for n in ("plot_delay_histogram", "plot_learning_curves", "plot_perturbation", "plot_raster")
    },
}
__all__ = ["DEFAULT_LEVELS", "LEVEL_UNITS", "PERTURBATIONS", *_NAMES]
__getattr__ = lazy_names("spiketime.evaluate", _NAMES, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
