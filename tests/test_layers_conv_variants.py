"""Grouped, dilated, channels-first, transposed and depthwise convolutions.

Gradients (finite differences, float64) of every op path, Keras forward parity with the same
weights, Keras's output-length arithmetic, config round trips both ways, argument errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, gradcheck
from numba_gn.autograd import conv, conv_transpose, depthwise_conv
from numba_gn.autograd.ops_conv import deconv_output_length, deconv_padding
from numba_gn.layers import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _built(layer, shape, rng):
    """Build ``layer`` and give it random weights (bias too, so it is exercised)."""
    layer.build(shape)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.weights])
    return layer


def _cf(shape):
    """A channels-last shape with the channels moved to axis 1."""
    return (shape[0], shape[-1], *shape[1:-1])


# -- gradients of the ops --------------------------------------------------------------------------

GROUPED_CASES = [
    # kernel, strides, padding, dilation, input (N, H, W, C), groups, filters, data_format
    ((3, 3), (1, 1), "same", (1, 1), (2, 4, 5, 4), 2, 4, "channels_last"),
    ((3, 2), (2, 1), "valid", (1, 1), (1, 6, 5, 6), 3, 3, "channels_last"),
    ((2, 2), (1, 1), "same", (2, 2), (1, 5, 5, 4), 2, 2, "channels_last"),  # groups + dilation
    ((3, 3), (2, 2), "same", (1, 1), (2, 5, 4, 2), 1, 3, "channels_first"),
    ((2, 3), (1, 1), "valid", (2, 1), (1, 6, 5, 3), 1, 2, "channels_first"),  # dilation
    ((3, 3), (1, 1), "same", (1, 2), (1, 4, 6, 4), 4, 4, "channels_first"),  # all three
    ((1, 1), (1, 1), "valid", (1, 1), (2, 3, 3, 4), 2, 6, "channels_first"),  # 1x1: no im2col
]


@pytest.mark.parametrize("case", GROUPED_CASES, ids=str)
def test_conv2d_grouped_dilated_channels_first_gradients(case, rng):
    k, s, p, d, shape, groups, filters, fmt = case
    x = rng.standard_normal(shape if fmt == "channels_last" else _cf(shape))
    kernel = rng.standard_normal((*k, shape[-1] // groups, filters))
    bias = rng.standard_normal(filters)
    gradcheck(lambda x, w, b: conv(x, w, b, s, p, d, fmt), [x, kernel, bias])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding,dilation", [("causal", 2), ("same", 1), ("valid", 3)])
def test_conv1d_grouped_gradients(fmt, padding, dilation, rng):
    x = rng.standard_normal((2, 9, 4) if fmt == "channels_last" else (2, 4, 9))
    kernel = rng.standard_normal((3, 2, 4))
    gradcheck(lambda x, w, b: conv(x, w, b, 1, padding, dilation, fmt),
              [x, kernel, rng.standard_normal(4)])


TRANSPOSE_CASES = [
    # kernel, strides, padding, output_padding, dilation, input (N, H, W, C)
    ((3, 3), (1, 1), "valid", None, (1, 1), (2, 3, 4, 2)),
    ((3, 3), (2, 2), "same", None, (1, 1), (2, 3, 3, 2)),
    ((3, 3), (2, 2), "same", (1, 0), (1, 1), (1, 3, 4, 2)),
    ((3, 2), (2, 3), "valid", (1, 2), (1, 1), (1, 3, 2, 2)),
    ((2, 2), (3, 3), "valid", None, (1, 1), (1, 2, 3, 2)),  # stride > kernel: zero columns
    ((4, 4), (2, 2), "same", None, (1, 1), (1, 3, 3, 2)),  # even kernel
    ((2, 3), (1, 1), "same", (0, 0), (2, 1), (1, 4, 4, 2)),  # dilation
    ((1, 1), (1, 1), "valid", None, (1, 1), (2, 3, 3, 3)),  # 1x1: no col2im
]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_conv_transpose_gradients(case, fmt, rng):
    k, s, p, op, d, shape = case
    x = rng.standard_normal(shape if fmt == "channels_last" else _cf(shape))
    kernel = rng.standard_normal((*k, 3, shape[-1]))
    bias = rng.standard_normal(3)
    gradcheck(lambda x, w, b: conv_transpose(x, w, b, s, p, op, d, fmt), [x, kernel, bias])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv_transpose_1d_gradients(fmt, rng):
    x = rng.standard_normal((2, 4, 3) if fmt == "channels_last" else (2, 3, 4))
    kernel = rng.standard_normal((3, 2, 3))
    gradcheck(lambda x, w: conv_transpose(x, w, None, 2, "same", 1, 1, fmt), [x, kernel])


DEPTHWISE_CASES = [
    # kernel, strides, padding, dilation, input (N, H, W, C), depth_multiplier
    ((3, 3), (1, 1), "same", (1, 1), (2, 4, 4, 3), 1),
    ((3, 3), (2, 2), "valid", (1, 1), (1, 5, 6, 2), 2),
    ((2, 3), (1, 1), "same", (2, 2), (1, 5, 5, 2), 3),
    ((3, 3), (2, 2), "same", (2, 1), (1, 6, 5, 2), 2),  # strides and dilation together
]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=str)
def test_depthwise_conv_gradients(case, fmt, rng):
    k, s, p, d, shape, mult = case
    x = rng.standard_normal(shape if fmt == "channels_last" else _cf(shape))
    kernel = rng.standard_normal((*k, shape[-1], mult))
    bias = rng.standard_normal(shape[-1] * mult)
    gradcheck(lambda x, w, b: depthwise_conv(x, w, b, s, p, d, fmt), [x, kernel, bias])


def test_depthwise_conv_1d_gradients(rng):
    x = rng.standard_normal((2, 7, 3))
    gradcheck(lambda x, w: depthwise_conv(x, w, None, 2, "same"),
              [x, rng.standard_normal((3, 3, 2))])


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


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: Conv2D(4, 3, padding="same", groups=2, data_format="channels_first",
                        activation="tanh", dtype="float64"), (2, 4, 4, 3)),
        (lambda: Conv1D(4, 3, dilation_rate=2, groups=4, padding="causal", dtype="float64"),
         (2, 7, 4)),
        (lambda: Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1,
                                 data_format="channels_first", dtype="float64"), (1, 2, 3, 3)),
        (lambda: DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same",
                                 activation="silu", dtype="float64"), (1, 5, 4, 2)),
    ],
    ids=["Conv2D", "Conv1D", "Conv2DTranspose", "DepthwiseConv2D"],
)
def test_gradients_through_the_layers(make, shape, rng):
    layer = _built(make(), shape, rng)
    x = rng.standard_normal(shape)
    gradcheck(lambda x, k, b: _with(layer, k, b)(x), [x, layer.kernel.data, layer.bias.data])


def test_depthwise_regularizer_is_in_the_loss_and_differentiated(rng):
    layer = DepthwiseConv2D(3, depthwise_regularizer="l2", dtype="float64")
    x = rng.standard_normal((1, 4, 4, 2))
    with GradientTape() as tape:
        loss = layer(x).sum() + sum(layer.losses)
    gk = tape.gradient(loss, layer.kernel)
    with GradientTape() as tape:
        plain = layer(x).sum()
    gk0 = tape.gradient(plain, layer.kernel)
    np.testing.assert_allclose(gk - gk0, 2 * 0.01 * layer.kernel.data, rtol=1e-10)


# -- exact values that need no Keras ---------------------------------------------------------------


def test_grouped_conv_is_independent_convolutions_concatenated(rng):
    x = rng.standard_normal((2, 5, 6, 6))
    kernel = rng.standard_normal((3, 3, 2, 6))
    out = conv(x, kernel, None, 1, "same").numpy()
    parts = [
        conv(x[..., 2 * g : 2 * g + 2], kernel[..., 2 * g : 2 * g + 2], None, 1, "same").numpy()
        for g in range(3)
    ]
    np.testing.assert_allclose(out, np.concatenate(parts, axis=-1), rtol=1e-12, atol=1e-12)


def test_channels_first_is_the_transposed_channels_last(rng):
    x = rng.standard_normal((2, 6, 5, 4))
    kernel = rng.standard_normal((3, 2, 2, 4))
    last = conv(x, kernel, None, (2, 1), "same").numpy()
    first = conv(x.transpose(0, 3, 1, 2), kernel, None, (2, 1), "same", 1, "channels_first")
    np.testing.assert_array_equal(first.numpy(), last.transpose(0, 3, 1, 2))
    assert first.numpy().flags.c_contiguous


def test_conv_transpose_is_the_adjoint_of_conv(rng):
    """<conv(x), y> == <x, conv_transpose(y)> for the same kernel: the defining identity."""
    # Sizes where the windows cover x exactly, so the transposed output has x's shape.
    for s, p in [((2, 2), "valid"), ((1, 1), "same"), ((2, 3), "valid")]:
        x = rng.standard_normal((2, 7, 9, 3))
        kernel = rng.standard_normal((3, 3, 3, 4))
        y = rng.standard_normal(conv(x, kernel, None, s, p).shape)
        # A transposed conv's kernel is (kh, kw, out, in): the conv's (kh, kw, in, out) read
        # with input and output swapped.
        t = conv_transpose(y, kernel, None, s, p).numpy()
        assert t.shape == x.shape
        lhs = float(np.sum(conv(x, kernel, None, s, p).numpy() * y))
        np.testing.assert_allclose(lhs, float(np.sum(x * t)), rtol=1e-10)


def test_depthwise_matches_per_channel_convolutions(rng):
    x = rng.standard_normal((1, 5, 5, 3))
    kernel = rng.standard_normal((3, 3, 3, 2))
    out = depthwise_conv(x, kernel, None, 1, "valid").numpy()
    for c in range(3):
        ref = conv(x[..., c : c + 1], kernel[:, :, c : c + 1, :], None, 1, "valid").numpy()
        np.testing.assert_allclose(out[..., 2 * c : 2 * c + 2], ref, rtol=1e-12, atol=1e-12)


# -- Keras's transposed output lengths -------------------------------------------------------------


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_deconv_output_length_matches_keras(keras, padding, kernel, stride):
    from keras.src.backend.common.backend_utils import (
        _convert_conv_transpose_padding_args_from_keras_to_jax as jax_padding,
    )
    from keras.src.backend.common.backend_utils import compute_conv_transpose_output_shape

    for size in range(1, 6):
        for output_padding in [None, *range(stride)]:
            shape = compute_conv_transpose_output_shape(
                (1, size, 1), (kernel,), 1, (stride,), padding, output_padding
            )
            if shape[1] <= 0:
                with pytest.raises(ValueError, match="zero or negative"):
                    deconv_padding(size, kernel, stride, 1, padding, output_padding)
                continue
            assert deconv_output_length(size, kernel, stride, 1, padding, output_padding) == (
                shape[1]
            )
            left, _ = jax_padding(kernel, stride, 1, padding, output_padding)
            assert deconv_padding(size, kernel, stride, 1, padding, output_padding)[0] == (
                kernel - 1 - left
            )
    assert deconv_output_length(None, kernel, stride, 1, padding) is None


# -- Keras parity ----------------------------------------------------------------------------------


def _parity(keras, ours, ref, x):
    """Same random weights into both layers, then compare outputs and output shapes."""
    ours.build(x.shape)
    ref.build(x.shape)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in ref.weights]
    assert [w.name for w in ours.weights] == [w.name for w in ref.weights]
    rng = np.random.default_rng(7)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(weights)
    ref.set_weights(weights)
    got = ours(x).numpy()
    want = np.asarray(keras.ops.convert_to_numpy(ref(x)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    free = (None, *x.shape[1:])
    assert tuple(ours.compute_output_shape(free)) == tuple(ref.compute_output_shape(free))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=4, kernel_size=3, groups=2),
        dict(filters=6, kernel_size=(3, 2), strides=2, padding="same", groups=3),
        dict(filters=4, kernel_size=3, padding="same", dilation_rate=2, groups=2),
        dict(filters=3, kernel_size=3, data_format="channels_first"),
        dict(filters=4, kernel_size=3, strides=(2, 1), padding="same", groups=2,
             data_format="channels_first", activation="relu"),
        dict(filters=2, kernel_size=2, dilation_rate=(2, 1), padding="valid",
             data_format="channels_first", use_bias=False),
        dict(filters=6, kernel_size=1, groups=6),
    ],
    ids=str,
)
def test_conv2d_variants_match_keras(keras, kwargs, rng):
    shape = (2, 7, 8, 6)
    if kwargs.get("data_format") == "channels_first":
        shape = _cf(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    _parity(keras, Conv2D(**kwargs), keras.layers.Conv2D(**kwargs), x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=4, kernel_size=3, groups=2, padding="causal", dilation_rate=2),
        dict(filters=4, kernel_size=3, strides=2, padding="same", data_format="channels_first"),
        dict(filters=2, kernel_size=2, groups=2, padding="causal", data_format="channels_first"),
    ],
    ids=str,
)
def test_conv1d_variants_match_keras(keras, kwargs, rng):
    shape = (3, 4, 9) if kwargs.get("data_format") == "channels_first" else (3, 9, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    _parity(keras, Conv1D(**kwargs), keras.layers.Conv1D(**kwargs), x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=3, kernel_size=3),
        dict(filters=3, kernel_size=3, strides=2, padding="same"),
        dict(filters=4, kernel_size=3, strides=2, padding="same", output_padding=1),
        dict(filters=2, kernel_size=(3, 2), strides=(2, 3), output_padding=(1, 2)),
        dict(filters=2, kernel_size=2, strides=3),  # stride > kernel
        dict(filters=3, kernel_size=4, strides=2, padding="same", activation="relu"),
        dict(filters=2, kernel_size=3, padding="same", dilation_rate=2),
        dict(filters=2, kernel_size=3, padding="valid", dilation_rate=(1, 2), use_bias=False),
        dict(filters=3, kernel_size=3, strides=2, padding="same", data_format="channels_first"),
        dict(filters=2, kernel_size=2, strides=2, output_padding=(0, 1),
             data_format="channels_first"),
        dict(filters=3, kernel_size=2, strides=1, padding="same", output_padding=0),
    ],
    ids=str,
)
def test_conv2d_transpose_matches_keras(keras, kwargs, rng):
    shape = (2, 5, 4, 3)
    if kwargs.get("data_format") == "channels_first":
        shape = _cf(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    _parity(keras, Conv2DTranspose(**kwargs), keras.layers.Conv2DTranspose(**kwargs), x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, padding="same", depth_multiplier=2),
        dict(kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=3),
        dict(kernel_size=3, strides=2, dilation_rate=2, depth_multiplier=2),
        dict(kernel_size=3, dilation_rate=(2, 1), padding="same", activation="relu"),
        dict(kernel_size=3, padding="same", depth_multiplier=2, data_format="channels_first"),
        dict(kernel_size=2, strides=(1, 2), use_bias=False, data_format="channels_first"),
    ],
    ids=str,
)
def test_depthwise_conv2d_matches_keras(keras, kwargs, rng):
    shape = (2, 7, 8, 3)
    if kwargs.get("data_format") == "channels_first":
        shape = _cf(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    _parity(keras, DepthwiseConv2D(**kwargs), keras.layers.DepthwiseConv2D(**kwargs), x)


def test_positional_arguments_follow_keras(keras):
    """Keras's positional order: DepthwiseConv2D takes depth_multiplier fourth."""
    ours = DepthwiseConv2D(3, 2, "same", 4)
    ref = keras.layers.DepthwiseConv2D(3, 2, "same", 4)
    for key in ("kernel_size", "strides", "padding", "depth_multiplier"):
        assert ours.get_config()[key] == ref.get_config()[key]
    ours = Conv2DTranspose(2, 3, 2, "same", 1)
    ref = keras.layers.Conv2DTranspose(2, 3, 2, "same", 1)
    for key in ("filters", "kernel_size", "strides", "padding", "output_padding"):
        assert ours.get_config()[key] == ref.get_config()[key]


