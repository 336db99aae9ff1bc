"""``numba_gn.layers.GroupNormalization`` against ``keras.layers.GroupNormalization``.

Two parts:

* the test cases of Keras 3.15.1's own `group_normalization_test.py`, run
  on our layer with Keras's expected numbers; they need no Keras;
* comparisons with the Keras layer itself (numpy backend, set by conftest.py): forward values
  over many configurations, configs in both directions, regularization losses, constraints.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from numba_gn.layers import GroupNormalization
from numba_gn.params import constraints, regularizers


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _np(keras, t):
    return np.asarray(keras.ops.convert_to_numpy(t))


# -- Keras's own test cases (group_normalization_test.py), on our layer ------------------------


@pytest.mark.parametrize(
    ("kwargs", "shape", "expected_losses"),
    [
        # test_groupnorm (a): default groups=32, L2(0.01) on both weights
        (
            {"gamma_regularizer": regularizers.L2(0.01), "beta_regularizer": regularizers.L2(0.01)},
            (3, 4, 32),
            2,
        ),
        # test_groupnorm (b): groups=4, UnitNorm on both weights
        (
            {
                "groups": 4,
                "gamma_constraint": constraints.UnitNorm(),
                "beta_constraint": constraints.UnitNorm(),
            },
            (3, 4, 4),
            0,
        ),
    ],
)
def test_keras_groupnorm_run_layer_test(rng, kwargs, shape, expected_losses):
    # What Keras's run_layer_test checks, minus the symbolic/model parts we do not have.
    layer = GroupNormalization(**kwargs)
    assert layer.supports_masking
    config = layer.get_config()
    clone = GroupNormalization.from_config(config)
    assert json.dumps(clone.get_config()) == json.dumps(config)
    assert layer.compute_output_shape(shape) == shape
    y = layer(rng.standard_normal(shape).astype(np.float32))
    assert y.shape == shape
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 0
    assert len(layer.losses) == expected_losses
    mixed = GroupNormalization(**kwargs, dtype="mixed_float16")
    out = mixed(rng.standard_normal(shape).astype(np.float32))
    assert out.dtype == np.float16 and all(w.dtype == np.float32 for w in mixed.weights)


def test_keras_undefined_dim_error():
    with pytest.raises(
        ValueError,
        match="input tensor should have a defined dimension but the layer received an input "
        "with shape",
    ):
        GroupNormalization().build((None, 2, 2, 2, None))  # keras.Input(shape=(2, 2, 2, None))


def test_keras_groups_bigger_than_dim_error():
    with pytest.raises(ValueError, match="cannot be more than the number of channels"):
        GroupNormalization(groups=5)(np.ones((2, 2, 2, 4)))


def test_keras_groups_not_a_multiple_of_dim_error():
    # Keras's regex is "must be a multiple of the number of channels", its reversed wording;
    # ours states the actual rule (a deliberate deviation).
    with pytest.raises(ValueError, match="channels .* must be a multiple of the number of groups"):
        GroupNormalization(groups=3)(np.ones((2, 2, 2, 4)))


@pytest.mark.parametrize("groups", [0, -2, 1.5, "32"])
def test_keras_groups_rejects_invalid_values(groups):
    with pytest.raises(ValueError, match="argument `groups`"):
        GroupNormalization(groups=groups)
    GroupNormalization(groups=-1)


_INSTANCE_INPUT = np.array([[[-1, 1, 0, 2], [1, 3, -4, -2]]], dtype=np.float64)


def test_keras_groups_instance_norm():
    kwargs = {"axis": -1, "scale": False, "center": False}
    y_minus_one = GroupNormalization(groups=-1, **kwargs)(_INSTANCE_INPUT).numpy()
    y_four = GroupNormalization(groups=4, **kwargs)(_INSTANCE_INPUT).numpy()
    np.testing.assert_allclose(y_minus_one, y_four, atol=1e-6, rtol=1e-6)


def test_keras_correctness_instance_norm():
    y = GroupNormalization(groups=4, axis=-1, scale=False, center=False)(_INSTANCE_INPUT).numpy()
    np.testing.assert_allclose(y, [[[-1, -1, 1, 1], [1, 1, -1, -1]]], atol=1e-3)
    # atol=1e-3 cannot tell epsilon 1e-3 from 1e-5; pin Keras's default exactly.
    assert abs(y[0, 0, 0] + 1 / np.sqrt(1.001)) < 1e-12


def test_keras_correctness_1d():
    x = np.array([[-1, -1, 1, 1, 2, 2, 0, -2]], dtype=np.float32)
    y1 = GroupNormalization(groups=1, axis=-1, scale=False, center=False)(x).numpy()
    expected1 = [[-0.898, -0.898, 0.539, 0.539, 1.257, 1.257, -0.180, -1.616]]
    np.testing.assert_allclose(y1, expected1, atol=1e-3)
    y2 = GroupNormalization(groups=2, axis=1, scale=False, center=False)(x).numpy()
    expected2 = [[-1, -1, 1, 1, 0.904, 0.904, -0.301, -1.507]]
    np.testing.assert_allclose(y2, expected2, atol=1e-3)


def test_keras_correctness_2d():
    x = np.array([[[-1, -1, 2, 2], [1, 1, 0, -2]]], dtype=np.float32)
    y1 = GroupNormalization(groups=1, axis=-1, scale=False, center=False)(x).numpy()
    expected1 = [[[-0.898, -0.898, 1.257, 1.257], [0.539, 0.539, -0.180, -1.616]]]
    np.testing.assert_allclose(y1, expected1, atol=1e-3)
    y2 = GroupNormalization(groups=2, axis=2, scale=False, center=False)(x).numpy()
    expected2 = [[[-1, -1, 0.904, 0.904], [1, 1, -0.301, -1.507]]]
    np.testing.assert_allclose(y2, expected2, atol=1e-3)


def test_keras_broadcasting_2d_channels_first():
    x = np.arange(16).reshape((1, 4, 2, 2)).astype(np.float32)
    y = GroupNormalization(groups=2, axis=1)(x).numpy()
    group = [[[-1.5274, -1.0910], [-0.6546, -0.2182]], [[0.2182, 0.6546], [1.0910, 1.5274]]]
    np.testing.assert_allclose(y, np.array([group + group]), atol=1e-3)


def test_keras_large_value_within_autocast_scope():
    layer = GroupNormalization(groups=2)
    layer.build((1, 2, 4))
    layer.gamma.assign(np.full(layer.gamma.shape, 70000.0))
    assert layer.gamma.dtype == np.float32
    np.testing.assert_array_equal(layer.gamma.numpy(), np.full((4,), 70000.0, np.float32))


def test_keras_mixed_precision_large_input_no_nan():
    layer = GroupNormalization(groups=2, dtype="mixed_float16")
    y = layer(np.full((2, 4, 8), 70000.0, np.float32))
    assert not np.any(np.isnan(y.numpy()))


# -- forward parity with the Keras layer ----------------------------------------------------------


# (shape, axis, groups): ranks 2 to 5, channels last/first/middle, groups -1 and 1 included.
PARITY_CASES = [
    ((4, 16), -1, 4),
    ((4, 16), 1, 1),
    ((4, 12), -1, -1),
    ((3, 5, 8), -1, 2),
    ((3, 8, 5), 1, 4),
    ((3, 8, 5), 1, -1),
    ((3, 6, 5), -2, 3),
    ((2, 4, 4, 16), -1, 4),
    ((2, 16, 4, 4), 1, 8),
    ((2, 3, 12, 5), 2, 3),
    ((2, 3, 12, 5), -2, 1),
    ((2, 6, 4, 5), 1, -1),
    ((2, 3, 4, 2, 8), -1, 4),
    ((2, 8, 3, 2, 4), 1, 2),
    ((2, 3, 6, 2, 4), 2, 3),
    ((2, 3, 2, 6, 4), 3, -1),
    ((2, 3, 2, 6, 4), -3, 1),
    ((2, 4, 4, 64), -1, 32),  # Keras's default groups
]
AFFINE = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize(("center", "scale"), AFFINE, ids=lambda v: str(v))
@pytest.mark.parametrize(
    "case", PARITY_CASES, ids=lambda c: f"{c[0]}-axis{c[1]}-g{c[2]}".replace(" ", "")
)
def test_forward_matches_keras(keras, rng, case, center, scale):
    shape, axis, groups = case
    x = rng.standard_normal(shape).astype(np.float32)
    kwargs = {"groups": groups, "axis": axis, "center": center, "scale": scale}
    theirs = keras.layers.GroupNormalization(**kwargs)
    theirs.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in theirs.weights]
    theirs.set_weights(weights)
    ours = GroupNormalization(**kwargs)
    ours.build(shape)
    ours.set_weights(weights)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    y = ours(x).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _np(keras, theirs(x)), atol=1e-5, rtol=1e-5)


def test_all_true_mask_matches_keras(keras, rng):
    # Keras ignores masks; with nothing masked ours must agree with it.
    x = rng.standard_normal((3, 5, 8)).astype(np.float32)
    theirs = keras.layers.GroupNormalization(groups=4)
    ours = GroupNormalization(groups=4)
    y = ours(x, mask=np.ones((3, 5), bool)).numpy()
    np.testing.assert_allclose(y, _np(keras, theirs(x)), atol=1e-5)


def test_dtype_deviations_from_keras_are_only_dtypes(keras, rng):
    # Keras casts outputs to the policy's compute dtype (float32); ours keeps the input dtype.
    layer_k = keras.layers.GroupNormalization(groups=2)
    layer_o = GroupNormalization(groups=2)
    x64 = rng.standard_normal((2, 3, 4))
    y_k, y_o = _np(keras, layer_k(x64)), layer_o(x64).numpy()
    assert (y_k.dtype, y_o.dtype) == (np.float32, np.float64)
    np.testing.assert_allclose(y_o, y_k, atol=1e-6)
    x16 = x64.astype(np.float16)
    y_k, y_o = _np(keras, layer_k(x16)), layer_o(x16).numpy()
    assert (y_k.dtype, y_o.dtype) == (np.float32, np.float16)
    # Keras rounds to float16 before its final cast, so the values agree exactly or by 1 ulp.
    np.testing.assert_allclose(y_o.astype(np.float32), y_k, atol=2e-3, rtol=1e-3)


# -- configs in both directions -------------------------------------------------------------------


def _keras_configs(keras):
    k = keras
    return [
        {},
        {
            "groups": 2,
            "gamma_initializer": k.initializers.Constant(0.7),
            "beta_initializer": k.initializers.RandomUniform(-0.1, 0.2, seed=5),
            "gamma_regularizer": k.regularizers.L1(0.003),
            "beta_regularizer": k.regularizers.L1L2(l1=0.001, l2=0.002),
            "gamma_constraint": k.constraints.MinMaxNorm(0.2, 1.5, rate=0.5, axis=0),
            "beta_constraint": k.constraints.MaxNorm(0.5),
        },
        {
            "groups": -1,
            "axis": 1,
            "epsilon": 1e-5,
            "center": False,
            "gamma_initializer": "glorot_uniform",
            "beta_initializer": k.initializers.TruncatedNormal(0.0, 0.3, seed=1),
            "gamma_constraint": "non_neg",
            "beta_constraint": "unit_norm",
            "gamma_regularizer": "l1l2",
        },
        {
            "gamma_initializer": k.initializers.VarianceScaling(2.0, "fan_avg", "uniform", seed=9),
            "beta_initializer": "he_normal",
            "beta_regularizer": k.regularizers.L2(0.2),
            "dtype": "mixed_float16",
            "trainable": False,
            "name": "custom_gn",
        },
    ]


@pytest.mark.parametrize("index", range(4))
def test_from_keras_config_and_back(keras, index):
    theirs = keras.layers.GroupNormalization(**_keras_configs(keras)[index])
    config = theirs.get_config()
    ours = GroupNormalization.from_config(config)
    assert json.dumps(ours.get_config()) == json.dumps(config)
    again = keras.layers.GroupNormalization.from_config(ours.get_config())
    assert json.dumps(again.get_config()) == json.dumps(config)


def test_keras_reads_our_config(keras):
    ours = GroupNormalization(
        groups=-1,
        axis=1,
        epsilon=1e-5,
        scale=False,
        beta_regularizer="l2",
        gamma_constraint=constraints.MinMaxNorm(0.1, 2.0),
        dtype="float64",
    )
    ours.build((2, 3, 4))  # building does not rewrite groups=-1 (Keras's layer would)
    config = ours.get_config()
    theirs = keras.layers.GroupNormalization.from_config(config)
    assert json.dumps(theirs.get_config()) == json.dumps(config)
    theirs.build((2, 3, 4))
    assert theirs.get_config()["groups"] == 3 and ours.get_config()["groups"] == -1


# -- regularization losses and constraints --------------------------------------------------------


@pytest.mark.parametrize("index", [1, 2, 3])
def test_regularization_losses_equal_keras(keras, rng, index):
    kwargs = {**_keras_configs(keras)[index], "trainable": True}
    theirs = keras.layers.GroupNormalization(**kwargs)
    shape = (2, 6, 64)  # enough channels for the default 32 groups
    theirs.build(shape)
    ours = GroupNormalization.from_config(theirs.get_config())
    ours.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in theirs.weights]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    want = [float(_np(keras, t)) for t in theirs.losses]
    got = [float(t.numpy()) for t in ours.losses]
    assert len(want) == len(got) > 0
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("index", [1, 2])
def test_constraints_equal_keras(keras, rng, index):
    theirs = keras.layers.GroupNormalization(**_keras_configs(keras)[index])
    ours = GroupNormalization.from_config(theirs.get_config())
    for name in ("gamma_constraint", "beta_constraint"):
        w = (3 * rng.standard_normal(4)).astype(np.float32)
        want = _np(keras, getattr(theirs, name)(w))
        got = getattr(ours, name)(w)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
