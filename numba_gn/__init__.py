"""numba_gn: Keras's GroupNormalization as a fast, exact, Numba-accelerated CPU engine."""

__version__ = "0.1.0"

__all__ = ["__version__"]
