"""Flatten, Activation, Dropout and global average pooling: values, gradients, configs."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, gradcheck
from numba_gn.layers import (
    Activation,
    Dropout,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
)
from numba_gn.layers.activations import FastSilu


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def test_flatten(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(Flatten(dtype="float64")(x).numpy(), x.reshape(2, -1))
    gradcheck(lambda t: Flatten(dtype="float64")(t), [x[:, :2, :2]])
    assert Flatten().compute_output_shape((None, 3, 4, 5)) == (None, 60)
    first = Flatten(data_format="channels_first", dtype="float64")(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(first.numpy(), x.reshape(2, -1))  # channels moved last


@pytest.mark.parametrize("cls,shape,axes", [
    (GlobalAveragePooling2D, (2, 3, 4, 5), (1, 2)),
    (GlobalAveragePooling1D, (2, 6, 5), (1,)),
])
def test_global_average_pooling(cls, shape, axes, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(cls(dtype="float64")(x).numpy(), x.mean(axis=axes), rtol=1e-12)
    kept = cls(keepdims=True, dtype="float64")(x).numpy()
    np.testing.assert_allclose(kept, x.mean(axis=axes, keepdims=True), rtol=1e-12)
    gradcheck(lambda t: cls(dtype="float64")(t), [x])
    gradcheck(lambda t: cls(keepdims=True, dtype="float64")(t), [x])
    first = cls(data_format="channels_first", dtype="float64")
    xf = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # gradcheck needs C order (see report)
    np.testing.assert_allclose(first(xf).numpy(), x.mean(axis=axes), rtol=1e-12)
    gradcheck(lambda t: first(t), [xf])


def test_pooling_matches_keras(keras, rng):
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    ref = keras.ops.convert_to_numpy(keras.layers.GlobalAveragePooling2D()(x))
    np.testing.assert_allclose(GlobalAveragePooling2D()(x).numpy(), ref, rtol=1e-6)
    assert GlobalAveragePooling2D().get_config().keys() == (
        keras.layers.GlobalAveragePooling2D().get_config().keys()
    )


@pytest.mark.parametrize("name", ["relu", "silu", "swish", "gelu", "tanh", "sigmoid", "softmax",
                                  "linear"])
def test_activation_values_and_gradients(name, keras, rng):
    x = rng.standard_normal((3, 5)) * 3
    ours = Activation(name, dtype="float64")
    ref = keras.ops.convert_to_numpy(keras.layers.Activation(name, dtype="float64")(x))
    np.testing.assert_allclose(ours(x).numpy(), ref, rtol=1e-6, atol=1e-7)
    gradcheck(lambda t: ours(t), [x + 0.01])  # away from relu's kink at 0
    assert Activation.from_config(ours.get_config()).get_config() == ours.get_config()


def test_fast_silu_is_stable_and_exact(rng):
    x = np.array([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = FastSilu.apply(Tensor(x)).numpy()
    expected = x / (1 + np.exp(-x.astype(np.float64).clip(-700, 700)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-30)
    gradcheck(FastSilu.apply, [rng.standard_normal(7) * 4])


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        Activation("nope")


# -- Dropout ---------------------------------------------------------------------------------------


def test_dropout_inactive_unless_training(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    layer = Dropout(0.5, seed=1)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)


def test_dropout_inverted_and_seeded():
    x = np.ones((200, 50), np.float32)
    y = Dropout(0.3, seed=7)(x, training=True).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # survivors are rescaled
    assert abs(kept.mean() - 0.7) < 0.02
    again = Dropout(0.3, seed=7)(x, training=True).numpy()
    np.testing.assert_array_equal(y, again)  # same seed, same masks
    layer = Dropout(0.3, seed=7)
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.array_equal(first, second)  # a new mask per call
    assert Dropout(1.0)(x, training=True).numpy().sum() == 0
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True).numpy(), x)


def test_dropout_gradient_with_a_fixed_mask(rng):
    x = rng.standard_normal((3, 6))
    # A fresh layer with the same seed per call: every evaluation uses the same mask.
    gradcheck(lambda t: Dropout(0.4, seed=3, dtype="float64")(t, training=True), [x])
    t = Tensor(x)
    with GradientTape() as tape:
        tape.watch(t)
        y = Dropout(0.4, seed=3, dtype="float64")(t, training=True)
    g = tape.gradient(y, t)
    np.testing.assert_allclose(g, np.where(y.numpy() != 0, 1 / 0.6, 0.0))


def test_dropout_noise_shape(rng):
    x = np.ones((4, 5, 6), np.float32)
    y = Dropout(0.5, noise_shape=(None, 1, 6), seed=0)(x, training=True).numpy()
    assert (y == y[:, :1, :]).all()  # one mask broadcast over axis 1


def test_dropout_config_and_validation(keras):
    cfg = Dropout(0.2, seed=4).get_config()
    assert cfg.keys() == keras.layers.Dropout(0.2, seed=4).get_config().keys()
    assert Dropout.from_config(cfg).get_config() == cfg
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.5)
