"""spiketime: spiking neural networks that learn precise spike timing."""

__version__ = "0.1.0"

__all__ = ["__version__"]
