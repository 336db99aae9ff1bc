"""``LayerNormalization`` / ``BatchNormalization`` and their autograd ops (``ops_norm``).

* the ops: gradcheck in float64 over several axes (masked batch statistics and Keras's
  ``rms_scaling`` included), forward values against NumPy, argument errors;
* the layers against Keras 3 (numpy backend): forward values with the same weights in training
  and inference mode, the moving statistics after several training calls, weight names and
  order, configs both ways;
* training: the moving statistics move under ``fit`` and stay put under ``predict`` and
  ``evaluate``, and never reach a gradient tape.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn.autograd import GradientTape, Tensor, gradcheck
from numba_gn.autograd.ops_norm import batch_norm, batch_normalization, layer_norm
from numba_gn.layers import (
    BatchNormalization,
    Dense,
    Input,
    LayerNormalization,
)
from numba_gn.models import Sequential
from numba_gn.params import constraints, initializers, regularizers


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _np(keras, t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def _bshape(ndim, axes, shape):
    return tuple(shape[a] if a in axes else 1 for a in range(ndim))


def _ref_norm(x, axes, gamma=None, beta=None, eps=1e-3):
    """Float64 reference: statistics over ``axes``, parameters of the shape of ``axes``."""
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps), mean, var


# -- the ops: gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), [((4, 3), -1), ((3, 4, 5), 1), ((3, 2, 4), 0),
                                             ((2, 3, 2, 4), -1)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck(rng, shape, axis, affine):
    x = rng.standard_normal(shape) * 2 + 0.5
    c = shape[axis]
    if affine:
        g, b = rng.standard_normal(c), rng.standard_normal(c)
        assert gradcheck(lambda x, g, b: batch_norm(x, g, b, axis=axis), [x, g, b])
    else:
        assert gradcheck(lambda x: batch_norm(x, axis=axis, epsilon=0.1), [x])


@pytest.mark.parametrize(("shape", "axis"), [((4, 5, 3), -1), ((3, 4, 5), 1)])
def test_masked_batch_norm_gradcheck(rng, shape, axis):
    x = rng.standard_normal(shape)
    rest = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    mask = rng.random(rest) > 0.4
    c = shape[axis]
    g, b = rng.standard_normal(c), rng.standard_normal(c)
    assert gradcheck(lambda x, g, b: batch_norm(x, g, b, axis=axis, mask=mask), [x, g, b])


@pytest.mark.parametrize(("shape", "axis"), [((4, 3), -1), ((3, 4, 5), 1), ((2, 3, 4), 0)])
def test_batch_normalization_gradcheck(rng, shape, axis):
    x = rng.standard_normal(shape)
    c = shape[axis]
    mean, var = rng.standard_normal(c), rng.random(c) + 0.5
    off, sc = rng.standard_normal(c), rng.standard_normal(c)
    assert gradcheck(
        lambda x, m, v, o, s: batch_normalization(x, m, v, axis, offset=o, scale=s),
        [x, mean, var, off, sc],
    )
    assert gradcheck(lambda x, m, v: batch_normalization(x, m, v, axis), [x, mean, var])


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((4, 5), -1), ((3, 4, 5), (1, 2)), ((3, 4, 5), [2, 0]), ((2, 3, 4), 1), ((2, 3, 2, 3), -2)],
)
@pytest.mark.parametrize("rms_scaling", [False, True])
def test_layer_norm_gradcheck(rng, shape, axis, rms_scaling):
    x = rng.standard_normal(shape) + 0.3
    axes = sorted(a % len(shape) for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    pshape = tuple(shape[a] for a in axes)
    g = rng.standard_normal(pshape)
    if rms_scaling:
        assert gradcheck(lambda x, g: layer_norm(x, g, axis=axis, rms_scaling=True), [x, g])
    else:
        b = rng.standard_normal(pshape)
        assert gradcheck(lambda x, g, b: layer_norm(x, g, b, axis=axis), [x, g, b])
        assert gradcheck(lambda x: layer_norm(x, axis=axis), [x])


# -- the ops: values ------------------------------------------------------------------------------


def test_batch_norm_values_and_stats(rng):
    x = rng.standard_normal((6, 4, 3)) * 3 + 10
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    y, mean, var = batch_norm(x, g, b, axis=1, epsilon=1e-3, return_stats=True)
    xhat, m, v = _ref_norm(x, (0, 2))
    np.testing.assert_allclose(y.numpy(), xhat * g[:, None] + b[:, None], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean, m.reshape(-1), rtol=1e-13)
    np.testing.assert_allclose(var, v.reshape(-1), rtol=1e-12)
    assert y.dtype == np.float64 and mean.dtype == np.float64


def test_batch_norm_float32_is_accurate_with_a_large_mean(rng):
    # Two-pass statistics: a large offset does not eat the variance's digits.
    x = (rng.standard_normal((64, 3)) + 1e4).astype(np.float32)
    _, _, var = batch_norm(x, return_stats=True)
    exact = x.astype(np.float64).var(axis=0)
    np.testing.assert_allclose(var, exact, rtol=1e-4)
    assert var.dtype == np.float32


def test_masked_batch_norm_values(rng):
    x = rng.standard_normal((3, 5, 2))
    mask = rng.random((3, 5)) > 0.5
    mask[0, 0] = True
    x[~mask] = np.nan  # padding never reaches the statistics
    y, mean, var = batch_norm(x, axis=-1, mask=mask, return_stats=True)
    real = x[mask]  # (count, 2)
    np.testing.assert_allclose(mean, real.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, real.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(y.numpy()[mask], (real - real.mean(0)) / np.sqrt(real.var(0) + 1e-3))
    # Every position is normalised (masked ones too), as Keras does.
    assert np.isnan(y.numpy()[~mask]).all()


def test_masked_batch_norm_everything_masked_gives_zero_stats(rng):
    x = rng.standard_normal((2, 3, 4))
    y, mean, var = batch_norm(x, mask=np.zeros((2, 3), bool), return_stats=True)
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(var, 0.0)
    np.testing.assert_allclose(y.numpy(), x / np.sqrt(1e-3))


def test_batch_normalization_values(rng):
    x = rng.standard_normal((5, 3, 2))
    mean, var = rng.standard_normal(3), rng.random(3) + 0.1
    off, sc = rng.standard_normal(3), rng.standard_normal(3)
    y = batch_normalization(x, mean, var, 1, offset=off, scale=sc, epsilon=0.01)
    b = (1, 3, 1)
    expected = (x - mean.reshape(b)) / np.sqrt(var.reshape(b) + 0.01) * sc.reshape(b)
    np.testing.assert_allclose(y.numpy(), expected + off.reshape(b), rtol=1e-12)


@pytest.mark.parametrize("axis", [-1, (1, 2), [2, 1]])
def test_layer_norm_values(rng, axis):
    x = rng.standard_normal((3, 4, 5)) * 2 - 1
    axes = (2,) if axis == -1 else (1, 2)
    pshape = tuple(x.shape[a] for a in axes)
    g, b = rng.standard_normal(pshape), rng.standard_normal(pshape)
    xhat, _, var = _ref_norm(x, axes)
    bs = _bshape(3, axes, x.shape)
    y = layer_norm(x, g, b, axis=axis)
    np.testing.assert_allclose(y.numpy(), xhat * g.reshape(bs) + b.reshape(bs), rtol=1e-12,
                               atol=1e-13)
    rms = layer_norm(x, g, axis=axis, rms_scaling=True)
    np.testing.assert_allclose(rms.numpy(), x / np.sqrt(var + 1e-3) * g.reshape(bs), rtol=1e-12)


def test_layer_norm_float16_is_computed_in_float32(rng):
    x = (rng.standard_normal((4, 8)) * 100).astype(np.float16)
    y = layer_norm(x, axis=-1)
    assert y.dtype == np.float16
    xhat, _, _ = _ref_norm(x.astype(np.float64), (1,))
    np.testing.assert_allclose(y.numpy().astype(np.float64), xhat, atol=2e-3)


def test_ops_are_exported_from_autograd():
    assert ag.batch_norm is batch_norm
    assert ag.batch_normalization is batch_normalization
    assert ag.layer_norm is layer_norm


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: batch_norm(x, axis=3), ValueError, "out of range"),
        (lambda x: batch_norm(x, axis=1.0), TypeError, "axis"),
        (lambda x: batch_norm(x, np.ones(3)), ValueError, "gamma"),
        (lambda x: batch_norm(x, epsilon=-1.0), ValueError, "epsilon"),
        (lambda x: batch_norm(x, mask=np.ones((2, 3, 4), bool)), ValueError, "one dimension"),
        (lambda x: batch_norm(x, mask=np.ones((2, 5), bool)), ValueError, "mask"),
        (lambda x: batch_norm(x, return_stats=1), TypeError, "return_stats"),
        (lambda x: batch_norm(np.array(["a"])), TypeError, "x"),
        (lambda x: batch_normalization(x, None, np.ones(4), -1), TypeError, "mean"),
        (lambda x: batch_normalization(x, np.ones(4), np.ones(3), -1), ValueError, "variance"),
        (lambda x: layer_norm(x, axis=(1, 1)), ValueError, "repeats"),
        (lambda x: layer_norm(x, axis=(1, 5)), ValueError, "out of range"),
        (lambda x: layer_norm(x, axis="1"), TypeError, "axis"),
        (lambda x: layer_norm(x, np.ones((3, 4))), ValueError, "gamma"),
        (lambda x: layer_norm(x, None, np.ones(4), rms_scaling=True), ValueError, "beta"),
    ],
)
def test_op_argument_errors(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(rng.standard_normal((2, 3, 4)))


# -- LayerNormalization against Keras -------------------------------------------------------------


_LN_CASES = [
    ({}, (4, 6)),
    ({"axis": [1, 2]}, (3, 4, 5)),
    ({"axis": (1,)}, (3, 4, 5)),
    ({"axis": -2, "epsilon": 0.1}, (2, 5, 3)),
    ({"center": False}, (4, 6)),
    ({"scale": False}, (3, 2, 4)),
    ({"rms_scaling": True}, (4, 6)),
]


def _keras_ln(keras, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.layers.LayerNormalization(**kwargs)


def _ours_ln(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LayerNormalization(**kwargs)


@pytest.mark.parametrize(("kwargs", "shape"), _LN_CASES)
def test_layer_norm_forward_matches_keras(keras, rng, kwargs, shape):
    theirs, ours = _keras_ln(keras, kwargs), _ours_ln(kwargs)
    theirs.build(shape)
    ours.build(shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    values = [rng.standard_normal(tuple(w.shape)).astype(np.float32) for w in theirs.weights]
    theirs.set_weights(values)
    ours.set_weights(values)
    x = rng.standard_normal(shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _np(keras, theirs(x))
    got = ours(x).numpy()
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # axis is a sorted list after build; names come from each library's own counters
    assert {**ours.get_config(), "name": None} == {**theirs.get_config(), "name": None}


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "float64"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_layer_norm_dtypes_match_keras(keras, rng, policy, dtype):
    theirs = keras.layers.LayerNormalization(dtype=policy)
    ours = LayerNormalization(dtype=policy)
    x = (rng.standard_normal((3, 8)) * 4).astype(dtype)
    expected = _np(keras, theirs(x))
    got = ours(x).numpy()
    assert got.dtype == expected.dtype
    tol = 2e-3 if np.float16 in (got.dtype, np.dtype(dtype)) else 1e-5
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), atol=tol)
    assert [w.dtype for w in ours.weights] == [np.dtype(w.dtype) for w in theirs.weights]


def test_layer_norm_config_round_trips(keras):
    kwargs = {
        "axis": (1, 2),
        "epsilon": 0.01,
        "center": False,
        "gamma_initializer": "he_normal",
        "gamma_regularizer": "l2",
        "beta_constraint": "non_neg",
        "name": "ln",
    }
    ours = LayerNormalization(**kwargs)
    theirs = keras.layers.LayerNormalization.from_config(ours.get_config())
    assert theirs.get_config() == ours.get_config()
    assert ours.get_config()["axis"] == [1, 2]
    again = LayerNormalization.from_config(json.loads(json.dumps(theirs.get_config())))
    assert again.get_config() == ours.get_config()
    # rms_scaling travels both ways too (Keras warns on it; so do we).
    with pytest.warns(UserWarning, match="rms_scaling"):
        rms = LayerNormalization(rms_scaling=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.layers.LayerNormalization.from_config(rms.get_config())
    assert theirs.rms_scaling is True
    with pytest.warns(UserWarning):
        assert LayerNormalization.from_config(theirs.get_config()).rms_scaling is True


def test_layer_norm_regularizers_and_constraints(rng):
    ln = LayerNormalization(gamma_regularizer=regularizers.L2(0.5), beta_constraint="non_neg")
    ln.build((2, 3))
    ln.gamma.assign([1.0, 2.0, 3.0])
    assert len(ln.losses) == 1
    np.testing.assert_allclose(ln.losses[0].numpy(), 0.5 * 14.0)
    assert isinstance(ln.beta.constraint, constraints.NonNeg)


def test_layer_norm_gradients_reach_weights_and_input(rng):
    ln = LayerNormalization(axis=(1, 2), dtype="float64")
    x = Tensor(rng.standard_normal((2, 3, 4)))
    ln.build(x.shape)
    ln.set_weights([rng.standard_normal((3, 4)), rng.standard_normal((3, 4))])
    r = rng.standard_normal(x.shape)
    with GradientTape() as tape:
        tape.watch(x)
        loss = ag.sum(ln(x) * r)
    dx, dg, db = tape.gradient(loss, [x, ln.gamma, ln.beta])
    xhat, _, _ = _ref_norm(x.numpy(), (1, 2))
    np.testing.assert_allclose(db, r.sum(0))
    np.testing.assert_allclose(dg, (r * xhat).sum(0))
    assert gradcheck(lambda x: layer_norm(x, ln.gamma.numpy(), ln.beta.numpy(), axis=(1, 2)),
                     [x.numpy()])
    assert dx.shape == x.shape


# -- BatchNormalization against Keras -------------------------------------------------------------


_BN_CASES = [
    ({}, (6, 4)),
    ({"axis": 1, "momentum": 0.9}, (4, 3, 5)),
    ({"center": False, "epsilon": 0.01}, (5, 2, 3)),
    ({"scale": False, "momentum": 0.5}, (4, 2, 2, 3)),
    ({"renorm": True, "momentum": 0.8, "renorm_momentum": 0.7}, (6, 3)),
    (
        {"renorm": True, "renorm_clipping": {"rmax": 1.2, "rmin": 0.9, "dmax": 0.1},
         "momentum": 0.8},
        (6, 2, 3),
    ),
]


def _bn_pair(keras, rng, kwargs, shape):
    theirs = keras.layers.BatchNormalization(**kwargs)
    ours = BatchNormalization(**kwargs)
    theirs.build(shape)
    ours.build(shape)
    values = []
    for w in theirs.weights:
        v = rng.standard_normal(tuple(w.shape)).astype(np.float32)
        if "variance" in w.name or "stddev" in w.name:
            v = np.abs(v) + 0.5
        values.append(v)
    theirs.set_weights(values)
    ours.set_weights(values)
    return theirs, ours


@pytest.mark.parametrize(("kwargs", "shape"), _BN_CASES)
def test_batch_norm_weights_match_keras(keras, rng, kwargs, shape):
    theirs = keras.layers.BatchNormalization(**kwargs)
    ours = BatchNormalization(**kwargs)
    theirs.build(shape)
    ours.build(shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [w.trainable for w in ours.weights] == [w.trainable for w in theirs.weights]
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the initial values too (moving_stddev = 1)
    assert [w.name for w in ours.non_trainable_weights] == [
        w.name for w in theirs.non_trainable_weights
    ]


@pytest.mark.parametrize(("kwargs", "shape"), _BN_CASES)
def test_batch_norm_training_and_moving_statistics_match_keras(keras, rng, kwargs, shape):
    theirs, ours = _bn_pair(keras, rng, kwargs, shape)
    start = ours.get_weights()
    for step in range(4):
        x = (rng.standard_normal(shape) * (1 + step) + step).astype(np.float32)
        expected = _np(keras, theirs(x, training=True))
        got = ours(x, training=True).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, _np(keras, b), rtol=1e-5, atol=1e-6)
    # Every statistic moved away from where it started; gamma and beta did not.
    n_trainable = len(ours.trainable_weights)
    for i, (a, b) in enumerate(zip(start, ours.get_weights(), strict=True)):
        assert np.array_equal(a, b) == (i < n_trainable)
    x = rng.standard_normal(shape).astype(np.float32)
    for training in (False, None):
        before = ours.get_weights()
        np.testing.assert_allclose(
            ours(x, training=training).numpy(),
            _np(keras, theirs(x, training=training)),
            rtol=1e-5,
            atol=1e-5,
        )
        for a, b in zip(before, ours.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)  # inference moves nothing


def test_batch_norm_inference_formula(rng):
    bn = BatchNormalization(epsilon=0.01)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    bn.build(x.shape)
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    mm, mv = rng.standard_normal(3), rng.random(3) + 0.5
    bn.set_weights([g, b, mm, mv])
    expected = (x - mm) / np.sqrt(mv + 0.01) * g + b
    np.testing.assert_allclose(bn(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_moving_update_formula(rng):
    bn = BatchNormalization(momentum=0.75, axis=1)
    x = rng.standard_normal((8, 3, 4)) * 2 + 1
    bn.build(x.shape)
    bn(x.astype(np.float32), training=True)
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2))  # biased
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.25 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.75 + 0.25 * var, rtol=1e-5)


def test_masked_batch_norm_matches_keras(keras, rng):
    theirs, ours = _bn_pair(keras, rng, {"momentum": 0.8}, (4, 5, 3))
    for _ in range(3):
        x = rng.standard_normal((4, 5, 3)).astype(np.float32)
        mask = rng.random((4, 5)) > 0.3
        np.testing.assert_allclose(
            ours(x, training=True, mask=mask).numpy(),
            _np(keras, theirs(x, training=True, mask=mask)),
            rtol=1e-5,
            atol=1e-5,
        )
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, _np(keras, b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one dimension less"):
        ours(x, training=True, mask=np.ones((4,), bool))


def test_frozen_batch_norm_runs_in_inference_mode(keras, rng):
    theirs, ours = _bn_pair(keras, rng, {}, (6, 3))
    theirs.trainable = False
    ours.trainable = False
    before = ours.get_weights()
    x = rng.standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_allclose(
        ours(x, training=True).numpy(), _np(keras, theirs(x, training=True)), rtol=1e-5,
        atol=1e-5,
    )
    for a, b in zip(before, ours.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours.trainable_weights == []


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "float64"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
def test_batch_norm_dtypes_match_keras(keras, rng, policy, dtype):
    theirs = keras.layers.BatchNormalization(dtype=policy, momentum=0.5)
    ours = BatchNormalization(dtype=policy, momentum=0.5)
    x = (rng.standard_normal((6, 4)) * 3).astype(dtype)
    expected = _np(keras, theirs(x, training=True))
    got = ours(x, training=True).numpy()
    assert got.dtype == expected.dtype
    tol = 2e-3 if np.float16 in (got.dtype, np.dtype(dtype)) else 1e-5
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), atol=tol)
    for a, b in zip(ours.get_weights()[2:], theirs.get_weights()[2:], strict=True):
        np.testing.assert_allclose(a, _np(keras, b).astype(a.dtype), rtol=tol, atol=tol)


def test_batch_norm_config_round_trips(keras):
    kwargs = {
        "axis": 1,
        "momentum": 0.9,
        "epsilon": 0.01,
        "scale": False,
        "moving_variance_initializer": "random_uniform",
        "beta_regularizer": "l2",
        "gamma_constraint": "unit_norm",
        "renorm": True,
        "renorm_clipping": {"rmax": 2.0},
        "renorm_momentum": 0.5,
        "name": "bn",
    }
    ours = BatchNormalization(**kwargs)
    config = ours.get_config()
    theirs = keras.layers.BatchNormalization.from_config(config)
    assert theirs.get_config() == config
    again = BatchNormalization.from_config(json.loads(json.dumps(theirs.get_config())))
    assert again.get_config() == config
    # Keras's defaults, both ways.
    default = keras.layers.BatchNormalization(name="bn2")
    assert BatchNormalization.from_config(default.get_config()).get_config() == (
        default.get_config()
    )
    assert BatchNormalization(renorm=True).get_config()["renorm_clipping"] == {}


def test_batch_norm_in_a_keras_model_config(keras):
    model = Sequential([Input((4,)), BatchNormalization(momentum=0.9), Dense(2)])
    clone = Sequential.from_config(model.get_config())
    assert type(clone.layers[0]) is BatchNormalization
    assert clone.layers[0].momentum == 0.9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"axis": (1, 2)}, TypeError, "axis"),
        ({"axis": True}, TypeError, "axis"),
        ({"momentum": 1.5}, ValueError, "momentum"),
        ({"momentum": "0.9"}, TypeError, "momentum"),
        ({"epsilon": -1e-3}, ValueError, "epsilon"),
        ({"center": 1}, TypeError, "center"),
        ({"scale": "yes"}, TypeError, "scale"),
        ({"synchronized": True}, ValueError, "TensorFlow"),
        ({"renorm": True, "renorm_clipping": {"rmax": 1.0, "bad": 1.0}}, ValueError, "invalid"),
        ({"renorm": True, "renorm_clipping": {"rmax": 1.0, "rmin": 2.0}}, ValueError, "rmax"),
        ({"renorm": True, "renorm_clipping": {"dmax": -1.0}}, ValueError, "dmax"),
        ({"renorm_clipping": [1.0]}, TypeError, "renorm_clipping"),
        ({"renorm_momentum": -0.1}, ValueError, "renorm_momentum"),
        ({"gamma_initializer": "no_such_initializer"}, ValueError, "no_such_initializer"),
        ({"unknown": 1}, TypeError, "unknown"),
    ],
)
def test_batch_norm_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNormalization(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"axis": "x"}, TypeError, "axis"),
        ({"axis": []}, TypeError, "axis"),
        ({"epsilon": float("nan")}, ValueError, "epsilon"),
        ({"center": None}, TypeError, "center"),
        ({"rms_scaling": 1}, TypeError, "rms_scaling"),
        ({"beta_regularizer": "nope"}, ValueError, "nope"),
    ],
)
def test_layer_norm_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        LayerNormalization(**kwargs)


@pytest.mark.parametrize(
    ("layer", "bad", "undefined", "short"),
    [
        (lambda: BatchNormalization(axis=3), (2, 3), (2, 3, 4, None), (2, 3)),
        (lambda: LayerNormalization(axis=[1, -1]), (2, 3), (2, 3, None), (2,)),
    ],
)
def test_bad_build_changes_nothing(layer, bad, undefined, short):
    lay = layer()
    config = lay.get_config()
    with pytest.raises(ValueError, match="out of bounds|repeats"):
        lay.build(bad)
    assert not lay.built and lay.weights == [] and lay.get_config() == config
    with pytest.raises(ValueError, match="defined dimension"):
        lay.build(undefined)
    assert not lay.built and lay.weights == [] and lay.get_config() == config
    with pytest.raises(ValueError, match="out of bounds"):
        lay.compute_output_shape(short)


def test_built_layers_check_their_input(rng):
    bn = BatchNormalization()
    bn(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="incompatible"):
        bn(np.zeros((2, 4), np.float32))
    ln = LayerNormalization(axis=1)
    ln(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="incompatible"):
        ln(np.zeros((2, 5, 4), np.float32))


# -- training -------------------------------------------------------------------------------------


def test_moving_statistics_stay_off_the_tape(rng):
    bn = BatchNormalization(momentum=0.5)
    x = Tensor(rng.standard_normal((8, 3)).astype(np.float32))
    bn.build(x.shape)
    with GradientTape(persistent=True) as tape:
        tape.watch(bn.moving_mean)
        tape.watch(bn.moving_variance)
        y = bn(x, training=True)
        loss = ag.sum(y * y)
    grads = tape.gradient(loss, [bn.moving_mean, bn.moving_variance])
    assert grads == [None, None]
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)  # ... yet they were updated
    # Under a tape in inference mode they are differentiable inputs, as in Keras's op.
    with GradientTape() as tape:
        tape.watch(bn.moving_mean)
        loss = ag.sum(bn(x, training=False))
    (dmean,) = tape.gradient(loss, [bn.moving_mean])
    rstd = 1 / np.sqrt(bn.moving_variance.numpy() + 1e-3)
    np.testing.assert_allclose(dmean, -8 * rstd, rtol=1e-5)


def test_empty_batch_leaves_the_statistics(rng):
    bn = BatchNormalization()
    bn.build((None, 3))
    y = bn(np.zeros((0, 3), np.float32), training=True)
    assert y.shape == (0, 3)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)


def test_fit_moves_the_statistics_and_predict_does_not(rng):
    x = (rng.standard_normal((64, 4)) * 2 + 3).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = Sequential([
        Input((4,)),
        Dense(8, kernel_initializer=initializers.GlorotUniform(seed=1)),
        BatchNormalization(momentum=0.8),
        LayerNormalization(),
        Dense(1, kernel_initializer=initializers.GlorotUniform(seed=2)),
    ])
    model.compile(optimizer="sgd", loss="mse")
    bn = model.layers[1]
    assert [w.name for w in model.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert len(model.trainable_weights) == 8
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    moved = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    assert not np.allclose(moved[0], 0.0) and not np.allclose(moved[1], 1.0)
    # One more step by hand: the update uses the batch statistics of the layer's input,
    # computed before the optimizer moves the first layer.
    h = model.layers[0](x[:16]).numpy().astype(np.float64)
    model.train_step(x[:16], y[:16])
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.8 * moved[0] + 0.2 * h.mean(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.8 * moved[1] + 0.2 * h.var(0),
                               rtol=1e-5, atol=1e-6)
    moved = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    pred = model.predict(x, batch_size=16)
    model.evaluate(x, y, batch_size=16, verbose=0)
    for before, w in zip(moved, [bn.moving_mean, bn.moving_variance], strict=True):
        np.testing.assert_array_equal(w.numpy(), before)
    # predict uses the moving statistics (inference mode).
    np.testing.assert_allclose(model(x, training=False).numpy(), pred, rtol=1e-5, atol=1e-5)
    # A frozen BN keeps its statistics even under fit.
    bn.trainable = False
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for before, w in zip(moved, [bn.moving_mean, bn.moving_variance], strict=True):
        np.testing.assert_array_equal(w.numpy(), before)


def test_copies_have_their_own_lock_and_weights(rng):
    bn = BatchNormalization()
    bn.build((None, 3))
    clone = copy.deepcopy(bn)
    assert clone._stats_lock is not bn._stats_lock
    clone(rng.standard_normal((4, 3)).astype(np.float32), training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
    assert not np.allclose(clone.moving_mean.numpy(), 0.0)


def test_masked_group_norm_moved_to_autograd():
    from numba_gn.autograd import ops_masked

    assert callable(ops_masked.masked_group_norm)
    with pytest.raises(ImportError):
        __import__("numba_gn.layers._masked_op")
