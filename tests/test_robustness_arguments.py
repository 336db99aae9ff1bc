"""Audit of scalar arguments: nonsense is refused where it is given, by a message naming it.

Every public constructor and entry point with hyper-parameters is swept with the same values:
``0``, ``-1``, ``nan``, ``inf``, ``10**400`` (an int no float can hold), the string ``"3"``, the
list ``[1]`` and ``True`` (a bool where a number is meant). The callables are discovered from
the packages' ``__all__`` lists and their parameters from their signatures, so a class added
later is swept without editing this file; only arguments that are not scalars (arrays, layer
lists, identifiers of initializers and the like) are skipped, by name, in ``SKIP``.

The expected outcome of each (callable, argument, value) is, by default, ``REJECT``: a
``ValueError`` or ``TypeError`` raised by the call or constructor itself, whose message names
the argument. ``EXPECT`` lists the exceptions:

* ``OK``: the value is valid (``epsilon=0``, ``groups=-1``, ``seed=-1``...); the object is
  built and used once on a tiny input without error;
* ``LATE``: valid at construction, since the valid range depends on the input's rank (a layer's
  ``axis=0`` is the batch axis), and refused with a named error on the first call;
* ``UNSUPPORTED``: an argument accepted only at its default (``Dense(lora_rank=...)``), refused
  with a ``NotImplementedError`` naming it.

``EXPECT`` is keyed by ``"Class.argument"`` (looked up along the class's MRO, so subclasses
inherit their base's entries), ``"function.argument"``, or the bare argument name.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import numba_gn
from numba_gn import autograd, layers, models
from numba_gn.params import Variable, constraints, initializers, regularizers
from numba_gn.training import losses, metrics, optimizers

SWEEP: dict[str, Any] = {
    "zero": 0,
    "minus_one": -1,
    "nan": math.nan,
    "inf": math.inf,
    "huge": 10**400,
    "string": "3",
    "list": [1],
    "bool": True,
}

REJECT, OK, LATE, UNSUPPORTED = "reject", "ok", "late", "unsupported"
# Valid values that Keras also answers with a deprecation warning.
WARNS = {("LayerNormalization", "rms_scaling", "bool")}

# Arguments that are not scalars: data, names, dtypes, and identifiers resolved by a registry
# (swept by the registries' own tests).
# (with a callable's id: "group_norm_backward.mean" is an array, RandomNormal's mean is not).
SKIP = frozenset(
    {
        "self", "x", "y", "dy", "mask", "gamma", "beta", "out", "values", "inputs", "stream",
        "validation_data", "layers", "name", "dtype", "activation", "initializer",
        "regularizer", "constraint",
        *(f"{fn}.{arg}" for fn in ("group_norm_backward", "group_norm_masked_backward")
          for arg in ("mean", "rstd")),
    }
)
_IDENTIFIER_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# Keras config keys numba_gn does not implement: any value but the default is refused.
_UNSUPPORTED_ARGS = ("activity_regularizer", "lora_rank", "lora_alpha", "quantization_config")

# Values for required arguments (and a few defaults that do not fit the tiny inputs used).
REQUIRED: dict[str, Any] = {
    "units": 2,
    "filters": 2,
    "kernel_size": 1,
    "rate": 0.5,
    "activation": "relu",
    "initializer": "zeros",
    "shape": (3,),
    "fn": metrics.binary_accuracy,
    "name": "m",
    "learning_rate": 0.1,
    "initial_learning_rate": 0.1,
    "decay_steps": 10,
    "pool_size": 2,
    "target_shape": (4,),
}
BASE: dict[str, dict[str, Any]] = {
    "GroupNormalization": {"groups": 2},  # the default 32 is more than the 4 test channels
    "Variable": {"shape": (2,)},
    "InputLayer": {"shape": (3,)},
    "Input": {"shape": (3,)},
}
# Base values left out when another argument is swept (the two would conflict).
CONFLICTS: dict[str, tuple[str, ...]] = {
    "InputLayer.batch_shape": ("shape",),
    "Input.batch_shape": ("shape",),
}

SEEDS = {"zero": OK, "minus_one": OK, "huge": OK}  # any int; generators reduce it mod 2**64
FLAG = {"bool": OK}
ZERO_OK = {"zero": OK}
# group_norm and friends: -1 is one group per channel; axes are checked at the call.
_GN_GROUPS = {"minus_one": OK}
_GN_AXIS = {"minus_one": OK, "list": OK}

EXPECT: dict[str, dict[str, str]] = {
    # -- shared names
    "seed": SEEDS,
    "epsilon": ZERO_OK,
    "axis": {"zero": OK, "minus_one": OK, "list": OK},  # constraints: axes of the weight
    "trainable": FLAG,
    "autocast": FLAG,
    "use_bias": FLAG,
    "center": FLAG,
    "BatchNormalization.scale": FLAG,
    "LayerNormalization.scale": FLAG,
    "LayerNormalization.rms_scaling": FLAG,
    "renorm": FLAG,
    "validation_freq": {"list": OK},  # Keras: an int, or the epochs to validate at
    "keepdims": FLAG,
    "from_logits": FLAG,
    "nesterov": FLAG,
    "amsgrad": FLAG,
    "shuffle": FLAG,
    "return_dict": FLAG,
    "return_stats": FLAG,
    "approximate": FLAG,
    "negative_slope": {"zero": OK, "minus_one": OK},  # any real slope, as Keras's
    **{a: {label: UNSUPPORTED for label in SWEEP} for a in _UNSUPPORTED_ARGS},
    # -- initializers
    "Constant.value": {"zero": OK, "minus_one": OK},
    "gain": {"zero": OK, "minus_one": OK},
    "mean": {"zero": OK, "minus_one": OK},
    "stddev": ZERO_OK,
    "minval": {"zero": OK, "minus_one": OK},
    "maxval": ZERO_OK,  # >= the default minval -0.05
    "input_axes": {"list": OK},
    "output_axes": {"list": OK},
    # -- regularizers and constraints
    "l1": ZERO_OK,
    "l2": ZERO_OK,
    "factor": ZERO_OK,
    "max_value": ZERO_OK,
    "min_value": ZERO_OK,
    "rate": ZERO_OK,  # MinMaxNorm and Dropout: [0, 1]
    # -- layers
    "GroupNormalization.groups": _GN_GROUPS,
    "GroupNormalization.axis": {"minus_one": OK, "list": OK, "zero": LATE},  # 0: batch axis
    "GroupNormalization.center": FLAG,
    "GroupNormalization.scale": FLAG,
    "Conv1D.kernel_size": {"list": OK},
    "Conv1D.strides": {"list": OK},
    "Conv1D.dilation_rate": {"list": OK},
    "MaxPooling1D.pool_size": {"list": OK},
    "MaxPooling1D.strides": {"list": OK},
    "AveragePooling1D.pool_size": {"list": OK},
    "AveragePooling1D.strides": {"list": OK},
    "Concatenate.axis": {"zero": OK, "minus_one": OK},  # ints only: no list
    "ZeroPadding2D.padding": ZERO_OK,
    "Cropping2D.cropping": ZERO_OK,
    "Reshape.target_shape": {"list": LATE},
    "BatchNormalization.axis": {"zero": OK, "minus_one": OK},  # one axis, as in Keras
    "BatchNormalization.renorm_momentum": ZERO_OK,
    "Conv2DTranspose.output_padding": ZERO_OK,  # (1,) does not fit a sample of 4
    "noise_shape": {"list": LATE},  # a rank-1 noise shape for a rank-2 input
    "InputSpec.ndim": ZERO_OK,
    "InputSpec.min_ndim": ZERO_OK,
    "InputLayer.shape": {"list": OK},
    "InputLayer.batch_shape": {"list": OK},
    "InputLayer.sparse": {"bool": UNSUPPORTED},
    "InputLayer.ragged": {"bool": UNSUPPORTED},
    "InputLayer.optional": {"bool": UNSUPPORTED},
    "Input.shape": {"list": OK},
    "Input.batch_shape": {"list": OK},
    "Input.sparse": {"bool": UNSUPPORTED},
    "Input.ragged": {"bool": UNSUPPORTED},
    "Input.optional": {"bool": UNSUPPORTED},
    "Variable.shape": {"zero": OK, "list": OK},
    # -- losses and metrics
    "Loss.axis": {"zero": OK, "minus_one": OK},
    "label_smoothing": ZERO_OK,
    "ignore_class": {"zero": OK, "minus_one": OK},
    "threshold": ZERO_OK,
    "count": ZERO_OK,
    # -- optimizers and the training loop
    "learning_rate": ZERO_OK,
    "initial_learning_rate": ZERO_OK,
    "alpha": ZERO_OK,
    "momentum": ZERO_OK,
    "beta_1": ZERO_OK,
    "beta_2": ZERO_OK,
    "weight_decay": ZERO_OK,
    "Adam.epsilon": {},  # > 0: at 0 a zero gradient divides 0 by 0
    "initial_epoch": ZERO_OK,  # epochs must be at least one more
    "fit.seed": ZERO_OK,  # the shuffling seed must be >= 0 (unlike the other seeds)
    "verbose": ZERO_OK,
    "validation_split": ZERO_OK,
    # -- functional entry points
    **{
        f"{fn}.{arg}": table
        for fn in (
            "group_norm",
            "group_norm_backward",
            "group_norm_masked",
            "group_norm_masked_backward",
            "autograd.group_norm",
        )
        for arg, table in (("groups", _GN_GROUPS), ("axis", _GN_AXIS))
    },
}


# -- targets ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """A callable to sweep: ``make(**kwargs)`` builds or calls; ``use(obj)`` exercises it."""

    id: str
    make: Callable[..., Any]
    signature_of: Callable[..., Any]
    mro: tuple[str, ...] = ()
    use: Callable[[Any], Any] | None = None
    base: dict[str, Any] = field(default_factory=dict)

    def params(self) -> list[str]:
        """The swept parameter names (everything but ``SKIP``, identifiers and ``*args``)."""
        out = []
        for p in inspect.signature(self.signature_of).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in SKIP or f"{self.id}.{p.name}" in SKIP:
                continue
            if p.name.endswith(_IDENTIFIER_SUFFIXES) and p.name not in _UNSUPPORTED_ARGS:
                continue
            out.append(p.name)
        return out

    def required(self) -> dict[str, Any]:
        """Values for the parameters without a default, plus this target's ``base``."""
        kwargs = {
            p.name: REQUIRED[p.name]
            for p in inspect.signature(self.signature_of).parameters.values()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name in REQUIRED
        }
        return {**kwargs, **self.base}


