"""Keras-style layers built from `Variable` weights and autograd ops.

* `Layer` — the base class: lazy `build`, `add_weight`, weights, `losses`, configs;
* `GroupNormalization` — Keras 3's layer, plus `group_size` and `mask` support;
* `LayerNormalization`, `BatchNormalization` — Keras 3's layers (moving statistics too);
* `Input`, `InputLayer` — a model's symbolic inputs (`numba_gn.layers.symbolic`);
* `InputSpec`, `DTypePolicy` — the input checks and dtype policies layers use.
"""

from numba_gn.layers.base import Layer
from numba_gn.layers.conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D
from numba_gn.layers.core import Activation, Dropout, Flatten
from numba_gn.layers.dense import Dense
from numba_gn.layers.dtype_policy import DTypePolicy
from numba_gn.layers.group_normalization import GroupNormalization
from numba_gn.layers.input_layer import Input, InputLayer
from numba_gn.layers.input_spec import InputSpec
from numba_gn.layers.merging import Add, Average, Concatenate, Multiply, Subtract
from numba_gn.layers.normalization import BatchNormalization, LayerNormalization
from numba_gn.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from numba_gn.layers.reshaping import (
    Cropping2D,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding2D,
)

__all__ = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Conv2DTranspose",
    "Cropping2D",
    "DTypePolicy",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GroupNormalization",
    "Input",
    "InputLayer",
    "InputSpec",
    "Layer",
    "LayerNormalization",
    "MaxPooling1D",
    "MaxPooling2D",
    "Multiply",
    "Reshape",
    "Subtract",
    "UpSampling1D",
    "UpSampling2D",
    "ZeroPadding2D",
]
