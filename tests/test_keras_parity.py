"""``group_norm`` against ``keras.layers.GroupNormalization`` (Keras 3, numpy backend) and
against the expected numbers of Keras's own test file (Keras 3.15.1's group_normalization_test.py).

conftest.py sets ``KERAS_BACKEND=numpy`` before anything imports Keras. The Keras-file numbers
are plain constants, so those tests run even where Keras (or the jax that its numpy backend
imports) is not installed; only the layer comparisons are skipped then.
"""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import group_norm


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _keras_layer(keras, shape, groups, axis, gamma=None, beta=None, **kwargs):
    layer = keras.layers.GroupNormalization(groups=groups, axis=axis, **kwargs)
    layer.build(shape)
    if gamma is not None:
        layer.set_weights([gamma, beta])
    return layer


def _keras_forward(keras, x, groups, axis, gamma=None, beta=None):
    layer = _keras_layer(keras, x.shape, groups, axis, gamma, beta)
    return np.asarray(keras.ops.convert_to_numpy(layer(x)))


# (shape, axis, groups): ranks 2 to 5, channels last, channels first, a middle axis;
# groups -1 (instance norm) and 1 (layer norm) included.
PARITY_CASES = [
    ((4, 16), -1, 4),
    ((4, 16), 1, 1),
    ((4, 12), -1, -1),
    ((3, 5, 8), -1, 2),
    ((3, 8, 5), 1, 4),
    ((3, 8, 5), 1, -1),
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
    ((2, 32, 8, 8), 1, 32),
    ((2, 8, 8, 64), -1, 32),  # Keras's default groups on 64 channels
]


def _case_id(case):
    shape, axis, groups = case
    return f"{'x'.join(map(str, shape))}-ax{axis}-g{groups}"


@pytest.mark.parametrize("affine", ["default", "random"])
@pytest.mark.parametrize(
    ("shape", "axis", "groups"), PARITY_CASES, ids=[_case_id(c) for c in PARITY_CASES]
)
def test_matches_keras_layer(keras, shape, axis, groups, affine, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    C = shape[axis]
    if affine == "random":
        gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
        beta = rng.standard_normal(C).astype(np.float32)
    else:
        gamma = beta = None
    expected = _keras_forward(keras, x, groups, axis, gamma, beta)
    y = group_norm(x, groups, gamma, beta, axis=axis)
    assert y.shape == expected.shape == shape
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)


def test_matches_keras_layer_with_custom_epsilon(keras, rng):
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    for eps in (1e-5, 0.1):
        layer = _keras_layer(keras, x.shape, 2, -1, epsilon=eps)
        expected = np.asarray(keras.ops.convert_to_numpy(layer(x)))
        np.testing.assert_allclose(group_norm(x, 2, epsilon=eps), expected, rtol=0, atol=1e-5)


def test_matches_keras_layer_float64(keras, rng):
    # Keras computes float64 input in float64 (autocast is off) and returns the policy dtype.
    x = rng.standard_normal((3, 4, 6))
    layer = _keras_layer(keras, x.shape, 3, -1)
    expected = np.asarray(keras.ops.convert_to_numpy(layer(x)), dtype=np.float64)
    np.testing.assert_allclose(group_norm(x, 3), expected, rtol=0, atol=1e-6)


def test_keras_default_groups_and_epsilon_are_ours(keras):
    layer = keras.layers.GroupNormalization()
    assert layer.groups == 32 and layer.axis == -1 and layer.epsilon == 1e-3
    import inspect

    from numba_gn import group_norm as gn

    params = inspect.signature(gn).parameters
    assert params["groups"].default == 32
    assert params["axis"].default == -1
    assert params["epsilon"].default == 1e-3


# ----------------------------------------------------------------------------------------------
# Keras's own test cases (keras/src/layers/normalization/group_normalization_test.py)


def test_keras_groups_instance_norm():
    # Item 6: groups=-1 equals groups=4 on 4 channels, no scale/center, float64, default 1e-6.
    x = np.array([[[-1.0, 1.0, 0.0, 2.0], [1.0, 3.0, -4.0, -2.0]]])
    np.testing.assert_allclose(group_norm(x, -1), group_norm(x, 4), rtol=1e-6, atol=1e-6)


