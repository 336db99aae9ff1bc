"""`DTypePolicy`: a layer's variable dtype and compute dtype, after `keras.DTypePolicy`.

The float policies exist: `float16`, `float32`, `float64`, `bfloat16`, and the mixed ones
`mixed_float16` and `mixed_bfloat16` (float32 variables, float16 or bfloat16 computation), with
Keras's names and dtypes. Keras's serialized form
(`{"module": "keras", "class_name": "DTypePolicy", "config": {"name": ...}, ...}`) is read and
written, so layer configs move between Keras and numba_gn unchanged. Nothing named in a config
is ever imported.

bfloat16 is the dtype of the optional `ml_dtypes` package (NumPy has none of its own). A
bfloat16 policy is created, compared and serialized without it; `ml_dtypes` is imported when the
policy is first used for dtypes (`compute_dtype` or `variable_dtype`, which layers read to
create weights and cast inputs), and an `ImportError` naming it is raised there if it is
missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from numba_gn._dtypes import require
from numba_gn.params._registry import check_config_envelope

__all__ = ["DTypePolicy", "get"]

# name -> (variable dtype, compute dtype)
_POLICIES = {
    "float16": ("float16", "float16"),
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "mixed_float16": ("float32", "float16"),
    "mixed_bfloat16": ("float32", "bfloat16"),
}
# Keras 3.0-3.5 wrote "FloatDTypePolicy"; later versions write "DTypePolicy".
_CLASS_NAMES = frozenset({"DTypePolicy", "FloatDTypePolicy"})


class DTypePolicy:
    """The dtypes a layer uses: `variable_dtype` for its weights, `compute_dtype` for math.

    Parameters
    ----------
    name : str, default "float32"
        One of `"float16"`, `"float32"`, `"float64"`, `"bfloat16"`, `"mixed_float16"`,
        `"mixed_bfloat16"`. The bfloat16 ones need `ml_dtypes` once used (see the module
        docstring).
    """

    __slots__ = ("name", "_variable_dtype", "_compute_dtype")

    def __init__(self, name: str = "float32") -> None:
        if not isinstance(name, str) or name not in _POLICIES:
            raise ValueError(
                f"Unsupported dtype policy {name!r}; numba_gn supports "
                f"{', '.join(sorted(_POLICIES))} (quantized policies are not implemented)."
            )
        self.name = name
        self._variable_dtype, self._compute_dtype = _POLICIES[name]

    @property
    def variable_dtype(self) -> str:
        """The dtype of the weights, as a name (`"bfloat16"` imports `ml_dtypes`)."""
        return require(self._variable_dtype)

    @property
    def compute_dtype(self) -> str:
        """The dtype of the computation, as a name (`"bfloat16"` imports `ml_dtypes`)."""
        return require(self._compute_dtype)

    @property
    def is_mixed(self) -> bool:
        """Whether the compute dtype differs from the variable dtype (the `mixed_` policies)."""
        return self._variable_dtype != self._compute_dtype

    def get_config(self) -> dict[str, Any]:
        """`{"name": name}`, as Keras."""
        return {"name": self.name}

    def serialize(self) -> dict[str, Any]:
        """The dict Keras 3 writes for a layer's `"dtype"` config entry."""
        return {
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": self.get_config(),
            "registered_name": None,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self.name}">'


def get(identifier: Any) -> DTypePolicy:
    """Resolve a layer's `dtype` argument to a `DTypePolicy`.

    Accepts None (float32, Keras's default floatx), a policy, a policy name or dtype name, a
    NumPy dtype or scalar type (`np.float64`), or a Keras config dict.

    Raises
    ------
    ValueError
        Unknown or unsupported policy name, or a malformed config dict.
    TypeError
        Anything else.
    """
    if identifier is None:
        return DTypePolicy("float32")
    if isinstance(identifier, DTypePolicy):
        return identifier
    if isinstance(identifier, str):
        return DTypePolicy(identifier)
    if isinstance(identifier, Mapping):
        return DTypePolicy(_name_from_config(identifier))
    if isinstance(identifier, np.dtype) or (
        isinstance(identifier, type) and issubclass(identifier, np.generic)
    ):
        return DTypePolicy(np.dtype(identifier).name)
    raise TypeError(
        f"Could not interpret dtype {identifier!r} of type {type(identifier).__name__}; "
        "expected None, a policy name such as 'float32' or 'mixed_float16', a NumPy dtype, "
        "a DTypePolicy or a Keras dtype-policy config dict."
    )


def _name_from_config(config: Mapping[str, Any]) -> str:
    """The policy name inside a Keras `{"class_name": "DTypePolicy", "config": {...}}` dict."""
    check_config_envelope(config, "dtype policy")
    class_name = config.get("class_name")
    if class_name not in _CLASS_NAMES:
        raise ValueError(
            f"Unsupported dtype policy class {class_name!r}; only {sorted(_CLASS_NAMES)} "
            "(a plain float policy) can be read."
        )
    inner = config.get("config")
    if not isinstance(inner, Mapping) or set(inner) != {"name"}:
        raise ValueError(f"A dtype policy config needs 'config': {{'name': ...}}, got {inner!r}.")
    return inner["name"]