def _public_classes(module: Any, base: type) -> list[type]:
    return [
        obj
        for name in module.__all__
        if isinstance(obj := getattr(module, name), type) and issubclass(obj, base)
    ]


def _f32(*shape: int) -> np.ndarray:
    return np.linspace(0.1, 0.9, math.prod(shape), dtype=np.float32).reshape(shape)


# Inputs of the layers whose default input (2, 4) does not fit.
_LAYER_INPUTS = {
    "Conv1D": (2, 4, 2),
    "Conv2D": (2, 4, 4, 2),
    "GlobalAveragePooling1D": (2, 3, 2),
    "GlobalAveragePooling2D": (2, 3, 3, 2),
    "Flatten": (2, 3, 2),
    "MaxPooling1D": (2, 4, 2),
    "AveragePooling1D": (2, 4, 2),
    "MaxPooling2D": (2, 4, 4, 2),
    "AveragePooling2D": (2, 4, 4, 2),
    "ZeroPadding2D": (2, 3, 3, 2),
    "Cropping2D": (2, 3, 3, 2),
    "UpSampling1D": (2, 3, 2),
    "UpSampling2D": (2, 3, 3, 2),
    "Conv2DTranspose": (2, 4, 4, 2),
    "DepthwiseConv2D": (2, 4, 4, 2),
}
# Classes only constructed: abstract bases and containers with nothing to call on their own.
_CONSTRUCT_ONLY = {
    initializers.Initializer,
    layers.Layer,
    models.Model,
    models.Sequential,
    layers.InputLayer,
    losses.Loss,
    metrics.Metric,
    optimizers.Optimizer,
}