def test_keras_correctness_instance_norm():
    # Item 7: groups=4 on the same input.
    x = np.array([[[-1.0, 1.0, 0.0, 2.0], [1.0, 3.0, -4.0, -2.0]]])
    expected = np.array([[[-1.0, -1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]]])
    y = group_norm(x, 4)
    np.testing.assert_allclose(y, expected, atol=1e-3)
    # Exactly: each channel is +-sqrt(v) around its mean, so y = +-sqrt(v / (v + 1e-3)), with
    # v = 1 for channels 0 and 1 and v = 4 for channels 2 and 3.
    v = np.array([1.0, 1.0, 4.0, 4.0])
    np.testing.assert_allclose(y, expected * np.sqrt(v / (v + 1e-3)), rtol=1e-12)


def test_keras_correctness_1d():
    # Item 8.
    x = np.array([[-1.0, -1.0, 1.0, 1.0, 2.0, 2.0, 0.0, -2.0]])
    np.testing.assert_allclose(
        group_norm(x, 1, axis=-1),
        np.array([[-0.898, -0.898, 0.539, 0.539, 1.257, 1.257, -0.180, -1.616]]),
        atol=1e-3,
    )
    np.testing.assert_allclose(
        group_norm(x, 2, axis=1),
        np.array([[-1.0, -1.0, 1.0, 1.0, 0.904, 0.904, -0.301, -1.507]]),
        atol=1e-3,
    )
    # The values Keras 3.15.1 actually returns here.
    np.testing.assert_allclose(
        group_norm(x, 1, axis=-1)[0, [0, 2, 4, 6, 7]],
        [-0.8978, 0.5387, 1.2569, -0.1796, -1.6160],
        atol=1e-4,
    )
    np.testing.assert_allclose(
        group_norm(x, 2, axis=1)[0, [0, 4, 6, 7]], [-0.9995, 0.9044, -0.3015, -1.5073], atol=1e-4
    )


def test_keras_correctness_2d():
    # Item 9.
    x = np.array([[[-1.0, -1.0, 2.0, 2.0], [1.0, 1.0, 0.0, -2.0]]])
    np.testing.assert_allclose(
        group_norm(x, 1),
        np.array([[[-0.898, -0.898, 1.257, 1.257], [0.539, 0.539, -0.180, -1.616]]]),
        atol=1e-3,
    )
    np.testing.assert_allclose(
        group_norm(x, 2, axis=2),
        np.array([[[-1.0, -1.0, 0.904, 0.904], [1.0, 1.0, -0.301, -1.507]]]),
        atol=1e-3,
    )


def test_keras_broadcasting_2d_channels_first():
    # Item 10: float32 arange(16) as (1, 4, 2, 2), groups=2, axis=1, default affine.
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2)
    y = group_norm(x, 2, axis=1)
    per_group = np.array(
        [[[-1.5274, -1.0910], [-0.6546, -0.2182]], [[0.2182, 0.6546], [1.0910, 1.5274]]]
    )
    expected = np.concatenate([per_group, per_group])[None]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=1e-3)
    # (k - 3.5) / sqrt(5.25 + 1e-3) exactly, k the position within the group.
    k = np.tile(np.arange(8.0), 2).reshape(1, 4, 2, 2)
    np.testing.assert_allclose(y, (k - 3.5) / np.sqrt(5.25 + 1e-3), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "groups", "axis"),
    [
        (np.array([[[-1.0, 1.0, 0.0, 2.0], [1.0, 3.0, -4.0, -2.0]]]), 4, -1),
        (np.array([[-1.0, -1.0, 1.0, 1.0, 2.0, 2.0, 0.0, -2.0]]), 1, -1),
        (np.array([[-1.0, -1.0, 1.0, 1.0, 2.0, 2.0, 0.0, -2.0]]), 2, 1),
        (np.array([[[-1.0, -1.0, 2.0, 2.0], [1.0, 1.0, 0.0, -2.0]]]), 1, -1),
        (np.array([[[-1.0, -1.0, 2.0, 2.0], [1.0, 1.0, 0.0, -2.0]]]), 2, 2),
        (np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2), 2, 1),
    ],
)
def test_keras_file_inputs_match_the_keras_layer(keras, x, groups, axis):
    x32 = x.astype(np.float32)
    expected = _keras_forward(keras, x32, groups, axis)
    np.testing.assert_allclose(group_norm(x32, groups, axis=axis), expected, rtol=0, atol=1e-5)
