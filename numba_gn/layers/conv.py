"""``Conv1D`` and ``Conv2D``, channels-last, as ``keras.layers.Conv1D/Conv2D``.

The computation is one :class:`~numba_gn.layers.conv_ops.Conv` op (im2col + BLAS matmul; see
that module for the measured choice and Keras's "same" padding arithmetic).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor
from numba_gn.layers import activations
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.conv_ops import Conv, conv_output_length
from numba_gn.layers.input_spec import InputSpec
from numba_gn.params import constraints, initializers, regularizers

__all__ = ["Conv1D", "Conv2D"]


def _positive_int(value: object) -> bool:
    """A positive int (not a bool) no larger than any array dimension can be."""
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, (bool, np.bool_))
        and 0 < value <= sys.maxsize
    )


def _tuple(value: int | Sequence[int], rank: int, name: str) -> tuple[int, ...]:
    """Keras's ``standardize_tuple``: an int is repeated, a sequence must have ``rank`` ints.

    Every entry must be a positive int (Keras's ``ValueError`` for anything else).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        t: tuple[Any, ...] = (int(value),) * rank
    elif isinstance(value, (str, bytes)):  # tuple("3") would be ("3",): not a sequence of ints
        t = ()
    else:
        try:
            t = tuple(value)  # type: ignore[arg-type]
        except TypeError:
            t = ()
    if len(t) != rank or not all(_positive_int(v) for v in t):
        raise ValueError(
            f"The `{name}` argument must be a tuple of {rank} positive integers. "
            f"Received {name}={_checks.show(value)}"
        )
    return tuple(int(v) for v in t)


class _Conv(Layer):
    """Shared implementation of the N-D convolution layers (``rank`` spatial axes)."""

    rank = 2
    _paddings: tuple[str, ...] = ("valid", "same")

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        cls = type(self).__name__
        if not _positive_int(filters):
            raise ValueError(
                f"Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={_checks.show(filters)}."
            )
        rank = self.rank
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, rank, "kernel_size")
        self.strides = _tuple(strides, rank, "strides")
        self.dilation_rate = _tuple(dilation_rate, rank, "dilation_rate")
        if not isinstance(padding, str):
            raise TypeError(
                f"{cls}: `padding` must be a string, one of {list(self._paddings)}. Received: "
                f"padding={_checks.show(padding)}"
            )
        padding = padding.lower()
        if padding not in self._paddings:
            raise ValueError(
                f"{cls}: `padding` must be one of {list(self._paddings)}. Received: "
                f"padding={padding!r}"
            )
        self.padding = padding
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(
                "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
                f"Received: data_format={_checks.show(data_format)}"
            )
        if data_format == "channels_first":
            raise NotImplementedError(
                f"{cls}: only data_format='channels_last' is supported (got {data_format!r}); "
                "transpose channels-first inputs first."
            )
        self.data_format = "channels_last"
        if not _positive_int(groups):  # Keras's check, before ours that only 1 is supported
            raise ValueError(
                "The number of groups must be a positive integer. "
                f"Received: groups={_checks.show(groups)}."
            )
        if groups != 1:
            raise NotImplementedError(f"{cls}: grouped convolution (groups={groups}) is not "
                                      "supported; use groups=1.")
        self.groups = 1
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        if activity_regularizer is not None:
            raise NotImplementedError(f"{cls}: `activity_regularizer` is not supported.")
        self.activation = activations.get(activation)
        self.use_bias = _checks.boolean(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel: Any = None
        self.bias: Any = None

    def build(self, input_shape: Shape) -> None:
        """Create ``kernel`` (*kernel_size, in_channels, filters) and ``bias`` (filters,)."""
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2} (batch, "
                f"{self.rank} spatial axes, channels), got shape {input_shape}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs should be defined, got {input_shape}."
            )
        for size in input_shape[1:-1]:  # fails early for a "valid" conv on too small inputs
            for k, s, d in zip(self.kernel_size, self.strides, self.dilation_rate, strict=False):
                conv_output_length(size, k, s, d, self.padding)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def call(self, inputs: Tensor) -> Tensor:
        """``activation(conv(inputs, kernel) + bias)``."""
        x = inputs
        if x.dtype.kind != "f":
            x = x.astype(self.compute_dtype)
        kernel, bias = self.kernel, self.bias
        if self.dtype_policy.is_mixed:  # float32 weights, float16 math: cast as Keras does
            kernel = kernel.astype(self.compute_dtype)
            bias = None if bias is None else bias.astype(self.compute_dtype)
        out = Conv.apply(
            x,
            kernel,
            bias,
            strides=self.strides,
            dilation=self.dilation_rate,
            padding=self.padding,
        )
        return self.activation(out)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """``(batch, *spatial_out, filters)`` with Keras's output-length arithmetic."""
        shape = tuple(input_shape)
        spatial = tuple(
            conv_output_length(n, k, s, d, self.padding)
            for n, k, s, d in zip(
                shape[1:-1], self.kernel_size, self.strides, self.dilation_rate, strict=True
            )
        )
        return (shape[0], *spatial, self.filters)

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for the convolution layers."""
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": None,
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class Conv1D(_Conv):
    """1-D convolution over ``(batch, steps, channels)`` inputs.

    Parameters are Keras's: ``filters``, ``kernel_size``, ``strides=1``, ``padding="valid"``
    ("valid", "same" or "causal"), ``data_format=None`` (channels-last only),
    ``dilation_rate=1``, ``groups=1`` (only 1), ``activation=None``, ``use_bias=True``,
    ``kernel_initializer="glorot_uniform"``, ``bias_initializer="zeros"``, the kernel/bias
    regularizers and constraints, and ``**kwargs`` (``name``, ``dtype``, ``trainable``).
    The kernel has shape ``(kernel_size, in_channels, filters)``.
    """

    rank = 1
    _paddings = ("valid", "same", "causal")


class Conv2D(_Conv):
    """2-D convolution over ``(batch, height, width, channels)`` inputs.

    Parameters are Keras's: ``filters``, ``kernel_size``, ``strides=(1, 1)``,
    ``padding="valid"`` ("valid" or "same"), ``data_format=None`` (channels-last only),
    ``dilation_rate=(1, 1)``, ``groups=1`` (only 1), ``activation=None``, ``use_bias=True``,
    ``kernel_initializer="glorot_uniform"``, ``bias_initializer="zeros"``, the kernel/bias
    regularizers and constraints, and ``**kwargs`` (``name``, ``dtype``, ``trainable``).
    The kernel has shape ``(kh, kw, in_channels, filters)``.
    """

    rank = 2
