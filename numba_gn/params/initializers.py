"""Keras 3 weight initializers on numpy: same names, defaults, formulas and config keys.

Random initializers draw from `numpy.random.default_rng`. An integer `seed` makes every
call return the same values (as Keras does for integer seeds); `seed=None` draws fresh values
on every call. Exact random values are not Keras's, the distributions are.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from numba_gn import _checks
from numba_gn._dtypes import is_float
from numba_gn.params._registry import Registry, build_from_config

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "deserialize",
    "get",
    "serialize",
]

ShapeLike = int | Sequence[int]

# Keras's correction: the stddev of a unit normal truncated to [-2, 2] is 0.8796...,
# so VarianceScaling divides by it to reach the requested variance after truncation.
_TRUNCATED_STDDEV = 0.87962566103423978


def _standardize_shape(shape: ShapeLike) -> tuple[int, ...]:
    """Return `shape` as a tuple of non-negative Python ints (each at most `sys.maxsize`)."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d <= sys.maxsize:
            raise ValueError(f"shape must contain non-negative ints, got {_checks.show(shape)}")
    return tuple(int(d) for d in dims)


def _standardize_dtype(dtype: DTypeLike | None, *, floating: bool = False) -> np.dtype:
    """Resolve `dtype` (default float32, Keras's floatx); optionally require a float dtype."""
    dt = np.dtype("float32" if dtype is None else dtype)
    if floating and not is_float(dt):  # NumPy's floats or bfloat16 (not an np.floating)
        raise ValueError(f"This initializer needs a floating dtype, got dtype={dt.name}")
    return dt


def compute_fans(
    shape: ShapeLike,
    input_axes: Iterable[int] | None = None,
    output_axes: Iterable[int] | None = None,
) -> tuple[int, int]:
    """Number of input and output units of a weight shape, as Keras computes them.

    Rank 0 gives `(1, 1)`, rank 1 `(n, n)`, rank 2 `(rows, cols)`; higher ranks are
    treated as convolution kernels `(*spatial, in, out)` and multiplied by the receptive field.
    With both `input_axes` and `output_axes` given, the fans are the products of those dims.
    """
    shape = _standardize_shape(shape)
    if input_axes is not None and output_axes is not None:
        for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            if any(not -len(shape) <= a < len(shape) for a in axes):
                raise ValueError(
                    f"`{name}`={list(axes)} has an axis out of range for shape {shape}."
                )
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer:
    """Base class: `init(shape, dtype=None)` returns a new `numpy.ndarray`."""

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return an array of `shape` and `dtype` (default float32)."""
        raise NotImplementedError("Initializer subclasses must implement __call__()")

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        """Rebuild an initializer from `get_config` output (unknown keys are an error)."""
        return build_from_config(cls, config)

    def clone(self) -> Initializer:
        """Return a new initializer with the same configuration."""
        return self.__class__.from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """Initializer that returns an array of zeros."""

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return zeros of `shape` and `dtype` (default float32)."""
        return np.zeros(_standardize_shape(shape), dtype=_standardize_dtype(dtype))


