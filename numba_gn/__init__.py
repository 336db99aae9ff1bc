"""numba_gn: Keras's GroupNormalization as a fast, exact, Numba-accelerated CPU engine.

Layers of the package, each built on the one before it:

* `numba_gn.kernels` — parallel Numba kernels (statistics, forward, backward);
* `numba_gn.functional` — `group_norm` / `group_norm_backward` on NumPy arrays;
* `numba_gn.autograd` — `Tensor`, `GradientTape`, ops, `gradcheck`;
* `numba_gn.params` — `Variable`, initializers, regularizers, constraints;
* `numba_gn.layers` — `GroupNormalization` (Keras 3 interface) and friends;
* `numba_gn.training` — losses, optimizers, metrics and the `fit` loop;
* `numba_gn.models` — `Model` (functional and subclassed) and `Sequential`, with the loop
  mixed in.

The names Keras code uses are where Keras has them, so that `import numba_gn as keras` reads
as Keras: `numba_gn.Model`, `numba_gn.Sequential`, `numba_gn.Input`, `numba_gn.Layer`,
`numba_gn.KerasTensor`, `numba_gn.layers`, `numba_gn.models`,
`numba_gn.optimizers`, `numba_gn.losses`, `numba_gn.metrics`, `numba_gn.callbacks`,
`numba_gn.activations`, `numba_gn.initializers`, `numba_gn.regularizers`,
`numba_gn.constraints`, `numba_gn.saving`.
"""

import sys as _sys

from numba_gn import autograd, buffers, layers, models, params, saving, training
from numba_gn import functional_jit as _functional_jit  # noqa: F401 (registers the @njit overloads)
from numba_gn._cache import KernelCacheWarning
from numba_gn._warmup import warmup
from numba_gn.autograd import Function, GradientTape, Tensor, gradcheck
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.functional_masked import group_norm_masked, group_norm_masked_backward
from numba_gn.layers import GroupNormalization, Input, Layer, activations
from numba_gn.layers.symbolic import KerasTensor
from numba_gn.models import Model, Sequential
from numba_gn.params import Variable, constraints, initializers, regularizers
from numba_gn.training import callbacks, losses, metrics, optimizers

__version__ = "0.1.0"

# Keras code imports from these as modules too (`from keras.optimizers import Adam`): register
# each under its Keras name, the same module object rather than a copy, so that
# `from numba_gn.optimizers import Adam` works and there is one module per thing.
for _name, _module in {
    "activations": activations,
    "callbacks": callbacks,
    "constraints": constraints,
    "initializers": initializers,
    "losses": losses,
    "models": models,
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
    "KerasTensor",
    "KernelCacheWarning",
    "Layer",
    "Model",
    "Sequential",
    "Tensor",
    "Variable",
    "__version__",
    "activations",
    "autograd",
    "buffers",
    "callbacks",
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
    "models",
    "optimizers",
    "params",
    "regularizers",
    "saving",
    "training",
    "warmup",
]
