"""`LayerNormalization` and `BatchNormalization`: Keras 3's layers on numba_gn's tape."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from numba_gn import _args, _checks
from numba_gn.autograd import Tensor, batch_norm, batch_normalization, layer_norm, ops
from numba_gn.autograd import cast as _cast
from numba_gn.layers import _affine
from numba_gn.layers.base import Layer, Shape
from numba_gn.layers.input_spec import InputSpec
from numba_gn.params import Variable, constraints, initializers, regularizers

__all__ = ["BatchNormalization", "LayerNormalization"]

_RMS_SCALING_WARNING = (
    "You passed `rms_scaling=True`, which is deprecated. This argument incorrectly scales the "
    "input by the variance, not the root mean square. To correctly use RMS Normalization, "
    "please use `keras.layers.RMSNormalization` instead."
)


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """Keras's `result_type(dtype, "float32")` for the dtypes a layer sees."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _check_bounds(axes: list[int], input_shape: Shape, axis: Any) -> None:
    """Keras's `compute_output_shape` check: every axis within the input's rank."""
    rank = len(input_shape)
    for a in axes:
        if a >= rank or a < -rank:
            raise ValueError(
                f"Axis {a} is out of bounds for input shape {tuple(input_shape)}. "
                f"Received: axis={axis}"
            )


def _defined(input_shape: Shape, axes: tuple[int, ...], given: Any) -> tuple[int, ...]:
    """The sizes of `axes`, refused when one is not known (None)."""
    for a in axes:
        if input_shape[a] is None:
            raise ValueError(
                f"Axis {a} of input tensor should have a defined dimension but the layer "
                f"received an input with shape {tuple(input_shape)}. Received: axis={given}"
            )
    return tuple(int(input_shape[a]) for a in axes)  # type: ignore[arg-type]


def _array(value: Any) -> np.ndarray:
    """The array behind a Variable, a stand-in Tensor (`stateless_call`) or an array."""
    return np.asarray(value.data if isinstance(value, Tensor) else value)