def _use_layer(layer: Any) -> Any:
    shape = _LAYER_INPUTS.get(type(layer).__name__, (2, 4))
    if layer._takes_input_list:  # the merging layers take a list of inputs
        return layer([_f32(*shape), _f32(*shape)], training=True)
    return layer(_f32(*shape), training=True)


def _use_loss(loss: Any) -> Any:
    y_pred = _f32(2, 3)
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return loss(np.array([0, 2]), y_pred)
    return loss(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32), y_pred)


def _use_metric(metric: Any) -> Any:
    if isinstance(metric, metrics.Mean):
        metric.update_state(1.0)
    else:
        metric.update_state(np.array([[0.0, 1.0]]), np.array([[0.2, 0.8]]))
    return metric.result()


def _use_optimizer(opt: Any) -> Any:
    v = Variable(np.ones(3, np.float32))
    opt.apply([np.full(3, 0.5, np.float32)], [v])
    return v


def _class_targets() -> list[Target]:
    families: list[tuple[str, Any, type, Callable[[Any], Any] | None]] = [
        ("initializers", initializers, initializers.Initializer, lambda i: i((2, 3))),
        ("regularizers", regularizers, regularizers.Regularizer, lambda r: r(_f32(2, 3))),
        ("constraints", constraints, constraints.Constraint, lambda c: c(_f32(2, 3))),
        ("layers", layers, layers.Layer, _use_layer),
        ("models", models, models.Model, None),
        ("losses", losses, losses.Loss, _use_loss),
        ("metrics", metrics, metrics.Metric, _use_metric),
        ("optimizers", optimizers, optimizers.Optimizer, _use_optimizer),
    ]
    out = []
    for prefix, module, base, use in families:
        for cls in _public_classes(module, base):
            out.append(
                Target(
                    id=f"{prefix}.{cls.__name__}",
                    make=cls,
                    signature_of=cls,
                    mro=tuple(c.__name__ for c in cls.__mro__),
                    use=None if cls in _CONSTRUCT_ONLY else use,
                    base=BASE.get(cls.__name__, {}),
                )
            )
    # Classes outside the families' hierarchies, and plain functions.
    for cls, use in (
        (optimizers.CosineDecay, lambda s: s(3)),
        (layers.InputSpec, None),
        (Variable, None),
    ):
        out.append(
            Target(
                id=cls.__name__,
                make=cls,
                signature_of=cls,
                mro=tuple(c.__name__ for c in cls.__mro__),
                use=use,
                base=BASE.get(cls.__name__, {}),
            )
        )
    out.append(Target(id="Input", make=layers.Input, signature_of=layers.Input, mro=("Input",),
                      base=BASE["Input"]))
    return out


