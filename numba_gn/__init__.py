"""numba_gn: Keras's GroupNormalization as a fast, exact, Numba-accelerated CPU engine.

Layers of the package, each built on the one before it:

* :mod:`numba_gn.kernels` — parallel Numba kernels (statistics, forward, backward);
* :mod:`numba_gn.functional` — :func:`group_norm` / :func:`group_norm_backward` on NumPy arrays;
* :mod:`numba_gn.autograd` — :class:`Tensor`, :class:`GradientTape`, ops, :func:`gradcheck`;
* :mod:`numba_gn.params` — :class:`Variable`, initializers, regularizers, constraints;
* :mod:`numba_gn.layers` — :class:`GroupNormalization` (Keras 3 interface) and friends.
"""

from numba_gn import autograd, buffers, layers, params
from numba_gn._cache import KernelCacheWarning
from numba_gn._warmup import warmup
from numba_gn.autograd import Function, GradientTape, Tensor, gradcheck
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.functional_masked import group_norm_masked, group_norm_masked_backward
from numba_gn.layers import GroupNormalization
from numba_gn.params import Variable, constraints, initializers, regularizers

__version__ = "0.1.0"

__all__ = [
    "Function",
    "GradientTape",
    "GroupNormalization",
    "KernelCacheWarning",
    "Tensor",
    "Variable",
    "__version__",
    "autograd",
    "buffers",
    "constraints",
    "gradcheck",
    "group_norm",
    "group_norm_backward",
    "group_norm_masked",
    "group_norm_masked_backward",
    "initializers",
    "layers",
    "params",
    "regularizers",
    "warmup",
]