# -- configs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (Conv2D, dict(filters=4, kernel_size=3, groups=2, data_format="channels_first",
                      dilation_rate=2)),
        (Conv1D, dict(filters=6, kernel_size=3, groups=3, padding="causal")),
        (Conv2DTranspose, dict(filters=3, kernel_size=(3, 2), strides=2, padding="same",
                               output_padding=(1, 0), activation="relu",
                               kernel_regularizer="l2", bias_constraint="non_neg")),
        (Conv2DTranspose, dict(filters=2, kernel_size=3, data_format="channels_first")),
        (DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same",
                               depthwise_initializer="he_normal", depthwise_regularizer="l1",
                               depthwise_constraint="non_neg", activation="silu")),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_config_round_trips_with_keras(keras, cls, kwargs):
    ours = cls(**kwargs)
    ref = getattr(keras.layers, cls.__name__)(**kwargs)
    ours_cfg = json.loads(json.dumps(ours.get_config()))  # JSON-able
    ref_cfg = json.loads(json.dumps(ref.get_config()))
    assert set(ours_cfg) == set(ref_cfg)
    rebuilt = json.loads(json.dumps(cls.from_config(ref.get_config()).get_config()))
    back = json.loads(json.dumps(getattr(keras.layers, cls.__name__).from_config(ours_cfg)
                                 .get_config()))
    for cfg in (rebuilt, back):  # Keras's config read by us, ours read by Keras
        for key, value in ref_cfg.items():
            if key != "name":
                assert cfg[key] == value, key
    again = json.loads(json.dumps(cls.from_config(ours_cfg).get_config()))
    assert again == ours_cfg


