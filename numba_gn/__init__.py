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
from typing import TYPE_CHECKING

from numba_gn import buffers
from numba_gn import functional_jit as _functional_jit  # noqa: F401 (registers the @njit overloads)
from numba_gn._cache import KernelCacheWarning
from numba_gn._lazy import AliasFinder as _AliasFinder
from numba_gn._lazy import lazy_attribute as _lazy_attribute
from numba_gn._warmup import warmup
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.functional_masked import group_norm_masked, group_norm_masked_backward

__version__ = "0.1.0"

# What `group_norm` needs is imported above. Everything else is imported on first use (see
# `numba_gn._lazy`): where each public name lives, `(module, attribute)` or `(module, None)`.
_LAZY: dict[str, tuple[str, str | None]] = {
    **{
        name: (f"numba_gn.{name}", None)
        for name in ("autograd", "layers", "models", "params", "saving", "training")
    },
    **{name: ("numba_gn.autograd", name) for name in ("Function", "GradientTape", "Tensor")},
    "gradcheck": ("numba_gn.autograd", "gradcheck"),
    **{name: ("numba_gn.layers", name) for name in ("GroupNormalization", "Input", "Layer")},
    "KerasTensor": ("numba_gn.layers.symbolic", "KerasTensor"),
    "Model": ("numba_gn.models", "Model"),
    "Sequential": ("numba_gn.models", "Sequential"),
    "Variable": ("numba_gn.params", "Variable"),
}

# Keras code imports these as modules too (`from keras.optimizers import Adam`): each Keras name
# is the module that holds those things, the same module object rather than a copy, so that
# `from numba_gn.optimizers import Adam` works and there is one module per thing.
_KERAS_MODULES = {
    "activations": "numba_gn.layers.activations",
    "callbacks": "numba_gn.training.callbacks",
    "constraints": "numba_gn.params.constraints",
    "initializers": "numba_gn.params.initializers",
    "losses": "numba_gn.training.losses",
    "metrics": "numba_gn.training.metrics",
    "optimizers": "numba_gn.training.optimizers",
    "regularizers": "numba_gn.params.regularizers",
}
_LAZY.update({name: (module, None) for name, module in _KERAS_MODULES.items()})
_sys.meta_path.append(
    _AliasFinder({f"{__name__}.{name}": module for name, module in _KERAS_MODULES.items()})
)


def __getattr__(name: str) -> object:
    return _lazy_attribute(__name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what the table above imports, for type checkers and editors
    from numba_gn import autograd, layers, models, params, saving, training
    from numba_gn.autograd import Function, GradientTape, Tensor, gradcheck
    from numba_gn.layers import GroupNormalization, Input, Layer, activations
    from numba_gn.layers.symbolic import KerasTensor
    from numba_gn.models import Model, Sequential
    from numba_gn.params import Variable, constraints, initializers, regularizers
    from numba_gn.training import callbacks, losses, metrics, optimizers

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
