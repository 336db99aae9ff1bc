"""Keras-style layers built from :class:`~numba_gn.params.Variable` weights and autograd ops.

* :class:`Layer` — the base class: lazy ``build``, ``add_weight``, weights, ``losses``, configs;
* :class:`GroupNormalization` — Keras 3's layer, plus ``group_size`` and ``mask`` support;
* :class:`InputSpec`, :class:`DTypePolicy` — the input checks and dtype policies layers use.
"""

from numba_gn.layers.base import Layer
from numba_gn.layers.dtype_policy import DTypePolicy
from numba_gn.layers.group_normalization import GroupNormalization
from numba_gn.layers.input_spec import InputSpec

__all__ = ["DTypePolicy", "GroupNormalization", "InputSpec", "Layer"]
