"""`GroupNormalization`: Keras 3's layer of the same name on numba_gn's kernels and tape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numba_gn import _args, _checks
from numba_gn._dtypes import is_float
from numba_gn.autograd import Tensor
from numba_gn.autograd import cast as _cast
from numba_gn.autograd import group_norm as _group_norm
from numba_gn.autograd.ops_masked import masked_group_norm
from numba_gn.layers import _affine
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_spec import InputSpec

__all__ = ["GroupNormalization"]


def _check_axis_type(axis: object) -> int | tuple[int, ...]:
    """`axis` as an int or a tuple of ints, each a possible axis of some array.

    The exact range (and "not the batch axis") is checked at build, when the rank is known.
    """
    return _checks.int_sequence(axis, "axis")


class GroupNormalization(Layer):
    """Group normalization (Wu & He, 2018) with Keras 3's interface and semantics.

    The channels along `axis` are split into `groups` contiguous groups; each sample is
    normalised per group with the mean and biased variance over the group's channels and every
    other non-batch axis, then scaled by `gamma` and shifted by `beta` per channel:
    `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`. Axis 0 is the batch axis.

    Parameters
    ----------
    groups : int, default 32
        Number of groups; `-1` gives one group per channel (instance normalization), `1`
        normalises over all non-batch axes (layer normalization). Must divide the channels.
        On an input with zero channels, `groups=-1` (or any `group_size`) means zero
        groups: gamma and beta have zero entries and the output is empty, as
        `numba_gn.group_norm` gives; a positive `groups` is more than the channels
        and fails at build.
    axis : int or tuple of ints, default -1
        The channel axis. A tuple forms one channel space from several axes (flattened in the
        given order); gamma and beta then have the shape of those axes.
    epsilon : float, default 1e-3
        Added to the variance inside the square root.
    center, scale : bool, default True
        Whether to create and use `beta` / `gamma` (bools only: a truthy string is a
        `TypeError`).
    beta_initializer, gamma_initializer : default "zeros" / "ones"
    beta_regularizer, gamma_regularizer : default None
    beta_constraint, gamma_constraint : default None
        Identifiers as accepted by `numba_gn.params` (names, Keras config dicts,
        instances, callables).
    group_size : int, optional
        Channels per group instead of `groups` (numba_gn addition; `groups` must then be
        left at its default or agree).
    **kwargs
        `name`, `dtype`, `trainable`, as for `Layer`.

    Call arguments
    --------------
    inputs : ndarray or Tensor
        Float16/32/64 or bfloat16 (integer input is cast to float32, or float64 under a
        float64 policy).
    mask : bool array, optional
        The shape of the input without its channel axes (`(N, T)` for `(N, T, C)`). The
        statistics are then taken over the unmasked positions only, so padding does not change
        the output at real positions; padded positions are normalised with the same
        statistics. A sample whose positions are all masked outputs `beta` there. (Keras
        accepts the mask but ignores it.)

    Output dtype
    ------------
    The input's dtype: float16 and bfloat16 are computed in float32 and returned in their own
    dtype, float64 is computed and returned in float64, while gamma and beta stay in the
    layer's variable dtype (float32 by default). Under the `"mixed_float16"` and
    `"mixed_bfloat16"` policies the output is float16 or bfloat16, as in Keras. (Keras casts
    every output to the policy's compute dtype: float32 for float16, bfloat16 or float64 input
    to a float32 layer.)

    Differences from Keras
    ----------------------
    `groups=-1` is resolved at build without rewriting the attribute, so `get_config()`
    keeps `-1`; `groups=True` is rejected; `axis=0` (the batch axis) is rejected at
    build; a tuple `axis` works; the divisibility error says that the channels must be a
    multiple of the groups (Keras's message has it backwards); `groups=-1` on zero channels
    gives an empty result (Keras divides by zero); `center`/`scale` must be bools, and
    `epsilon` a finite number >= 0.
    """

    supports_masking = True

    def __init__(
        self,
        groups: int = 32,
        axis: int | tuple[int, ...] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        group_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Validated before the base class runs, as Keras does, so a bad value fails first.
        _args.check_groups_value(groups)
        _args.check_group_size_value(group_size)
        # Keras computes in float32 or wider whatever the policy; casting float64 input down
        # would throw away precision the kernels keep.
        super().__init__(autocast=False, **kwargs)
        self.groups = int(groups)
        self.group_size = None if group_size is None else int(group_size)
        self.axis = _check_axis_type(axis)
        self.epsilon = _args.check_epsilon(epsilon)
        self.center = _checks.boolean(center, "center")
        self.scale = _checks.boolean(scale, "scale")
        _affine.configure(
            self, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
            beta_constraint, gamma_constraint,
        )
        self._axes: tuple[int, ...] = ()
        self._groups = 0  # the resolved number of groups, known after build

    def build(self, input_shape: Shape) -> None:
        """Validate the channel dimensions and create `gamma` then `beta` of their shape."""
        axes = _args.normalize_axes(self.axis, len(input_shape))
        for given, a in zip(_given_axes(self.axis), axes, strict=True):
            if input_shape[a] is None:
                raise ValueError(
                    f"Axis {given} of input tensor should have a defined dimension but the "
                    f"layer received an input with shape {input_shape}."
                )
        channel_shape = tuple(int(input_shape[a]) for a in axes)  # type: ignore[arg-type]
        self._groups = _args.resolve_groups(self.groups, self.group_size, math.prod(channel_shape))
        self._axes = axes
        self.input_spec = InputSpec(
            ndim=len(input_shape),
            axes={a: input_shape[a] for a in axes},  # type: ignore[misc]
        )
        _affine.add_weights(self, channel_shape, scale=self.scale, center=self.center)

    def call(self, inputs: Tensor, mask: Any = None) -> Tensor:
        """Normalise `inputs` (statistics over unmasked positions when `mask` is given)."""
        x = inputs
        if not is_float(x.dtype):  # integers; bfloat16 (kind "V") is a float here
            x = _cast(x, np.promote_types(self.compute_dtype, np.float32))
        axis = self._axes[0] if len(self._axes) == 1 else self._axes
        # Zero channels resolve to zero groups, which is no valid `groups` argument; -1 (one
        # group per channel) names the same empty grouping.
        groups = self._groups or -1
        if mask is None:
            y = _group_norm(x, groups, self.gamma, self.beta, axis=axis, epsilon=self.epsilon)
        else:
            y = masked_group_norm(
                x, mask, self.gamma, self.beta, groups, axis=axis, epsilon=self.epsilon
            )
        if self.dtype_policy.is_mixed and y.dtype != self.compute_dtype:
            y = _cast(y, self.compute_dtype)
        return y

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape (after checking that `axis` fits its rank)."""
        shape = tuple(input_shape)
        _args.normalize_axes(self.axis, len(shape))
        return shape

    def get_config(self) -> dict[str, Any]:
        """Keras's 14 keys (`groups` as given, -1 included), plus `group_size` when set."""
        config = {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **_affine.config(self),
        }
        # Only when set, so that a default config stays readable by Keras itself.
        if self.group_size is not None:
            config["group_size"] = self.group_size
        return config


def _given_axes(axis: int | tuple[int, ...]) -> tuple[int, ...]:
    return axis if isinstance(axis, tuple) else (axis,)
