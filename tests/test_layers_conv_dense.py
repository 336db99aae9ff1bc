"""Dense, Conv1D and Conv2D: gradients (finite differences, float64), Keras parity, configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from numba_gn import gradcheck
from numba_gn.autograd.ops_conv import conv, conv_padding
from numba_gn.layers import Conv1D, Conv2D, Dense


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _built(layer, shape, rng):
    """Build ``layer`` and give it random weights (bias too, so it is exercised)."""
    layer.build(shape)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.weights])
    return layer


# -- gradients -------------------------------------------------------------------------------------


def test_dense_gradients(rng):
    layer = _built(Dense(3, dtype="float64"), (4, 5), rng)
    x = rng.standard_normal((4, 5))
    gradcheck(lambda x, k, b: _with(layer, k, b)(x), [x, layer.kernel.data, layer.bias.data])


def test_dense_gradients_rank3_with_activation(rng):
    layer = _built(Dense(3, activation="tanh", dtype="float64"), (2, 3, 4), rng)
    gradcheck(lambda x: layer(x), [rng.standard_normal((2, 3, 4))])


def _with(layer, kernel, bias):
    """``layer`` computing with the given kernel/bias Tensors (so gradcheck perturbs them)."""

    def f(x):
        saved = layer.kernel, layer.bias
        layer.kernel, layer.bias = kernel, bias
        try:
            return layer.call(x)
        finally:
            layer.kernel, layer.bias = saved

    return f


CONV2D_CASES = [
    # kernel, strides, padding, dilation, input (N, H, W, C)
    ((3, 3), (1, 1), "same", (1, 1), (2, 5, 5, 2)),
    ((3, 3), (1, 1), "valid", (1, 1), (2, 5, 5, 2)),
    ((3, 3), (2, 2), "same", (1, 1), (2, 6, 5, 2)),  # even/odd sizes: asymmetric "same" pads
    ((3, 2), (2, 1), "valid", (1, 1), (1, 7, 6, 3)),
    ((2, 2), (1, 1), "same", (2, 2), (1, 6, 6, 2)),  # dilation
    ((1, 1), (1, 1), "valid", (1, 1), (2, 3, 3, 4)),  # 1x1: no im2col copy
    ((1, 1), (2, 2), "same", (1, 1), (2, 5, 5, 2)),
]


@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
def test_conv2d_gradients(case, rng):
    k, s, p, d, shape = case
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((*k, shape[-1], 3))
    bias = rng.standard_normal(3)
    gradcheck(lambda x, w, b: conv(x, w, b, s, p, d), [x, kernel, bias])


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv1d_gradients(padding, strides, rng):
    x = rng.standard_normal((2, 7, 3))
    kernel = rng.standard_normal((3, 3, 2))
    gradcheck(lambda x, w: conv(x, w, None, strides, padding), [x, kernel])


def test_conv_layers_gradients_through_the_layer(rng):
    c2 = _built(Conv2D(2, 3, strides=2, padding="same", activation="relu", dtype="float64"),
                (2, 5, 5, 2), rng)
    gradcheck(lambda x: c2(x), [rng.standard_normal((2, 5, 5, 2))])
    c1 = _built(Conv1D(2, 3, padding="causal", dtype="float64"), (2, 6, 2), rng)
    gradcheck(lambda x: c1(x), [rng.standard_normal((2, 6, 2))])


def test_conv_regularizer_in_the_loss_is_differentiated(rng):
    from numba_gn import GradientTape

    layer = Conv2D(2, 3, kernel_regularizer="l2", dtype="float64")
    x = rng.standard_normal((1, 4, 4, 1))
    with GradientTape() as tape:
        loss = layer(x).sum() + sum(layer.losses)
    gk, gb = tape.gradient(loss, [layer.kernel, layer.bias])
    with GradientTape() as tape:
        plain = layer(x).sum()
    gk0 = tape.gradient(plain, layer.kernel)
    np.testing.assert_allclose(gk - gk0, 2 * 0.01 * layer.kernel.data, rtol=1e-10)


# -- "same" padding arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_padding_matches_tensorflow_formula(size, kernel, stride):
    before, after, out = conv_padding(size, kernel, stride, 1, "same")
    assert out == -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    assert (before, after) == (total // 2, total - total // 2)


def test_valid_padding_too_small_input_raises():
    with pytest.raises(ValueError, match="zero or negative"):
        conv_padding(2, 3, 1, 1, "valid")
    with pytest.raises(ValueError, match="zero or negative"):
        Conv2D(1, 3).build((1, 2, 2, 1))


# -- Keras parity ----------------------------------------------------------------------------------


def _keras_out(keras, klayer, x):
    return np.asarray(keras.ops.convert_to_numpy(klayer(x)))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=4, kernel_size=3),
        dict(filters=4, kernel_size=3, padding="same"),
        dict(filters=5, kernel_size=(3, 2), strides=2, padding="same"),
        dict(filters=3, kernel_size=3, strides=(2, 1), padding="valid", activation="relu"),
        dict(filters=2, kernel_size=2, dilation_rate=2, padding="same"),
        dict(filters=3, kernel_size=3, padding="same", use_bias=False),
    ],
    ids=str,
)
@pytest.mark.parametrize("shape", [(2, 7, 7, 3), (2, 8, 6, 2)], ids=str)
def test_conv2d_matches_keras(keras, kwargs, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    ours = Conv2D(**kwargs)
    ours.build(shape)
    ref = keras.layers.Conv2D(**kwargs)
    ref.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(weights)
    ref.set_weights(weights)
    np.testing.assert_allclose(ours(x).numpy(), _keras_out(keras, ref, x), rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape((None, *shape[1:])) == ref.compute_output_shape(
        (None, *shape[1:])
    )


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv1d_matches_keras(keras, padding, strides, rng):
    x = rng.standard_normal((3, 9, 2)).astype(np.float32)
    ours, ref = Conv1D(4, 3, strides, padding), keras.layers.Conv1D(4, 3, strides, padding)
    ours.build(x.shape)
    ref.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(weights)
    ref.set_weights(weights)
    np.testing.assert_allclose(ours(x).numpy(), _keras_out(keras, ref, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
def test_dense_matches_keras(keras, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    ours, ref = Dense(4, activation="gelu"), keras.layers.Dense(4, activation="gelu")
    ours.build(shape)
    ref.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(weights)
    ref.set_weights(weights)
    np.testing.assert_allclose(ours(x).numpy(), _keras_out(keras, ref, x), rtol=1e-5, atol=1e-5)


def test_weight_shapes_and_order_match_keras(keras):
    for ours, ref, shape in [
        (Dense(3), keras.layers.Dense(3), (2, 5)),
        (Conv2D(4, (3, 2)), keras.layers.Conv2D(4, (3, 2)), (1, 6, 6, 3)),
        (Conv1D(4, 3), keras.layers.Conv1D(4, 3), (1, 6, 3)),
    ]:
        ours.build(shape)
        ref.build(shape)
        assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in ref.weights]
        assert [w.name for w in ours.weights] == [w.name for w in ref.weights]


# -- configs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (Dense, dict(units=3, activation="relu", kernel_regularizer="l2")),
        (Conv2D, dict(filters=3, kernel_size=3, strides=2, padding="same", activation="silu")),
        (Conv1D, dict(filters=2, kernel_size=5, dilation_rate=2, bias_constraint="non_neg")),
    ],
)
def test_config_round_trips_with_keras(keras, cls, kwargs):
    ours = cls(**kwargs)
    ref = getattr(keras.layers, cls.__name__)(**kwargs)
    rebuilt = cls.from_config(ref.get_config())  # Keras's config read by us
    assert rebuilt.get_config()["activation"] == ref.get_config()["activation"]
    ours_cfg = json.loads(json.dumps(ours.get_config()))  # JSON-able
    back = getattr(keras.layers, cls.__name__).from_config(ours_cfg)  # ours read by Keras
    for key in ("kernel_size", "strides", "padding", "dilation_rate", "units", "filters"):
        if key in ours_cfg:
            assert tuple(np.atleast_1d(back.get_config()[key])) == tuple(
                np.atleast_1d(ours_cfg[key])
            )
    again = json.loads(json.dumps(cls.from_config(ours_cfg).get_config()))
    assert again == ours_cfg


def test_keras_defaults():
    d = Dense(2).get_config()
    assert (d["activation"], d["use_bias"]) == ("linear", True)
    assert d["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert d["bias_initializer"]["class_name"] == "Zeros"
    c = Conv2D(2, 3).get_config()
    assert (c["strides"], c["padding"], c["dilation_rate"], c["groups"]) == (
        (1, 1),
        "valid",
        (1, 1),
        1,
    )
    assert c["data_format"] == "channels_last"
    assert Conv1D(2, 3).get_config()["kernel_size"] == (3,)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="filters"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        Conv2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="dilation_rate"):
        Conv2D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="data_format"):
        Conv2D(2, 3, data_format="channels_middle")
    with pytest.raises(ValueError, match="groups"):
        Conv2D(3, 3, groups=2)  # filters not divisible by groups
    with pytest.raises(ValueError, match="incompatible"):
        layer = Conv2D(2, 3)
        layer(np.zeros((1, 5, 5, 3), np.float32))
        layer(np.zeros((1, 5, 5, 2), np.float32))
