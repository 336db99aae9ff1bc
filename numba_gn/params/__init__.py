"""Parameter support: Keras-compatible initializers, regularizers and constraints."""

from numba_gn.params import constraints, initializers, regularizers

__all__ = ["constraints", "initializers", "regularizers"]