class LayerNormalization(Layer):
    """Layer normalization (Ba et al., 2016) with Keras 3's interface and semantics.

    Each sample is normalised on its own over the `axis` dimensions, with their mean and
    biased variance, then scaled by `gamma` and shifted by `beta`, weights with the shape of
    those dimensions: `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`.

    Args:
        axis: An int or a list/tuple of ints: the axes to normalise over (default -1).
        epsilon: Added to the variance, finite and >= 0 (default 1e-3).
        center: Whether to create and add `beta` (a bool).
        scale: Whether to create and multiply by `gamma` (a bool).
        beta_initializer: Default "zeros".
        gamma_initializer: Default "ones".
        beta_regularizer: Default None.
        gamma_regularizer: Default None.
        beta_constraint: Default None.
        gamma_constraint: Default None.
        rms_scaling: Keras's deprecated variant (warns, as Keras does): no `beta`, and
            `y = x / sqrt(var + epsilon) * gamma`, the input divided by its standard deviation
            without centring. Keyword-only, as in Keras, where it travels in `**kwargs`.
        **kwargs: `name`, `dtype`, `trainable` as for [Layer][numba_gn.layers.Layer].
            `autocast` is accepted and ignored: the layer never casts its input (Keras).

    Computation is in float32 for float16 and integer inputs, float64 for float64 inputs; the
    output is cast to the layer's compute dtype (float32 by default), exactly as Keras does.

    Keras stores `axis` as given (a tuple becomes a list) and replaces it by the sorted list
    of axes when the layer builds, so `get_config()["axis"]` reads `[-1]` after the first
    call; this layer does the same.

    Differences from Keras: a built layer accepts inputs of the rank it was built for only
    (Keras accepts any rank whose `axis` dimensions fit); `axis` must not repeat an axis;
    with axes of mixed signs, `gamma` and `beta` take the dimensions in the order of the
    axes' positions (Keras orders them by value, which then does not match the input's
    layout); `center`, `scale` and `rms_scaling` must be bools, `epsilon` a finite
    number >= 0. The variance is computed in two passes (Keras: `E[x^2] - E[x]^2`), so
    outputs agree with Keras to rounding unless the inputs' mean is large compared with
    their spread, where these are the more accurate.
    """

    supports_masking = True

    def __init__(
        self,
        axis: int | list[int] | tuple[int, ...] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        *,
        rms_scaling: bool = False,
        **kwargs: Any,
    ) -> None:
        # Validated before the base class runs, so that a bad value fails first.
        checked = _checks.int_sequence(axis, "axis")
        epsilon = _args.check_epsilon(epsilon)
        center = _checks.boolean(center, "center")
        scale = _checks.boolean(scale, "scale")
        rms_scaling = _checks.boolean(rms_scaling, "rms_scaling")
        if "autocast" in kwargs:
            _checks.boolean(kwargs.pop("autocast"), "autocast")
        if rms_scaling:
            warnings.warn(_RMS_SCALING_WARNING, UserWarning, stacklevel=2)
        # Keras never casts the input of this layer: float16 is normalised in float32 and
        # float64 in float64 whatever the policy.
        super().__init__(autocast=False, **kwargs)
        self.axis: int | list[int] = list(checked) if isinstance(checked, tuple) else checked
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.rms_scaling = rms_scaling
        _affine.configure(
            self, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
            beta_constraint, gamma_constraint,
        )
        self._axes: tuple[int, ...] = ()

    def build(self, input_shape: Shape) -> None:
        """Check the axes against the input's rank; create `gamma` then `beta`."""
        ndim = len(input_shape)
        given = self.axis if isinstance(self.axis, list) else [self.axis]
        _check_bounds(given, input_shape, self.axis)
        positions = [a % ndim for a in given]
        if len(set(positions)) != len(positions):
            raise ValueError(f"`axis`={self.axis!r} repeats an axis (input rank {ndim}).")
        axes = tuple(sorted(positions))
        shape = _defined(input_shape, axes, self.axis)
        self.input_spec = InputSpec(ndim=ndim, axes={a: input_shape[a] for a in axes})
        _affine.add_weights(
            self,
            shape,
            scale=self.scale or self.rms_scaling,
            center=self.center and not self.rms_scaling,
        )
        self._axes = axes
        # Keras keeps the sorted list from here on (its config then shows a list).
        self.axis = sorted(given)

    def call(self, inputs: Tensor) -> Tensor:
        """Normalise `inputs` over the layer's axes, each sample on its own."""
        y = layer_norm(
            inputs,
            self.gamma,
            self.beta,
            axis=self._axes,
            epsilon=self.epsilon,
            rms_scaling=self.rms_scaling,
        )
        if y.dtype != self.compute_dtype:
            y = _cast(y, self.compute_dtype)
        return y

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape (after checking that `axis` fits its rank, as Keras)."""
        shape = tuple(input_shape)
        _check_bounds(self.axis if isinstance(self.axis, list) else [self.axis], shape, self.axis)
        return shape

    def get_config(self) -> dict[str, Any]:
        """Keras's keys, `rms_scaling` included."""
        return {
            **super().get_config(),
            "axis": list(self.axis) if isinstance(self.axis, list) else self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            **_affine.config(self),
        }


