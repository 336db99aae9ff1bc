"""numba_gn: Keras's GroupNormalization as a fast, exact, Numba-accelerated CPU engine."""

from numba_gn._warmup import warmup
from numba_gn.functional import group_norm, group_norm_backward

__version__ = "0.1.0"

__all__ = ["__version__", "group_norm", "group_norm_backward", "warmup"]
