"""bfloat16 as an optional dtype: recognised without `ml_dtypes`, which is imported on use only.

NumPy has no bfloat16 of its own; JAX and Keras use the one of the `ml_dtypes` package, a
user-defined NumPy dtype (kind `"V"`, two bytes, named `"bfloat16"`). An array of it can only
exist once `ml_dtypes` is imported, so recognising one needs no import (`is_bfloat16`), and
`import numba_gn` never imports `ml_dtypes`. Only code that must *create* a bfloat16 array (or
resolve the name `"bfloat16"`, which NumPy knows only once `ml_dtypes` has registered it) calls
`bfloat16()`, which imports it or says clearly that it is missing.

This module is the one place on the Python side that knows how a bfloat16 dtype looks; the
kernels' side is `numba_gn.kernels._common` (bfloat16 travels there as int16 bits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BFLOAT16", "bfloat16", "is_bfloat16", "is_float", "require"]

#: The dtype name, as `ml_dtypes`, JAX and Keras spell it.
BFLOAT16 = "bfloat16"


def is_bfloat16(dtype: Any) -> bool:
    """Whether `dtype` (a NumPy dtype) is ml_dtypes' bfloat16, in either byte order."""
    return (
        isinstance(dtype, np.dtype)
        and dtype.kind == "V"
        and dtype.itemsize == 2
        and dtype.name == BFLOAT16
    )


def is_float(dtype: Any) -> bool:
    """Whether `dtype` is a real floating dtype: NumPy's (kind `"f"`) or bfloat16."""
    return isinstance(dtype, np.dtype) and (dtype.kind == "f" or is_bfloat16(dtype))


def bfloat16() -> np.dtype:
    """The bfloat16 dtype, importing `ml_dtypes` (which also teaches NumPy the name).

    Raises:
        ImportError: `ml_dtypes` is not installed; the message says how to install it.
    """
    try:
        import ml_dtypes
    except ImportError as exc:
        raise ImportError(
            "bfloat16 needs the `ml_dtypes` package (NumPy has no bfloat16 of its own); "
            "install it with `pip install ml_dtypes`."
        ) from exc
    return np.dtype(ml_dtypes.bfloat16)


def require(name: str) -> str:
    """`name`, after importing `ml_dtypes` if it is `"bfloat16"` (see `bfloat16`)."""
    if name == BFLOAT16:
        bfloat16()
    return name
