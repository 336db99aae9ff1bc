"""numba_gn: Keras's GroupNormalization as a fast, exact, Numba-accelerated CPU engine.

Layers of the package, each built on the one before it:

* :mod:`numba_gn.kernels` — parallel Numba kernels (statistics, forward, backward);
* :mod:`numba_gn.functional` — :func:`group_norm` / :func:`group_norm_backward` on NumPy arrays;
* :mod:`numba_gn.autograd` — :class:`Tensor`, :class:`GradientTape`, ops, :func:`gradcheck`;
* :mod:`numba_gn.params` — :class:`Variable`, initializers, regularizers, constraints;
* :mod:`numba_gn.layers` — :class:`GroupNormalization` (Keras 3 interface) and friends;
* :mod:`numba_gn.training` — losses, optimizers, metrics and the ``fit`` loop.

The names Keras code uses are where Keras has them, so that ``import numba_gn as keras`` reads
as Keras: ``numba_gn.Sequential``, ``numba_gn.Input``, ``numba_gn.Layer``, ``numba_gn.layers``,
``numba_gn.optimizers``, ``numba_gn.losses``, ``numba_gn.metrics``, ``numba_gn.activations``,
``numba_gn.initializers``, ``numba_gn.regularizers``, ``numba_gn.constraints``.
"""

import sys as _sys

from numba_gn import autograd, buffers, layers, params, training
from numba_gn._cache import KernelCacheWarning
from numba_gn._warmup import warmup
from numba_gn.autograd import Function, GradientTape, Tensor, gradcheck
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.functional_masked import group_norm_masked, group_norm_masked_backward
from numba_gn.layers import GroupNormalization, Input, Layer, Sequential, activations
from numba_gn.params import Variable, constraints, initializers, regularizers
from numba_gn.training import losses, metrics, optimizers

__version__ = "0.1.0"

# Keras code imports from these as modules too (`from keras.optimizers import Adam`): register
# each under its Keras name, the same module object rather than a copy, so that
# `from numba_gn.optimizers import Adam` works and there is one module per thing.
for _name, _module in {
    "activations": activations,
    "constraints": constraints,
    "initializers": initializers,
    "losses": losses,
    "metrics": metrics,
    "optimizers": optimizers,
    "regularizers": regularizers,
}.items():
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
del _name, _module

__all__ = [
    "Function",
    "GradientTape",
    "GroupNormalization",
    "Input",
    "KernelCacheWarning",
    "Layer",
    "Sequential",
    "Tensor",
    "Variable",
    "__version__",
    "activations",
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
    "losses",
    "metrics",
    "optimizers",
    "params",
    "regularizers",
    "training",
    "warmup",
]
