"""Export to and import from other simulators and chips: NIR (:mod:`spiketime.export.nir_graph`)."""

from spiketime.export.nir_graph import from_nir, to_nir, write_nir

__all__ = ["from_nir", "to_nir", "write_nir"]