def test_defaults_match_keras(keras):
    for ours, ref in [
        (Conv2DTranspose(2, 3), keras.layers.Conv2DTranspose(2, 3)),
        (DepthwiseConv2D(3), keras.layers.DepthwiseConv2D(3)),
        (Conv2D(2, 3, data_format=None), keras.layers.Conv2D(2, 3)),
    ]:
        mine = json.loads(json.dumps(ours.get_config()))
        theirs = json.loads(json.dumps(ref.get_config()))
        for key in theirs:
            if key != "name":
                assert mine[key] == theirs[key], key
    assert Conv2DTranspose(2, 3).get_config()["output_padding"] is None
    assert DepthwiseConv2D(3).get_config()["data_format"] == "channels_last"


# -- argument errors -------------------------------------------------------------------------------


def test_group_errors():
    with pytest.raises(ValueError, match="filters must be evenly divisible by the number of gr"):
        Conv2D(3, 3, groups=2)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        Conv2D(4, 3, groups=0)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        Conv1D(4, 3, groups=1.5)
    layer = Conv2D(4, 3, groups=2)
    with pytest.raises(ValueError, match="input channels must be evenly divisible"):
        layer.build((1, 5, 5, 3))
    assert not layer.built and layer.weights == []  # a failing build changes nothing
    layer = Conv2D(4, 3, groups=2, data_format="channels_first")
    with pytest.raises(ValueError, match="input has 3 channels"):
        layer(np.zeros((1, 3, 5, 5), np.float32))
    assert not layer.built
    assert layer(np.zeros((1, 2, 5, 5), np.float32)).shape == (1, 4, 3, 3)
    assert layer.kernel.shape == (3, 3, 1, 4)