# -- functional entry points -----------------------------------------------------------------------


def _x() -> np.ndarray:
    return _f32(2, 4)


def _stats(kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Statistics for a backward call: from the forward pass with the same arguments.

    When the forward refuses them, statistics of the base shape are used: the backward must
    then refuse the same argument before it looks at the statistics.
    """
    fwd = {k: v for k, v in kwargs.items() if k in ("groups", "axis", "group_size")}
    try:
        _, mean, rstd = numba_gn.group_norm(_x(), **fwd, return_stats=True)
    except (TypeError, ValueError):
        _, mean, rstd = numba_gn.group_norm(_x(), 2, return_stats=True)
    return mean, rstd


def _gn_backward(**kwargs: Any) -> Any:
    mean, rstd = _stats(kwargs)
    return numba_gn.group_norm_backward(_x(), _x(), mean, rstd, **kwargs)


def _gn_masked(**kwargs: Any) -> Any:
    return numba_gn.group_norm_masked(_x(), np.ones(2, bool), **kwargs)


def _gn_masked_backward(**kwargs: Any) -> Any:
    fwd = {k: v for k, v in kwargs.items() if k in ("groups", "axis")}
    try:
        _, mean, rstd = numba_gn.group_norm_masked(_x(), np.ones(2, bool), **fwd)
    except (TypeError, ValueError):
        _, mean, rstd = numba_gn.group_norm_masked(_x(), np.ones(2, bool), 2)
    return numba_gn.group_norm_masked_backward(
        _x(), _x(), np.ones(2, bool), mean, rstd, **kwargs
    )


def _function_targets() -> list[Target]:
    gn_base = {"groups": 2}
    specs: list[tuple[str, Callable[..., Any], Callable[..., Any], dict[str, Any]]] = [
        ("group_norm", lambda **kw: numba_gn.group_norm(_x(), **kw), numba_gn.group_norm,
         gn_base),
        ("group_norm_backward", _gn_backward, numba_gn.group_norm_backward, gn_base),
        ("group_norm_masked", _gn_masked, numba_gn.group_norm_masked, gn_base),
        ("group_norm_masked_backward", _gn_masked_backward,
         numba_gn.group_norm_masked_backward, gn_base),
        ("autograd.group_norm", lambda **kw: autograd.group_norm(autograd.Tensor(_x()), **kw),
         autograd.group_norm, gn_base),
        ("binary_accuracy",
         lambda **kw: metrics.binary_accuracy(np.array([[1.0]]), np.array([[0.7]]), **kw),
         metrics.binary_accuracy, {}),
        ("Mean.update_state", lambda **kw: metrics.Mean("m").update_state(2.0, **kw),
         metrics.Mean.update_state, {}),
    ]
    return [
        Target(id=name, make=make, signature_of=sig, mro=(name,), base=base)
        for name, make, sig, base in specs
    ]


def _model() -> Any:
    model = models.Sequential([layers.Dense(2, kernel_initializer="ones")])
    model.compile(optimizer="sgd", loss="mse")
    model.build((None, 3))
    return model


def _model_call(method: str) -> Callable[..., Any]:
    """``model.<method>(x, y, **kwargs)`` that also checks a refused call changed nothing."""

    def call(**kwargs: Any) -> Any:
        model = _model()
        before = [w.numpy() for w in model.weights]
        args = (_f32(4, 3),) if method == "predict" else (_f32(4, 3), _f32(4, 2))
        try:
            return getattr(model, method)(*args, verbose=kwargs.pop("verbose", 0), **kwargs)
        except (TypeError, ValueError):
            for b, w in zip(before, model.weights, strict=True):
                np.testing.assert_array_equal(w.numpy(), b, err_msg="a refused call trained")
            raise

    return call


def _model_targets() -> list[Target]:
    return [
        Target(
            id=f"Sequential.{method}",
            make=_model_call(method),
            signature_of=getattr(models.Sequential, method),
            mro=(method,),
        )
        for method in ("fit", "evaluate", "predict")
    ]


TARGETS = _class_targets() + _function_targets() + _model_targets()


def _expected(target: Target, arg: str, label: str) -> str:
    for owner in target.mro:
        table = EXPECT.get(f"{owner}.{arg}")
        if table is not None:
            return table.get(label, REJECT)
    return EXPECT.get(arg, {}).get(label, REJECT)


CASES = [
    pytest.param(t, arg, label, id=f"{t.id}.{arg}={label}")
    for t in TARGETS
    for arg in t.params()
    for label in SWEEP
]


def _names(message: str, arg: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", message) is not None


# -- the sweep -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "arg", "label"), CASES)
def test_argument(target: Target, arg: str, label: str) -> None:
    value = SWEEP[label]
    if isinstance(value, list):
        value = list(value)  # a fresh list per case: nothing may keep or edit the shared one
    kwargs = {**target.required(), arg: value}
    for owner in target.mro:
        for other in CONFLICTS.get(f"{owner}.{arg}", ()):
            kwargs.pop(other, None)
    expected = _expected(target, arg, label)

    if expected in (REJECT, UNSUPPORTED):
        error = (ValueError, TypeError) if expected == REJECT else NotImplementedError
        with pytest.raises(error) as info:
            target.make(**kwargs)
        message = str(info.value)
        assert _names(message, arg), f"the message does not name `{arg}`: {message!r}"
        return

    if (target.mro[0], arg, label) in WARNS:
        with pytest.warns(UserWarning, match=arg):
            obj = target.make(**kwargs)
    else:
        obj = target.make(**kwargs)  # OK and LATE values are valid at construction
    if expected == OK:
        if target.use is not None:
            target.use(obj)
        return
    assert target.use is not None, "LATE needs a use that can refuse the value"
    with pytest.raises((ValueError, TypeError)) as info:
        target.use(obj)
    assert _names(str(info.value), arg), f"the message does not name `{arg}`: {info.value!s}"


# -- the sweep's own coverage ----------------------------------------------------------------------


def test_every_family_is_discovered() -> None:
    ids = {t.id for t in TARGETS}
    for expected in (
        "initializers.VarianceScaling",
        "regularizers.L1L2",
        "constraints.MinMaxNorm",
        "layers.GroupNormalization",
        "layers.Conv2D",
        "layers.Dropout",
        "losses.BinaryCrossentropy",
        "metrics.Accuracy",
        "optimizers.AdamW",
        "CosineDecay",
        "group_norm",
        "Sequential.fit",
    ):
        assert expected in ids


def test_expect_table_names_only_swept_arguments() -> None:
    """Every entry of ``EXPECT`` applies to some swept argument (no stale entries)."""
    swept = {(owner, arg) for t in TARGETS for arg in t.params() for owner in t.mro}
    swept_args = {arg for _, arg in swept}
    for key in EXPECT:
        owner, _, arg = key.rpartition(".")
        if owner:
            assert (owner, arg) in swept or (
                # functional ids contain a dot themselves
                any(t.id == owner and arg in t.params() for t in TARGETS)
            ), key
        else:
            assert arg in swept_args, key
        assert set(EXPECT[key]) <= set(SWEEP), key


def test_the_reported_cases_are_fixed() -> None:
    """The values first found unvalidated, each with the error that names it."""
    with pytest.raises(ValueError, match="`epsilon`"):
        layers.GroupNormalization(epsilon=10**400)
    with pytest.raises(ValueError, match="l2"):
        regularizers.deserialize({"class_name": "L2", "config": {"l2": 10**400}})
    with pytest.raises(ValueError, match="`value`"):
        initializers.Constant(value=10**400)
    # Zero channels and one group per channel: zero groups, an empty result.
    y, mean, rstd = numba_gn.group_norm(np.zeros((2, 0), np.float32), -1, return_stats=True)
    assert y.shape == (2, 0) and mean.shape == rstd.shape == (2, 0)
    layer = layers.GroupNormalization(-1)
    assert layer(np.zeros((2, 3, 0), np.float32)).shape == (2, 3, 0)
    assert [w.shape for w in layer.weights] == [(0,), (0,)]
