"""`InputLayer` and `Input`: where a model's data comes in.

`Input(shape)` returns a symbolic tensor (a [KerasTensor][numba_gn.layers.symbolic.KerasTensor]
made by a new `InputLayer`), as Keras's does: call layers on it to build a functional model
(`numba_gn.Model(inputs, outputs)`), or put it first in a `Sequential` model to declare the
input shape (so that the model can be built and summarised before it sees data). The layer
computes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numba_gn import _checks
from numba_gn.autograd import Tensor
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.symbolic import KerasTensor, Node

__all__ = ["Input", "InputLayer"]


class InputLayer(Layer):
    """The layer behind `Input`: declares an input's shape and dtype; passes data through.

    Keras's rules: exactly one of `shape` and `batch_shape` is given, `batch_size` only
    with `shape`; a shape's entries are ints >= 0 or `None` (unknown), never floats or
    strings. Stricter than Keras, since no array could have such a shape: a shape is a list or
    tuple (not a set, string or other iterable), bools are not dimensions, the batch size is at
    least 1, no dimension exceeds `sys.maxsize`, `batch_shape` has a batch axis, and there
    are at most 64 axes with the batch axis (NumPy's limit). Every violation is a `ValueError`
    (as in Keras) naming the argument, or the entry (`shape[1]`) at fault.

    As in Keras, the layer is built when made, and its symbolic tensor (`output`) is made
    with it.

    Parameters
    ----------
    shape : tuple, optional
        Shape of one sample (without the batch axis).
    batch_size : int, optional
        A fixed batch size (>= 1); `None`, the default, leaves it open.
    dtype : dtype or DTypePolicy, optional
    batch_shape : tuple, optional
        The full shape with the batch axis (instead of `shape`/`batch_size`).
    name : str, optional
    sparse, ragged, optional : bool, default False
        Accepted for Keras compatibility at `False` (or `None`, Keras's default for
        `sparse` and `ragged`) only: `True` raises `NotImplementedError` naming the
        argument, and anything that is not a bool a `TypeError`.
    """

    def __init__(
        self,
        shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        batch_shape: Sequence[int | None] | None = None,
        name: str | None = None,
        sparse: bool | None = False,
        ragged: bool | None = False,
        optional: bool = False,
    ) -> None:
        # Flags first: a truthy string such as "False" must not read as a request for an
        # unsupported feature, nor a falsy 0 pass for False.
        for flag, value, none_ok in (
            ("sparse", sparse, True),
            ("ragged", ragged, True),
            ("optional", optional, False),
        ):
            if value is None and none_ok:
                continue
            if _checks.boolean(value, flag):
                raise NotImplementedError(
                    f"InputLayer: `{flag}=True` is not supported: every input of a numba_gn "
                    f"model is one dense NumPy array. Received: {flag}={value!r}"
                )
        if shape is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `shape` and `batch_shape` at the same time. Received: "
                f"shape={_checks.show(shape)}, batch_shape={_checks.show(batch_shape)}"
            )
        if batch_size is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `batch_size` and `batch_shape` at the same time. "
                f"Received: batch_size={_checks.show(batch_size)}, "
                f"batch_shape={_checks.show(batch_shape)}"
            )
        if batch_shape is not None:
            dims = _standardize_shape(batch_shape, "batch_shape", max_ndim=_checks.MAX_NDIM)
            if not dims:  # models replace its first axis by the batch size
                raise ValueError(
                    "`batch_shape` must include the batch axis (`None` for any batch size). "
                    "Received: batch_shape=()"
                )
            if dims[0] is not None:
                _checks.integer(dims[0], "batch_shape[0]", low=1)
        elif shape is not None:
            # The batch axis is added in front: one axis fewer is left for the sample.
            sample = _standardize_shape(shape, "shape", max_ndim=_checks.MAX_NDIM - 1)
            if batch_size is not None:
                batch_size = _checks.integer(batch_size, "batch_size", low=1,
                                             type_error=ValueError)
            dims = (batch_size, *sample)
        else:
            raise ValueError("InputLayer needs a `shape` (or `batch_shape`) argument.")
        super().__init__(name=name, dtype=dtype)
        self.batch_shape: Shape = dims
        # Keras's InputLayer is built from the start, and makes its symbolic tensor (named
        # after the layer when a name is given) with the node that produces it.
        self._build_shape = dims
        self.built = True
        tensor = KerasTensor(dims, self.dtype, name=name)
        Node(self, (), {}, [tensor])
        self._output = tensor

    @property
    def output(self) -> KerasTensor:
        """The symbolic tensor this layer produces (what `Input` returns)."""
        return self._output

    def call(self, inputs: Tensor) -> Tensor:
        """The input, unchanged."""
        return inputs

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for InputLayer."""
        return {
            "batch_shape": self.batch_shape,
            "dtype": self.dtype,
            "sparse": False,
            "ragged": False,
            "name": self.name,
            "optional": False,
        }


def _standardize_shape(value: object, name: str, *, max_ndim: int) -> Shape:
    """`value` as a shape tuple (ints >= 0 and Nones), else a `ValueError` naming `name`.

    Keras's `standardize_shape` rules (a `ValueError` for anything that is not a shape),
    stricter on bools, ints too large for an array dimension and the number of axes.
    """
    # Only ordered containers: a set or dict has no order of axes, a string is not a shape
    # even when its characters are digits.
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(
            f"`{name}` must be a tuple or list of ints >= 0 or None, got "
            f"{name}={_checks.show(value)} (of type {type(value).__name__})."
        )
    if len(value) > max_ndim:
        raise ValueError(
            f"`{name}` has {len(value)} axes; at most {max_ndim} are possible (NumPy arrays have "
            f"at most {_checks.MAX_NDIM}, the batch axis included). Received: "
            f"{name}={_checks.show(value)}"
        )
    return tuple(
        None if d is None
        else _checks.integer(d, f"{name}[{i}]", low=0, type_error=ValueError)
        for i, d in enumerate(value)
    )


def Input(  # noqa: N802 - Keras's name
    shape: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    dtype: Any = None,
    sparse: bool | None = None,
    ragged: bool | None = None,
    batch_shape: Sequence[int | None] | None = None,
    name: str | None = None,
    tensor: Any = None,
    optional: bool = False,
) -> KerasTensor:
    """A symbolic input tensor (Keras's `keras.Input`), made by a new `InputLayer`.

    Call layers on it to build a functional model, or put it first in a `Sequential` model
    to declare the input shape::

        inputs = numba_gn.Input((8, 8, 3))
        x = numba_gn.layers.Conv2D(16, 3)(inputs)
        outputs = numba_gn.layers.GlobalAveragePooling2D()(x)
        model = numba_gn.Model(inputs, outputs)

    Args:
        shape: One sample's shape, without the batch axis (`None` for free dimensions).
        batch_size: `None` (any batch size) or an int >= 1.
        dtype: The input's dtype (default `"float32"`): what a model casts float data to.
        sparse: Only `None`/`False` (dense NumPy data).
        ragged: Only `None`/`False`.
        batch_shape: The full shape with the batch axis, instead of `shape`/`batch_size`.
        name: The input's name (default `"input_layer"`, `"input_layer_1"`, ...); dict
            inputs of a model are keyed by it.
        tensor: Only `None`: wrapping an existing tensor is not supported.
        optional: Only `False`.

    Returns:
        The `InputLayer`'s symbolic tensor. Invalid arguments raise the `ValueError` /
        `TypeError` / `NotImplementedError` of `InputLayer`, naming the argument.
    """
    if tensor is not None:
        if not isinstance(tensor, KerasTensor):
            raise ValueError(
                "Argument `tensor` must be a KerasTensor. Received invalid type: "
                f"tensor={_checks.show(tensor)} (of type {type(tensor).__name__})"
            )
        raise NotImplementedError(
            "Input: the `tensor` argument is not supported (every input of a numba_gn model "
            f"is a new symbolic tensor). Received: tensor={_checks.show(tensor)}"
        )
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                       name=name, sparse=sparse, ragged=ragged, optional=optional)
    return layer.output
