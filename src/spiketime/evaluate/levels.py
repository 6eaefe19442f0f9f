"""The test-time perturbations' names, level units, default levels and level checks (no torch: the CLI builds
its parser from them). The perturbations themselves are in :mod:`spiketime.evaluate.perturb`."""

from __future__ import annotations

PERTURBATIONS = ("jitter", "neuron_jitter", "delete", "reverse")
"""The test-time perturbations: spike-time jitter (per spike or per neuron), deletion, time reversal."""
LEVEL_UNITS = {
    "jitter": "sigma (ms)",
    "neuron_jitter": "sigma (ms)",
    "delete": "deletion probability",
    "reverse": "reversed (0/1)",
}
"""What a perturbation's level means, per perturbation."""


def check_level(kind: str, level: float) -> None:
    """Raise ValueError for an unknown perturbation or an impossible level."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}: expected one of {', '.join(PERTURBATIONS)}")
    ok = {"jitter": level >= 0, "neuron_jitter": level >= 0, "delete": 0 <= level <= 1, "reverse": level in (0, 1)}[
        kind
    ]
    if not ok:
        raise ValueError(
            f"{kind} level {level}: expected {LEVEL_UNITS[kind]} "
            f"({'in [0, 1]' if kind == 'delete' else '0 or 1' if kind == 'reverse' else '>= 0'})"
        )


DEFAULT_LEVELS = {
    "jitter": [0, 1, 2, 5, 10, 20],
    "neuron_jitter": [0, 1, 2, 5, 10, 20],
    "delete": [0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9],
    "reverse": [0, 1],
}
"""The levels a perturbation curve runs by default, per perturbation."""
