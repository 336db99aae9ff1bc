"""Parameter support: Keras-compatible initializers, regularizers and constraints."""

from numba_gn.params import constraints, initializers, regularizers
from numba_gn.params.variable import Variable

__all__ = ["Variable", "constraints", "initializers", "regularizers"]
