"""Keras-style layers built from :class:`~numba_gn.params.Variable` weights and autograd ops.

* :class:`Layer` — the base class: lazy ``build``, ``add_weight``, weights, ``losses``, configs;
* :class:`GroupNormalization` — Keras 3's layer, plus ``group_size`` and ``mask`` support;
* :class:`InputSpec`, :class:`DTypePolicy` — the input checks and dtype policies layers use.
"""

from numba_gn.layers.base import Layer
from numba_gn.layers.conv import Conv1D, Conv2D
from numba_gn.layers.core import Activation, Dropout, Flatten
from numba_gn.layers.dense import Dense
from numba_gn.layers.dtype_policy import DTypePolicy
from numba_gn.layers.group_normalization import GroupNormalization
from numba_gn.layers.input_spec import InputSpec
from numba_gn.layers.pooling import GlobalAveragePooling1D, GlobalAveragePooling2D
from numba_gn.layers.sequential import Input, InputLayer, Sequential

__all__ = [
    "Activation",
    "Conv1D",
    "Conv2D",
    "DTypePolicy",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GroupNormalization",
    "Input",
    "InputLayer",
    "InputSpec",
    "Layer",
    "Sequential",
]