class Ones(Initializer):
    """Initializer that returns an array of ones."""

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return ones of `shape` and `dtype` (default float32)."""
        return np.ones(_standardize_shape(shape), dtype=_standardize_dtype(dtype))


class Constant(Initializer):
    """Initializer that fills the array with one scalar `value` (Keras: scalars only).

    `value` must be a finite real number (Keras also takes nan, inf and complex numbers, which
    no weight should start from); ints are kept as ints in the config.
    """

    def __init__(self, value: float = 0.0) -> None:
        if np.ndim(value) != 0:
            raise ValueError(f"Constant only accepts a scalar value, got value={value!r}")
        # Store a Python scalar so the config stays plain JSON.
        self.value = value.item() if isinstance(value, np.generic | np.ndarray) else value
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise TypeError(
                f"Constant `value` must be a real number, got value={_checks.show(value)}"
            )
        _checks.real(self.value, "value")

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return `value` broadcast to `shape` in `dtype` (default float32)."""
        return np.full(_standardize_shape(shape), self.value, dtype=_standardize_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        """Return `{"value": value}`."""
        return {"value": self.value}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constant:
        """Rebuild from a config; also reads Keras's `{"class_name": "__tensor__"}` value form."""
        config = dict(config)
        value = config.get("value")
        if isinstance(value, Mapping):
            config["value"] = _scalar_from_keras_tensor_config(value)
        return build_from_config(cls, config)


def _scalar_from_keras_tensor_config(value: Mapping[str, Any]) -> float:
    """Read the scalar out of Keras's `__tensor__`/`__numpy__` wrapper without evaluating it."""
    inner = value.get("config")
    if value.get("class_name") not in ("__tensor__", "__numpy__") or not isinstance(inner, Mapping):
        raise ValueError(f"Constant value must be a number, got {value!r}")
    raw = inner.get("value")
    if isinstance(raw, bool) or not isinstance(raw, numbers.Number):
        raise ValueError(f"Constant value must be a number, got {value!r}")
    return raw


class Identity(Initializer):
    """Initializer returning `gain` times the identity matrix (2D shapes only).

    Unlike Keras (whose config drops it), `gain` is kept in the config.
    """

    def __init__(self, gain: float = 1.0) -> None:
        _checks.real(gain, "gain")
        self.gain = gain

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return `gain * eye(rows, cols)`; raise `ValueError` unless `shape` is 2D."""
        dims = _standardize_shape(shape)
        if len(dims) != 2:
            raise ValueError(
                "Identity matrix initializer can only be used for 2D matrices. "
                f"Received: shape={tuple(dims)} of rank {len(dims)}."
            )
        dt = _standardize_dtype(dtype)
        return (self.gain * np.eye(*dims)).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"gain": gain}`."""
        return {"gain": self.gain}


def _check_seed(seed: Any) -> int | None:
    """Validate a seed: `None` or any integer (numpy integers become Python ints).

    A wrong type is a `ValueError`, as in Keras.
    """
    return _checks.seed(seed)


class RandomInitializer(Initializer):
    """Base of the random initializers: holds `seed` and makes the generator per call."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = _check_seed(seed)

    def _rng(self) -> np.random.Generator:
        # A fresh generator per call: an int seed repeats its values on every call, as in Keras.
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng(self.seed % 2**64)  # SeedSequence needs a non-negative int

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed": seed}`."""
        return {"seed": self.seed}


def _truncated_standard_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit normal samples restricted to [-2, 2] by redrawing the rest (as Keras does)."""
    out = rng.standard_normal(size)
    bad = np.flatnonzero(np.abs(out) > 2.0)
    while bad.size:
        out[bad] = rng.standard_normal(bad.size)
        bad = bad[np.abs(out[bad]) > 2.0]
    return out


class RandomNormal(RandomInitializer):
    """Samples from a normal distribution `N(mean, stddev**2)`.

    `mean` must be finite and `stddev` finite and >= 0.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        _check_mean_stddev(mean, stddev)
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return normal samples of `shape` in a float `dtype` (default float32)."""
        dims, dt = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        z = self._rng().standard_normal(dims)
        return (self.mean + self.stddev * z).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "mean", "stddev"}`."""
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


def _check_mean_stddev(mean: Any, stddev: Any) -> None:
    _checks.real(mean, "mean")
    _checks.real(stddev, "stddev", low=0.0)


class TruncatedNormal(RandomInitializer):
    """Normal samples with values beyond two standard deviations redrawn.

    `mean` must be finite and `stddev` finite and >= 0.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        _check_mean_stddev(mean, stddev)
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return truncated-normal samples of `shape` in a float `dtype`."""
        dims, dt = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        z = _truncated_standard_normal(self._rng(), math.prod(dims)).reshape(dims)
        return (self.mean + self.stddev * z).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "mean", "stddev"}`."""
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Samples from the uniform distribution on `[minval, maxval)`.

    Both bounds must be finite, with `minval <= maxval` (equal bounds give a constant).
    """

    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        lo, hi = _checks.real(minval, "minval"), _checks.real(maxval, "maxval")
        if lo > hi:
            raise ValueError(
                f"`minval` must be <= `maxval`, got minval={minval!r} and maxval={maxval!r}."
            )
        self.minval = minval
        self.maxval = maxval
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return uniform samples of `shape` in a float `dtype`."""
        dims, dt = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        return self._rng().uniform(self.minval, self.maxval, dims).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "minval", "maxval"}`."""
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


class VarianceScaling(RandomInitializer):
    """Samples whose variance is `scale / n`, with `n` a fan chosen by `mode`.

    `distribution="truncated_normal"` (`"normal"` is an alias) draws a normal truncated at
    two standard deviations with `stddev = sqrt(scale / n) / 0.8796...` so the variance after
    truncation is `scale / n`; `"untruncated_normal"` uses `stddev = sqrt(scale / n)`;
    `"uniform"` draws from `[-limit, limit]` with `limit = sqrt(3 * scale / n)`.

    `scale` must be finite and > 0; `input_axes`/`output_axes` are None or non-empty
    lists of ints.
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(
                f"Argument `scale` must be positive float. Received: scale={_checks.show(scale)}"
            )
        # Keras's ValueError for scale <= 0; stricter for nan, inf and ints beyond floats.
        _checks.real(scale, "scale", low=0.0, low_open=True)
        if not isinstance(mode, str) or mode not in _MODES:
            raise ValueError(f"Invalid `mode` argument: {mode!r}. Please use one of {_MODES}")
        if not isinstance(distribution, str):
            raise TypeError(
                f"Invalid `distribution` argument: {distribution!r}; expected one of "
                f"{_DISTRIBUTIONS} (or 'normal')"
            )
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` argument: {distribution!r}. "
                f"Please use one of {_DISTRIBUTIONS}"
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = _axes_list(input_axes, "input_axes")
        self.output_axes = _axes_list(output_axes, "output_axes")
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return samples of `shape` in a float `dtype` with the configured variance."""
        dims, dt = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        fan_in, fan_out = compute_fans(dims, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _TRUNCATED_STDDEV
            z = _truncated_standard_normal(rng, math.prod(dims)).reshape(dims)
            return (stddev * z).astype(dt)
        if self.distribution == "untruncated_normal":
            return (math.sqrt(variance) * rng.standard_normal(dims)).astype(dt)
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, dims).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "scale", "mode", "distribution", "input_axes", "output_axes"}`."""
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


def _axes_list(axes: Any, name: str) -> list[int] | None:
    """`None` or a non-empty list of ints (a copy, so the caller's list stays theirs)."""
    if axes is None:
        return None
    return list(_checks.int_sequence(axes, name, allow_int=False))  # type: ignore[arg-type]


class _FixedVarianceScaling(VarianceScaling):
    """VarianceScaling preset whose scale/mode/distribution are fixed (Glorot, He, Lecun)."""

    _preset: tuple[float, str, str] = (1.0, "fan_in", "truncated_normal")

    def __init__(
        self,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        scale, mode, distribution = self._preset
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "input_axes", "output_axes"}` (Keras's keys for the presets)."""
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: `U(-limit, limit)`, `limit = sqrt(6 / (fan_in + fan_out))`."""

    _preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal with variance `2 / (fan_in + fan_out)`."""

    _preset = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal with variance `2 / fan_in`."""

    _preset = (2.0, "fan_in", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """He uniform: `U(-limit, limit)`, `limit = sqrt(6 / fan_in)`."""

    _preset = (2.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """Lecun normal: truncated normal with variance `1 / fan_in`."""

    _preset = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """Lecun uniform: `U(-limit, limit)`, `limit = sqrt(3 / fan_in)`."""

    _preset = (1.0, "fan_in", "uniform")


class Orthogonal(RandomInitializer):
    """Orthogonal matrix from the QR decomposition of a normal matrix, times `gain`.

    Shapes of rank > 2 are flattened to `(prod(shape[:-1]), shape[-1])`. The result has
    orthonormal rows when there are fewer rows than columns, orthonormal columns otherwise.
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        _checks.real(gain, "gain")
        self.gain = gain
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return a (scaled) orthogonal array of `shape`; rank must be at least 2."""
        dims, dt = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        if len(dims) < 2:
            raise ValueError(
                "The tensor to initialize must be at least two-dimensional. "
                f"Received: shape={dims} of rank {len(dims)}."
            )
        rows, cols = math.prod(dims[:-1]), dims[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)  # in float64 for orthogonality, cast at the end
        # Fix the signs so Q is uniformly distributed (Haar), as Keras does.
        signs = np.sign(np.diag(r))
        q = q * np.where(signs == 0, 1.0, signs)
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(dims)).astype(dt)

    def get_config(self) -> dict[str, Any]:
        """Return `{"seed", "gain"}`."""
        return {**super().get_config(), "gain": self.gain}


class _ArrayInitializer(Initializer):
    """Returns a copy of a fixed array (what `get` makes of an array identifier)."""

    def __init__(self, value: Any) -> None:
        self.value = np.array(value)

    def __call__(self, shape: ShapeLike, dtype: DTypeLike | None = None) -> np.ndarray:
        """Return the stored array cast to `dtype`; `shape` must equal its shape."""
        dims = _standardize_shape(shape)
        if dims != self.value.shape:
            raise ValueError(
                f"Expected `shape` to be {self.value.shape} for direct tensor as initializer. "
                f"Received shape={dims}"
            )
        return self.value.astype(_standardize_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        """Not serializable: the array is data, not configuration."""
        raise TypeError("An initializer made from an array cannot be serialized")


_REGISTRY = Registry(
    "initializer",
    Initializer,
    classes=(
        Initializer,
        Zeros,
        Ones,
        Constant,
        Identity,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
        GlorotNormal,
        GlorotUniform,
        HeNormal,
        HeUniform,
        LecunNormal,
        LecunUniform,
        Orthogonal,
    ),
    # Keras's historical aliases.
    aliases={
        "IdentityInitializer": Identity,
        "OrthogonalInitializer": Orthogonal,
        "normal": RandomNormal,
        "uniform": RandomUniform,
        "one": Ones,
        "zero": Zeros,
    },
    from_array=_ArrayInitializer,
)


def serialize(initializer: Initializer | None) -> dict[str, Any] | None:
    """Return a Keras-3-style config dict for `initializer` (`None` gives `None`)."""
    return _REGISTRY.serialize(initializer)


def deserialize(
    config: str | Mapping[str, Any] | None, custom_objects: Mapping[str, Any] | None = None
) -> Initializer | None:
    """Build an initializer from a name or a (Keras) config dict; never imports anything."""
    return _REGISTRY.deserialize(config, custom_objects)


def get(identifier: Any) -> Initializer | Any | None:
    """Resolve `identifier`: None, name, config dict, instance, class, array or callable."""
    return _REGISTRY.get(identifier)