_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def _check_renorm_clipping(value: object, renorm: bool) -> dict[str, float | None] | None:
    """`renorm_clipping` as Keras keeps it: `{}` for None under `renorm`, else a dict."""
    if value is None:
        return {} if renorm else None
    if not isinstance(value, Mapping):
        raise TypeError(
            "`renorm_clipping` must be a dict with keys among "
            f"{list(_CLIPPING_KEYS)}, got renorm_clipping={_checks.show(value)}."
        )
    if set(value) - set(_CLIPPING_KEYS):
        raise ValueError(
            f"Received invalid keys for `renorm_clipping` argument: {dict(value)}. "
            f"Supported values: {list(_CLIPPING_KEYS)}."
        )
    out: dict[str, float | None] = {}
    for key, v in value.items():
        out[key] = None if v is None else _checks.real(v, f"renorm_clipping[{key!r}]")
    rmax, rmin, dmax = out.get("rmax"), out.get("rmin"), out.get("dmax")
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(
            "rmax should be greater than rmin in the `renorm_clipping` argument. "
            f"Received: rmax={rmax}, rmin={rmin}."
        )
    if dmax is not None and dmax < 0:
        raise ValueError(
            "dmax should be non-negative in the `renorm_clipping` argument. "
            f"Received: dmax={dmax}."
        )
    return out


def _clone(initializer: Any) -> Any:
    """A copy of an initializer instance (a fresh seed state), other identifiers unchanged."""
    return initializer.clone() if isinstance(initializer, initializers.Initializer) else initializer


