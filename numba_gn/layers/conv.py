"""Convolution layers as Keras's: `Conv1D`, `Conv2D`, `Conv2DTranspose`, `DepthwiseConv2D`.

Each call is one autograd op from `numba_gn.autograd.ops_conv` (im2col + BLAS matmul, col2im
in Numba; bias, the channels-first layout and grouped convolutions inside the op), then the
activation. Arguments, defaults, errors, weight names/shapes/order and configs are Keras's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import _checks
from numba_gn.autograd import Tensor
from numba_gn.autograd.ops_conv import (
    Conv,
    ConvTranspose,
    DepthwiseConv,
    conv_output_length,
    deconv_output_length,
)
from numba_gn.layers import activations
from numba_gn.layers._bfloat16 import product
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_spec import InputSpec
from numba_gn.params import constraints, initializers, regularizers

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D"]


def _positive_int(value: object) -> bool:
    """A positive int (not a bool) no larger than any array dimension can be."""
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, (bool, np.bool_))
        and 0 < value <= sys.maxsize
    )


def _tuple(
    value: int | Sequence[int], rank: int, name: str, allow_zero: bool = False
) -> tuple[int, ...]:
    """Keras's `standardize_tuple`: an int is repeated, a sequence must have `rank` ints.

    Every entry must be a positive int, or a non-negative one with `allow_zero` (Keras's
    `ValueError` for anything else).
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
    valid = _positive_int if not allow_zero else (lambda v: v == 0 or _positive_int(v))
    if len(t) != rank or not all(valid(v) for v in t):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"The `{name}` argument must be a tuple of {rank} {what} integers. "
            f"Received {name}={_checks.show(value)}"
        )
    return tuple(int(v) for v in t)


def _filters(filters: object) -> int:
    """The `filters` argument as an int, with Keras's `ValueError` for anything else."""
    if not _positive_int(filters):
        raise ValueError(
            f"Invalid value for argument `filters`. Expected a strictly positive value. "
            f"Received filters={_checks.show(filters)}."
        )
    return int(filters)  # type: ignore[call-overload]


def _check_strides_and_dilation(strides: tuple[int, ...], dilation: tuple[int, ...]) -> None:
    """Keras's convolution layers refuse strides > 1 together with dilation > 1."""
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation}"
        )