def test_strides_with_dilation_errors():
    for cls, args in [(Conv2D, (2, 3)), (Conv1D, (2, 3)), (Conv2DTranspose, (2, 3))]:
        with pytest.raises(ValueError, match="`strides > 1` not supported in conjunction"):
            cls(*args, strides=2, dilation_rate=2)
    DepthwiseConv2D(3, strides=2, dilation_rate=2)  # Keras accepts it for depthwise


def test_transpose_argument_errors():
    with pytest.raises(ValueError, match="strictly less than `strides`"):
        Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="strictly less than `strides`"):
        Conv2DTranspose(2, 3, output_padding=(0, 1))  # default strides 1
    with pytest.raises(ValueError, match="output_padding"):
        Conv2DTranspose(2, 3, strides=2, output_padding=-1)
    with pytest.raises(ValueError, match="output_padding"):
        Conv2DTranspose(2, 3, strides=2, output_padding=(1, 1, 1))
    with pytest.raises(ValueError, match="padding"):
        Conv2DTranspose(2, 3, padding="causal")
    with pytest.raises(ValueError, match="filters"):
        Conv2DTranspose(0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2DTranspose(2, (3, 0))
    with pytest.raises(ValueError, match="data_format"):
        Conv2DTranspose(2, 3, data_format="NHWC")
    with pytest.raises(NotImplementedError, match="activity_regularizer"):
        Conv2DTranspose(2, 3, activity_regularizer="l2")
    with pytest.raises(TypeError, match="groups"):
        Conv2DTranspose(2, 3, groups=1)  # Keras's Conv2DTranspose has no groups either
    layer = Conv2DTranspose(2, 2, padding="same", output_padding=0)
    with pytest.raises(ValueError, match="zero or negative"):  # (1 - 1) * 1 + 2 % 2 + 0
        layer.build((1, 1, 1, 3))
    assert not layer.built


def test_depthwise_argument_errors():
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseConv2D(3, depth_multiplier=True)
    with pytest.raises(ValueError, match="padding"):
        DepthwiseConv2D(3, padding="causal")
    with pytest.raises(ValueError, match="strides"):
        DepthwiseConv2D(3, strides=0)
    with pytest.raises(TypeError, match="kernel_initializer"):
        DepthwiseConv2D(3, kernel_initializer="zeros")  # Keras calls it depthwise_initializer
    layer = DepthwiseConv2D(3)
    with pytest.raises(ValueError, match="zero or negative"):
        layer.build((1, 2, 5, 3))
    assert not layer.built
    layer(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="incompatible"):
        layer(np.zeros((1, 5, 5, 2), np.float32))


def test_op_argument_errors(rng):
    x = rng.standard_normal((1, 5, 5, 4))
    with pytest.raises(ValueError, match="evenly divisible"):
        conv(x, rng.standard_normal((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="divisible by groups"):
        conv(x, rng.standard_normal((3, 3, 2, 3)))  # 2 groups, 3 filters
    with pytest.raises(ValueError, match="kernel's input channels"):
        conv_transpose(x, rng.standard_normal((3, 3, 2, 3)))
    with pytest.raises(ValueError, match="kernel's input channels"):
        depthwise_conv(x, rng.standard_normal((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose(x, rng.standard_normal((3, 3, 2, 4)), output_padding=-1)
    with pytest.raises(ValueError, match="data_format"):
        conv(x, rng.standard_normal((3, 3, 4, 2)), data_format="NCHW")


def test_mixed_float16_transpose_and_conv_backward(keras, rng):
    """float16 reaches col2im (transposed forward, conv backward) through float32 sums."""
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float16)
    ours = Conv2DTranspose(3, 3, strides=2, padding="same", dtype="mixed_float16")
    ref = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", dtype="mixed_float16")
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    got = ours(x).numpy()
    assert got.dtype == np.float16
    want = np.asarray(keras.ops.convert_to_numpy(ref(x)), dtype=np.float32)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-3, atol=2e-3)
    layer = Conv2D(2, 3, dtype="mixed_float16")
    xt = Tensor(x)
    with GradientTape() as tape:
        tape.watch(xt)
        loss = layer(xt).sum()
    g = tape.gradient(loss, xt)
    assert g.dtype == np.float16 and g.shape == x.shape
    with GradientTape() as tape:  # the same gradient in float64
        x64 = Tensor(x.astype(np.float64))
        tape.watch(x64)
        loss = conv(x64, layer.kernel.data.astype(np.float64), None).sum()
    np.testing.assert_allclose(g.astype(np.float64), tape.gradient(loss, x64), rtol=1e-2,
                               atol=1e-2)