class BatchNormalization(Layer):
    """Batch normalization (Ioffe & Szegedy, 2015) with Keras 3's interface and semantics.

    In training mode (`training=True`, as in `fit`) the layer normalises with the mean and
    biased variance of the current batch, taken over every axis but `axis`, and updates its
    moving statistics::

        moving_mean = moving_mean * momentum + mean * (1 - momentum)
        moving_variance = moving_variance * momentum + variance * (1 - momentum)

    In inference mode (`training` False or not given, as in `predict` and `evaluate`) it
    normalises with the moving statistics. Either way the result is scaled by `gamma` and
    shifted by `beta`. As in Keras 3, a layer with `trainable=False` always runs in
    inference mode (a frozen layer's statistics do not move).

    The moving statistics are non-trainable weights updated in place, outside any gradient
    tape: nothing differentiates through the update.

    Args:
        axis: The channel axis (an int, default -1).
        momentum: Of the moving averages, in [0, 1] (default 0.99).
        epsilon: Added to the variance, finite and >= 0 (default 1e-3).
        center: Whether to create and add `beta` (a bool).
        scale: Whether to create and multiply by `gamma` (a bool).
        beta_initializer: Default "zeros".
        gamma_initializer: Default "ones".
        moving_mean_initializer: Default "zeros".
        moving_variance_initializer: Default "ones".
        beta_regularizer: Default None.
        gamma_regularizer: Default None.
        beta_constraint: Default None.
        gamma_constraint: Default None.
        renorm: Batch renormalization (Ioffe, 2017), as Keras: training mode corrects the
            normalised values by `r` and `d` (constants to the gradient) computed against
            moving statistics of their own, kept in three more non-trainable weights.
        renorm_clipping: With `renorm`, a dict with optional keys "rmax", "rmin", "dmax"
            that clip `r` to [rmin, rmax] and `d` to [-dmax, dmax].
        renorm_momentum: Momentum of the renorm statistics, in [0, 1] (default 0.99).
        synchronized: Only for TensorFlow's distributed training in Keras; `True` raises
            Keras's `ValueError`.
        **kwargs: `name`, `dtype`, `trainable`, `autocast` as for
            [Layer][numba_gn.layers.Layer].

    Call arguments:
        inputs: Float or integer input. Float inputs are cast to the compute dtype first
            (autocast, as in Keras); the computation is in float32 (float64 under a float64
            policy) and the output has the compute dtype.
        training: Whether to normalise with the batch statistics and update the moving ones.
        mask: Optional array of the input's rank less one, broadcast to the input's shape
            without the channel axis: only its true positions enter the batch statistics
            (training mode); every position is normalised.

    Differences from Keras: the batch variance is computed in two passes (Keras:
    `E[x^2] - E[x]^2`, which loses digits when the mean is large compared with the
    spread); the masked statistics divide by the number of unmasked positions (Keras adds
    1e-7 to it; both give 0 when everything is masked); a batch with no element leaves the
    moving statistics as they are (Keras makes them NaN); a `mask` works with any channel
    axis (Keras inserts the channel axis last); `momentum` and `renorm_momentum` must be
    in [0, 1], `center`/`scale`/`renorm`/`synchronized` bools. Under
    `stateless_call` the moving statistics are not updated.
    """

    supports_masking = True
    _lock_names = ("_stats_lock",)

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: Mapping[str, float] | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        **kwargs: Any,
    ) -> None:
        # Validated before the base class runs, so that a bad value fails first.
        axis = _checks.axis(axis, "axis")
        momentum = _checks.real(momentum, "momentum", low=0.0, high=1.0)
        epsilon = _args.check_epsilon(epsilon)
        center = _checks.boolean(center, "center")
        scale = _checks.boolean(scale, "scale")
        synchronized = _checks.boolean(synchronized, "synchronized")
        if synchronized:
            raise ValueError(
                "Argument synchronized=True is only supported with the TensorFlow backend."
            )
        renorm = _checks.boolean(renorm, "renorm")
        renorm_clipping = _check_renorm_clipping(renorm_clipping, renorm)
        renorm_momentum = _checks.real(renorm_momentum, "renorm_momentum", low=0.0, high=1.0)
        super().__init__(**kwargs)
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.synchronized = synchronized
        _affine.configure(
            self, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
            beta_constraint, gamma_constraint,
        )
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.renorm = renorm
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = renorm_momentum
        self.moving_mean = None
        self.moving_variance = None
        self._axis = 0  # the channel axis as a non-negative int, known after build
        # Makes each read-modify-write of the moving statistics whole when threads train the
        # same layer at once.
        self._stats_lock = threading.RLock()

    def build(self, input_shape: Shape) -> None:
        """Create `gamma`, `beta`, `moving_mean`, `moving_variance` (Keras's order).

        With `renorm`, then `moving_stddev`, `renorm_mean` and `renorm_stddev`.
        """
        ndim = len(input_shape)
        _check_bounds([self.axis], input_shape, self.axis)
        a = self.axis % ndim
        shape = _defined(input_shape, (a,), self.axis)
        self.input_spec = InputSpec(ndim=ndim, axes={a: shape[0]})
        _affine.add_weights(self, shape, scale=self.scale, center=self.center)
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=shape,
            initializer=self.moving_mean_initializer,
            trainable=False,
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=shape,
            initializer=self.moving_variance_initializer,
            trainable=False,
        )
        if self.renorm:
            variance_init = self.moving_variance_initializer

            # Renorm tracks the standard deviation; it starts as the square root of the
            # initial variance (a cloned initializer, as Keras, for a seed of its own).
            def stddev_init(shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
                return np.sqrt(np.asarray(_clone(variance_init)(shape, dtype)))

            self.moving_stddev = self.add_weight(
                name="moving_stddev", shape=shape, initializer=stddev_init, trainable=False
            )
            self.renorm_mean = self.add_weight(
                name="renorm_mean",
                shape=shape,
                initializer=_clone(self.moving_mean_initializer),
                trainable=False,
            )
            self.renorm_stddev = self.add_weight(
                name="renorm_stddev", shape=shape, initializer=stddev_init, trainable=False
            )
        self._axis = a

    def call(self, inputs: Tensor, training: bool | None = None, mask: Any = None) -> Tensor:
        """Normalise with the batch statistics (training) or the moving ones (inference)."""
        if mask is not None and np.ndim(_array(mask)) != inputs.ndim - 1:
            raise ValueError(
                "The mask provided should be one dimension less than the inputs. Received: "
                f"mask.shape={np.shape(_array(mask))}, inputs.shape={inputs.shape}"
            )
        x = inputs
        # Keras upcasts float16 here: batch statistics overflow in half precision.
        ct = _compute_dtype(x.dtype)
        if x.dtype != ct:
            x = _cast(x, ct)
        if training and self.trainable:
            if self.renorm:
                y = self._renorm_call(x, mask)
            else:
                y, mean, variance = batch_norm(
                    x,
                    self.gamma,
                    self.beta,
                    axis=self._axis,
                    epsilon=self.epsilon,
                    mask=mask,
                    return_stats=True,
                )
                if x.size:
                    with self._stats_lock:
                        self._move(self.moving_mean, mean, self.momentum)
                        self._move(self.moving_variance, variance, self.momentum)
        else:
            y = batch_normalization(
                x,
                self.moving_mean,
                self.moving_variance,
                self._axis,
                offset=self.beta,
                scale=self.gamma,
                epsilon=self.epsilon,
            )
        if y.dtype != self.compute_dtype:
            y = _cast(y, self.compute_dtype)
        return y

    @staticmethod
    def _move(variable: Any, value: np.ndarray, momentum: float) -> np.ndarray:
        """`variable = variable * momentum + value * (1 - momentum)`, in `value`'s dtype.

        Returns the new value. A stand-in Tensor (`stateless_call`) is left as it is.
        """
        new = _array(variable).astype(value.dtype, copy=False) * momentum + value * (
            1.0 - momentum
        )
        if isinstance(variable, Variable):
            variable.assign(new)
        return new

    def _renorm_call(self, x: Tensor, mask: Any) -> Tensor:
        """Training mode with batch renormalization, as Keras computes it."""
        xhat, mean, variance = batch_norm(
            x, None, None, axis=self._axis, epsilon=self.epsilon, mask=mask, return_stats=True
        )
        ct = mean.dtype
        stddev = np.sqrt(variance + ct.type(self.epsilon))
        renorm_mean = _array(self.renorm_mean).astype(ct, copy=False)
        # Avoids dividing by (almost) zero early in training.
        renorm_stddev = np.maximum(
            _array(self.renorm_stddev).astype(ct, copy=False), np.sqrt(ct.type(self.epsilon))
        )
        r = stddev / renorm_stddev
        d = (mean - renorm_mean) / renorm_stddev
        clipping = self.renorm_clipping or {}
        rmin, rmax, dmax = clipping.get("rmin"), clipping.get("rmax"), clipping.get("dmax")
        if rmin is not None:
            r = np.maximum(r, ct.type(rmin))
        if rmax is not None:
            r = np.minimum(r, ct.type(rmax))
        if dmax is not None:
            d = np.clip(d, ct.type(-dmax), ct.type(dmax))
        # (xhat * r + d) * gamma + beta, with r and d constants to the gradient.
        if self.gamma is not None:
            scale: Any = ops.mul(r, self.gamma)
            offset: Any = ops.mul(d, self.gamma)
        else:
            scale, offset = Tensor(r), Tensor(d)
        if self.beta is not None:
            offset = ops.add(offset, self.beta)
        bshape = tuple(-1 if i == self._axis else 1 for i in range(x.ndim))
        y = ops.add(ops.mul(xhat, ops.reshape(scale, bshape)), ops.reshape(offset, bshape))
        if x.size:
            with self._stats_lock:
                self._move(self.renorm_mean, mean, self.renorm_momentum)
                self._move(self.renorm_stddev, stddev, self.renorm_momentum)
                self._move(self.moving_mean, mean, self.momentum)
                new_stddev = self._move(self.moving_stddev, stddev, self.momentum)
                # The variance follows the standard deviation, never below 0 after rounding.
                if isinstance(self.moving_variance, Variable):
                    self.moving_variance.assign(
                        np.maximum(new_stddev * new_stddev - ct.type(self.epsilon), 0)
                    )
        return y

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The input shape (after checking that `axis` fits its rank, as Keras)."""
        shape = tuple(input_shape)
        _check_bounds([self.axis], shape, self.axis)
        return shape

    def get_config(self) -> dict[str, Any]:
        """Keras's 17 keys (after the base ones)."""
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(
                self.moving_variance_initializer
            ),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": (
                None if self.renorm_clipping is None else dict(self.renorm_clipping)
            ),
            "renorm_momentum": self.renorm_momentum,
        }