class _BaseConv(Layer):
    """What the convolution layers share: arguments, build, call, shapes, config.

    Subclasses define `__init__` with Keras's signature (calling `_configure` and
    `_configure_kernel`) and the hooks `_kernel_shape` and `_convolve`; `_out_channels`
    and `_output_length` default to a plain convolution's.
    """

    rank = 2
    _paddings: tuple[str, ...] = ("valid", "same")
    # Keras names the kernel's initializer/regularizer/constraint arguments (and config keys)
    # `kernel_*`, except `DepthwiseConv2D`'s `depthwise_*`.
    _kernel_prefix = "kernel"

    def _configure(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int],
        padding: str,
        data_format: str | None,
        dilation_rate: int | Sequence[int],
        activation: Any,
        use_bias: bool,
        bias_initializer: Any,
        bias_regularizer: Any,
        activity_regularizer: Any,
        bias_constraint: Any,
    ) -> None:
        """Check and store the arguments every convolution layer has."""
        cls = type(self).__name__
        rank = self.rank
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
        self.data_format = data_format or "channels_last"
        if activity_regularizer is not None:
            raise NotImplementedError(f"{cls}: `activity_regularizer` is not supported.")
        self.activation = activations.get(activation)
        self.use_bias = _checks.boolean(use_bias, "use_bias")
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel: Any = None
        self.bias: Any = None

    def _configure_kernel(self, initializer: Any, regularizer: Any, constraint: Any) -> None:
        """Resolve and store the kernel's initializer, regularizer and constraint."""
        prefix = self._kernel_prefix
        setattr(self, f"{prefix}_initializer", initializers.get(initializer))
        setattr(self, f"{prefix}_regularizer", regularizers.get(regularizer))
        setattr(self, f"{prefix}_constraint", constraints.get(constraint))

    def _kernel_options(self) -> tuple[Any, Any, Any]:
        """The kernel's (initializer, regularizer, constraint)."""
        prefix = self._kernel_prefix
        return (
            getattr(self, f"{prefix}_initializer"),
            getattr(self, f"{prefix}_regularizer"),
            getattr(self, f"{prefix}_constraint"),
        )

    # -- hooks -------------------------------------------------------------------------------

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _out_channels(self, channels: int | None) -> int | None:
        """The output channels: `filters` (`DepthwiseConv2D` has no `filters`)."""
        return self.filters  # type: ignore[attr-defined, no-any-return]

    def _output_length(self, size: int | None, axis: int) -> int | None:
        """The output length along spatial `axis` (the transposed convolution overrides)."""
        return conv_output_length(
            size, self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis],
            self.padding,
        )

    def _convolve(self, x: Tensor, kernel: Any, bias: Any) -> Tensor:
        raise NotImplementedError

    def _check_channels(self, channels: int, input_shape: Shape) -> None:
        """Extra checks of the input channels (groups)."""

    # -- shared ------------------------------------------------------------------------------

    @property
    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def _spatial_axes(self) -> range:
        first = 2 if self.data_format == "channels_first" else 1
        return range(first, first + self.rank)

    def build(self, input_shape: Shape) -> None:
        """Create `kernel` and (with `use_bias`) `bias`, in Keras's shapes and order."""
        if len(input_shape) != self.rank + 2:
            where = "channels, spatial axes" if self.data_format == "channels_first" else (
                "spatial axes, channels"
            )
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2} (batch, {where}; "
                f"{self.rank} spatial axes), got shape {input_shape}."
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs should be defined, got {input_shape}."
            )
        self._check_channels(channels, input_shape)
        for i, axis in enumerate(self._spatial_axes()):  # fails early on too small inputs
            self._output_length(input_shape[axis], i)
        initializer, regularizer, constraint = self._kernel_options()
        self.kernel = self.add_weight(
            name="kernel",
            shape=self._kernel_shape(channels),
            initializer=initializer,
            regularizer=regularizer,
            constraint=constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self._out_channels(channels),),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})

    def call(self, inputs: Tensor) -> Tensor:
        """`activation(convolution(inputs, kernel) + bias)`."""
        return self.activation(product(self, self._convolve, inputs))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape, with Keras's output-length arithmetic on each spatial axis."""
        shape = list(input_shape)
        for i, axis in enumerate(self._spatial_axes()):
            shape[axis] = self._output_length(input_shape[axis], i)
        shape[self._channel_axis] = self._out_channels(input_shape[self._channel_axis])
        return tuple(shape)

    def _shared_config(self) -> dict[str, Any]:
        """The keys after the layer-specific ones, in Keras's order (kernel keys excluded)."""
        return {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
        }

    def _weights_config(self) -> dict[str, Any]:
        """The last keys, in Keras's order: activation, bias use and the weights' options."""
        prefix = self._kernel_prefix
        initializer, regularizer, constraint = self._kernel_options()
        return {
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            f"{prefix}_initializer": initializers.serialize(initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            f"{prefix}_regularizer": regularizers.serialize(regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": None,
            f"{prefix}_constraint": constraints.serialize(constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class _Conv(_BaseConv):
    """Shared implementation of `Conv1D` and `Conv2D` (`rank` spatial axes)."""

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
        self.filters = _filters(filters)
        self._configure(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, activity_regularizer, bias_constraint,
        )
        if not _positive_int(groups):
            raise ValueError(
                "The number of groups must be a positive integer. "
                f"Received: groups={_checks.show(groups)}."
            )
        self.groups = int(groups)
        if self.filters % self.groups:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={self.groups}, filters={self.filters}."
            )
        _check_strides_and_dilation(self.strides, self.dilation_rate)
        self._configure_kernel(kernel_initializer, kernel_regularizer, kernel_constraint)

    def _check_channels(self, channels: int, input_shape: Shape) -> None:
        if channels % self.groups:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of "
                f"groups. Received groups={self.groups}, but the input has {channels} channels "
                f"(full input shape is {tuple(input_shape)})."
            )

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, channels // self.groups, self.filters)

    def _convolve(self, x: Tensor, kernel: Any, bias: Any) -> Tensor:
        return Conv.apply(
            x,
            kernel,
            bias,
            strides=self.strides,
            dilation=self.dilation_rate,
            padding=self.padding,
            groups=self.groups,
            data_format=self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for `Conv1D`/`Conv2D`."""
        return {
            **super().get_config(),
            "filters": self.filters,
            **self._shared_config(),
            "groups": self.groups,
            **self._weights_config(),
        }


class Conv1D(_Conv):
    """1-D convolution over `(batch, steps, channels)` (or `(batch, channels, steps)`) inputs.

    Parameters
    ----------
    filters : int
        Number of output channels; divisible by `groups`.
    kernel_size : int or tuple of 1 int
    strides : int or tuple of 1 int, default 1
        Above 1 excludes a `dilation_rate` above 1 (Keras's rule).
    padding : {"valid", "same", "causal"}, default "valid"
        Case-insensitive.
    data_format : {"channels_last", "channels_first"} or None, default None
        None means "channels_last".
    dilation_rate : int or tuple of 1 int, default 1
    groups : int, default 1
        Number of channel groups convolved independently; the input channels and
        `filters` must be divisible by it.
    activation : str, callable or None, default None
        Applied to the output (None: linear).
    use_bias : bool, default True
        Whether to add a bias.
    kernel_initializer : default "glorot_uniform"
    bias_initializer : default "zeros"
    kernel_regularizer, bias_regularizer : default None
    kernel_constraint, bias_constraint : default None
        Identifiers as accepted by `numba_gn.params` (names, Keras config dicts,
        instances, callables).
    activity_regularizer : None
        Not supported: anything but None raises `NotImplementedError`.
    **kwargs
        `name`, `dtype`, `trainable`, as for `Layer`.

    Notes
    -----
    The kernel has shape `(kernel_size, in_channels // groups, filters)`, the bias
    `(filters,)`; filter `f` reads channel group `f // (filters // groups)`.
    """

    rank = 1
    _paddings = ("valid", "same", "causal")


class Conv2D(_Conv):
    """2-D convolution over `(batch, height, width, channels)` (or channels-first) inputs.

    Parameters
    ----------
    filters : int
        Number of output channels; divisible by `groups`.
    kernel_size : int or tuple of 2 ints
    strides : int or tuple of 2 ints, default 1
        Above 1 excludes a `dilation_rate` above 1 (Keras's rule).
    padding : {"valid", "same"}, default "valid"
        Case-insensitive.
    data_format : {"channels_last", "channels_first"} or None, default None
        None means "channels_last".
    dilation_rate : int or tuple of 2 ints, default 1
    groups : int, default 1
        Number of channel groups convolved independently; the input channels and
        `filters` must be divisible by it.
    activation : str, callable or None, default None
        Applied to the output (None: linear).
    use_bias : bool, default True
        Whether to add a bias.
    kernel_initializer : default "glorot_uniform"
    bias_initializer : default "zeros"
    kernel_regularizer, bias_regularizer : default None
    kernel_constraint, bias_constraint : default None
        Identifiers as accepted by `numba_gn.params` (names, Keras config dicts,
        instances, callables).
    activity_regularizer : None
        Not supported: anything but None raises `NotImplementedError`.
    **kwargs
        `name`, `dtype`, `trainable`, as for `Layer`.

    Notes
    -----
    The kernel has shape `(kh, kw, in_channels // groups, filters)`, the bias `(filters,)`;
    filter `f` reads channel group `f // (filters // groups)`.
    """

    rank = 2


class Conv2DTranspose(_BaseConv):
    """2-D transposed convolution (the gradient of a convolution; upsampling in UNets).

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or tuple of 2 ints
    strides : int or tuple of 2 ints, default (1, 1)
        Above 1 excludes a `dilation_rate` above 1 (Keras's rule).
    padding : {"valid", "same"}, default "valid"
        Case-insensitive.
    output_padding : int, tuple of 2 ints or None, default None
        Each entry smaller than the stride: sets the output size (see Notes).
    data_format : {"channels_last", "channels_first"} or None, default None
        None means "channels_last".
    dilation_rate : int or tuple of 2 ints, default (1, 1)
    activation : str, callable or None, default None
        Applied to the output (None: linear).
    use_bias : bool, default True
        Whether to add a bias.
    kernel_initializer : default "glorot_uniform"
    bias_initializer : default "zeros"
    kernel_regularizer, bias_regularizer : default None
    kernel_constraint, bias_constraint : default None
        Identifiers as accepted by `numba_gn.params` (names, Keras config dicts,
        instances, callables).
    activity_regularizer : None
        Not supported: anything but None raises `NotImplementedError`.
    **kwargs
        `name`, `dtype`, `trainable`, as for `Layer`.

    Notes
    -----
    The kernel has shape `(kh, kw, filters, in_channels)` (Keras's layout), the bias
    `(filters,)`. Output sizes are Keras's: with `padding="same"` and no
    `output_padding`, `input * stride`; with `"valid"`,
    `(input - 1) * stride + max(kernel, stride)`, where `kernel` is the dilated extent
    `(kernel_size - 1) * dilation_rate + 1`. A given `output_padding` replaces the last
    term by `kernel + output_padding` ("valid") or `kernel % 2 + output_padding` ("same").
    """

    rank = 2

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1),
        padding: str = "valid",
        output_padding: int | Sequence[int] | None = None,
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = (1, 1),
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
        self.filters = _filters(filters)
        self._configure(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, activity_regularizer, bias_constraint,
        )
        self.output_padding = (
            None
            if output_padding is None
            else _tuple(output_padding, self.rank, "output_padding", allow_zero=True)
        )
        if self.output_padding is not None:
            for i, (op, s) in enumerate(zip(self.output_padding, self.strides, strict=True)):
                if op >= s:
                    raise ValueError(
                        "`output_padding` must be strictly less than `strides` for all "
                        f"dimensions. At dimension {i}, `output_padding` is {op} but `strides` "
                        f"is {s}. Received: output_padding={self.output_padding}, "
                        f"strides={self.strides}"
                    )
        _check_strides_and_dilation(self.strides, self.dilation_rate)
        self._configure_kernel(kernel_initializer, kernel_regularizer, kernel_constraint)

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, self.filters, channels)

    def _output_length(self, size: int | None, axis: int) -> int | None:
        return deconv_output_length(
            size,
            self.kernel_size[axis],
            self.strides[axis],
            self.dilation_rate[axis],
            self.padding,
            None if self.output_padding is None else self.output_padding[axis],
        )

    def _convolve(self, x: Tensor, kernel: Any, bias: Any) -> Tensor:
        return ConvTranspose.apply(
            x,
            kernel,
            bias,
            strides=self.strides,
            dilation=self.dilation_rate,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format=self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for `Conv2DTranspose`."""
        shared = self._shared_config()
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": shared["kernel_size"],
            "strides": shared["strides"],
            "padding": shared["padding"],
            "output_padding": self.output_padding,
            "data_format": shared["data_format"],
            "dilation_rate": shared["dilation_rate"],
            **self._weights_config(),
        }


class DepthwiseConv2D(_BaseConv):
    """2-D depthwise convolution: each input channel convolved with its own filters.

    Parameters
    ----------
    kernel_size : int or tuple of 2 ints
    strides : int or tuple of 2 ints, default (1, 1)
    padding : {"valid", "same"}, default "valid"
        Case-insensitive.
    depth_multiplier : int, default 1
        Filters per input channel.
    data_format : {"channels_last", "channels_first"} or None, default None
        None means "channels_last".
    dilation_rate : int or tuple of 2 ints, default (1, 1)
        Unlike the other convolution layers, Keras's `DepthwiseConv2D` accepts strides and
        dilation both above 1, and so does this one.
    activation : str, callable or None, default None
        Applied to the output (None: linear).
    use_bias : bool, default True
        Whether to add a bias.
    depthwise_initializer : default "glorot_uniform"
    bias_initializer : default "zeros"
    depthwise_regularizer, bias_regularizer : default None
    depthwise_constraint, bias_constraint : default None
        Identifiers as accepted by `numba_gn.params` (names, Keras config dicts,
        instances, callables).
    activity_regularizer : None
        Not supported: anything but None raises `NotImplementedError`.
    **kwargs
        `name`, `dtype`, `trainable`, as for `Layer`.

    Notes
    -----
    The kernel (named `kernel`, as in Keras) has shape
    `(kh, kw, in_channels, depth_multiplier)`, the bias `(in_channels * depth_multiplier,)`;
    output channel `c * depth_multiplier + m` comes from input channel `c`.
    """

    rank = 2
    _kernel_prefix = "depthwise"

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not _positive_int(depth_multiplier):
            raise ValueError(
                "Invalid value for argument `depth_multiplier`. Expected a strictly positive "
                f"value. Received depth_multiplier={_checks.show(depth_multiplier)}."
            )
        self.depth_multiplier = int(depth_multiplier)
        self._configure(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, activity_regularizer, bias_constraint,
        )
        self._configure_kernel(depthwise_initializer, depthwise_regularizer, depthwise_constraint)

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, channels, self.depth_multiplier)

    def _out_channels(self, channels: int | None) -> int | None:
        return None if channels is None else channels * self.depth_multiplier

    def _convolve(self, x: Tensor, kernel: Any, bias: Any) -> Tensor:
        return DepthwiseConv.apply(
            x,
            kernel,
            bias,
            strides=self.strides,
            dilation=self.dilation_rate,
            padding=self.padding,
            data_format=self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        """Keras's keys for `DepthwiseConv2D`."""
        return {
            **super().get_config(),
            "depth_multiplier": self.depth_multiplier,
            **self._shared_config(),
            **self._weights_config(),
        }
