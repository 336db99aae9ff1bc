"""Layer math on bfloat16 data, computed in float32 and rounded to bfloat16 once.

NumPy has no bfloat16 arithmetic of its own. `ml_dtypes` adds element-wise ufuncs, which the
simple layers (ReLU, merges, reshapes, max pooling) use as they are; but its matmul is slow and
returns float32, Numba's convolution kernels take float32/float64 only, and SciPy's special
functions (the sigmoid and GELU fallbacks) return float64. So the layers that multiply, average
or evaluate a transcendental function widen bfloat16 to float32 (exact), compute there, and
round the result to bfloat16 once. Weights are first cast to the compute dtype exactly as Keras
casts them under a `mixed_bfloat16` policy, so they carry bfloat16's rounding as in Keras.

Keras's NumPy backend computes these in bfloat16 ufuncs step by step (rounding after each), or
multiplies in float32 but rounds the product before adding the bias; results agree with it to
bfloat16 rounding, and the float32 path is the more accurate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numba_gn._dtypes import is_bfloat16, is_float
from numba_gn.autograd import Tensor, ops

__all__ = ["in_float32", "product"]

_F32 = np.dtype(np.float32)


def _bfloat16(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and is_bfloat16(np.dtype(dtype))


def in_float32(fn: Callable[..., Any], x: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn(x, *args, **kwargs)`; for bfloat16 `x`, computed in float32, returned as bfloat16.

    The casts are taped ops, so gradients flow back through them.
    """
    if not _bfloat16(x):
        return fn(x, *args, **kwargs)
    return ops.cast(fn(ops.cast(x, _F32), *args, **kwargs), x.dtype)


def product(layer: Any, op: Callable[[Any, Any, Any], Tensor], inputs: Tensor) -> Tensor:
    """`op(x, kernel, bias)` of a Dense or convolution `layer`, under its dtype policy.

    As Keras does: non-float inputs are cast to the compute dtype, and under a mixed policy the
    float32 weights are cast to the compute dtype. bfloat16 is then computed in float32 and
    rounded once.
    """
    x = inputs
    if not is_float(x.dtype):
        x = x.astype(layer.compute_dtype)
    kernel, bias = layer.kernel, layer.bias
    if layer.dtype_policy.is_mixed:  # float32 weights, 16-bit math
        kernel = kernel.astype(layer.compute_dtype)
        bias = None if bias is None else bias.astype(layer.compute_dtype)
    if not _bfloat16(x):
        return op(x, kernel, bias)
    bias = None if bias is None else ops.cast(bias, _F32)
    y = op(ops.cast(x, _F32), ops.cast(kernel, _F32), bias)
    return ops.cast(y, x.dtype)
