"""Reshape, ZeroPadding2D, Cropping2D, UpSampling1D/2D and their ops: Keras parity, gradients."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, gradcheck
from numba_gn.autograd import repeat, resize_linear
from numba_gn.autograd.ops_resize import linear_resize_weights
from numba_gn.layers import Cropping2D, Reshape, UpSampling1D, UpSampling2D, ZeroPadding2D

FORMATS = ["channels_last", "channels_first"]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _check_against_keras(keras, ours, x, exact=False):
    """Same output as the Keras layer of the same config; compute_output_shape agrees."""
    ref_layer = getattr(keras.layers, type(ours).__name__).from_config(ours.get_config())
    out = ours(x).numpy()
    ref = keras.ops.convert_to_numpy(ref_layer(x))
    assert out.dtype == ref.dtype
    if exact:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert ours.compute_output_shape(x.shape) == out.shape
    free = (None, *x.shape[1:])
    assert ours.compute_output_shape(free) == (None, *out.shape[1:])
    assert tuple(ref_layer.compute_output_shape(free)) == (None, *out.shape[1:])
    return out


# -- ops -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis,repeats", [(0, 2), (1, 3), (-1, 1), (2, 2)])
def test_repeat_op(axis, repeats, rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(repeat(x, repeats, axis).numpy(), np.repeat(x, repeats, axis))
    gradcheck(lambda t: repeat(t, repeats, axis), [x])


@pytest.mark.parametrize("sizes,axes", [((6,), (1,)), ((7, 10), (1, 2)), ((3, 4), (2, 3)),
                                        ((2, 9), (1, 2)), ((3,), (-1,))])
def test_resize_linear_op_gradients(sizes, axes, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    expected = list(x.shape)
    for a, n in zip(axes, sizes, strict=True):
        expected[a] = n
    assert resize_linear(x, sizes, axes).shape == tuple(expected)
    gradcheck(lambda t: resize_linear(t, sizes, axes), [x])


def test_resize_linear_matches_jax_image_resize(rng):
    jax = pytest.importorskip("jax")
    x = rng.standard_normal((2, 3, 5, 2)).astype(np.float32)
    for shape in [(2, 6, 10, 2), (2, 9, 5, 2), (2, 2, 3, 2), (2, 7, 13, 2)]:
        ref = np.asarray(jax.image.resize(x, shape, method="linear", antialias=False))
        ours = resize_linear(x, shape[1:3], (1, 2)).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_linear_resize_weights():
    w = linear_resize_weights(2, 4)
    # Half-pixel centres at -0.25, 0.25, 0.75, 1.25 of the input; the edges are clamped.
    np.testing.assert_allclose(w, [[1.0, 0.75, 0.25, 0.0], [0.0, 0.25, 0.75, 1.0]])
    np.testing.assert_allclose(linear_resize_weights(5, 15).sum(axis=0), 1.0)
    np.testing.assert_array_equal(linear_resize_weights(3, 3), np.eye(3))


# -- Reshape -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [(12,), (-1,), (3, 4), (2, -1, 3), (1, 12, 1), [4, 3]])
def test_reshape_matches_keras(target, keras, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    layer = Reshape(target)
    _check_against_keras(keras, layer, x, exact=True)
    gradcheck(lambda t: Reshape(target, dtype="float64")(t), [x])


def test_reshape_output_shapes(keras):
    layer = Reshape((-1, 3))
    assert layer.compute_output_shape((None, 4, 6)) == (None, 8, 3)
    assert layer.compute_output_shape((None, None, 6)) == (None, None, 3)
    assert keras.layers.Reshape((-1, 3)).compute_output_shape((None, None, 6)) == (None, None, 3)
    with pytest.raises(ValueError, match="total size of the tensor must be unchanged"):
        layer.compute_output_shape((None, 5))
    with pytest.raises(ValueError, match="total size of the tensor must be unchanged"):
        Reshape((5,))(np.zeros((2, 6), np.float32))


@pytest.mark.parametrize("target,error", [
    ((-1, -1), ValueError), ((2, -2), ValueError), ((2.0, 3), TypeError), (6, TypeError),
    ("23", TypeError), ((True,), TypeError),
])
def test_reshape_bad_target(target, error):
    with pytest.raises(error, match="target_shape"):
        Reshape(target)


# -- ZeroPadding2D and Cropping2D ---------------------------------------------------------------


PADDINGS = [1, (2, 0), ((1, 2), (0, 3)), ((0, 0), (2, 1))]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_zero_padding_matches_keras(padding, data_format, keras, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    layer = ZeroPadding2D(padding, data_format=data_format)
    _check_against_keras(keras, layer, x, exact=True)
    gradcheck(lambda t: ZeroPadding2D(padding, data_format, dtype="float64")(t), [x[:1]])


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("cropping", [0, 1, (1, 0), ((1, 2), (0, 1)), ((0, 1), (2, 0))],
                         ids=str)
def test_cropping_matches_keras(cropping, data_format, keras, rng):
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    layer = Cropping2D(cropping, data_format=data_format)
    _check_against_keras(keras, layer, x, exact=True)
    gradcheck(lambda t: Cropping2D(cropping, data_format, dtype="float64")(t), [x[:1]])


def test_cropping_too_much(keras):
    layer = Cropping2D(((2, 2), (0, 0)))
    with pytest.raises(ValueError, match="should be smaller than"):
        layer(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="should be smaller than"):
        layer.compute_output_shape((None, 3, 4, 1))
    assert layer.compute_output_shape((None, None, 4, 1)) == (None, None, 4, 1)
    assert layer(np.zeros((1, 5, 4, 1), np.float32)).shape == (1, 1, 4, 1)


@pytest.mark.parametrize("cls,arg", [(ZeroPadding2D, "padding"), (Cropping2D, "cropping")])
@pytest.mark.parametrize("value", [-1, (1, 2, 3), ((1, 2, 3), (1, 1)), ((1, -1), (0, 0)),
                                   (1.5, 1), "1", None, True, ((1, 1), (1, True))], ids=str)
def test_bad_padding_and_cropping(cls, arg, value, keras):
    with pytest.raises(ValueError, match=arg):
        cls(value)


# -- UpSampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3])
def test_upsampling1d_matches_keras(size, keras, rng):
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    _check_against_keras(keras, UpSampling1D(size), x, exact=True)
    gradcheck(lambda t: UpSampling1D(size, dtype="float64")(t), [x])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("size", [2, (3, 2), (1, 3)], ids=str)
def test_upsampling2d_matches_keras(size, data_format, interpolation, keras, rng):
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    layer = UpSampling2D(size, data_format=data_format, interpolation=interpolation)
    _check_against_keras(keras, layer, x)
    small = x[:1, :3, :4, :2]
    gradcheck(lambda t: UpSampling2D(size, data_format, interpolation, dtype="float64")(t),
              [small])


def test_upsampling2d_bilinear_values():
    x = np.array([[0.0, 1.0]], np.float32).reshape(1, 1, 2, 1)
    out = UpSampling2D((1, 2), interpolation="bilinear")(x).numpy().ravel()
    np.testing.assert_allclose(out, [0.0, 0.25, 0.75, 1.0])


def test_upsampling2d_bilinear_integers_match_keras(keras, rng):
    x = rng.integers(0, 100, (1, 3, 4, 2)).astype(np.int32)
    layer = UpSampling2D(interpolation="bilinear")
    out = _check_against_keras(keras, layer, x, exact=True)
    assert out.dtype == np.int32


def test_upsampling_gradient_sums_the_copies(rng):
    x = Tensor(rng.standard_normal((1, 2, 2, 1)).astype(np.float32))
    with GradientTape() as tape:
        tape.watch(x)
        y = UpSampling2D((2, 3))(x).sum()
    np.testing.assert_array_equal(tape.gradient(y, x), np.full((1, 2, 2, 1), 6.0))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"size": 0}, ValueError, "size"),
    ({"size": (2, 0)}, ValueError, "size"),
    ({"size": (2, 2, 2)}, ValueError, "size"),
    ({"size": 1.5}, ValueError, "size"),
    ({"interpolation": "cubic"}, ValueError, "interpolation"),
    ({"interpolation": 1}, TypeError, "interpolation"),
    ({"interpolation": "bicubic"}, NotImplementedError, "interpolation"),
    ({"data_format": "NHWC"}, ValueError, "data_format"),
])
def test_upsampling2d_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UpSampling2D(**kwargs)


@pytest.mark.parametrize("size,error", [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                        (True, TypeError), ((2,), TypeError)])
def test_upsampling1d_bad_size(size, error):
    with pytest.raises(error, match="size"):
        UpSampling1D(size)


def test_rank_is_checked():
    with pytest.raises(ValueError, match="expected rank 4, got rank 3"):
        UpSampling2D()(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="expected rank 3, got rank 4"):
        UpSampling1D()(np.zeros((2, 3, 4, 1), np.float32))


# -- configs -------------------------------------------------------------------------------------


CONFIG_LAYERS = [
    Reshape((3, -1)),
    ZeroPadding2D(),
    ZeroPadding2D(((1, 2), (3, 4)), data_format="channels_first"),
    Cropping2D(),
    Cropping2D(2, data_format="CHANNELS_FIRST"),
    UpSampling1D(3),
    UpSampling2D(),
    UpSampling2D((2, 3), "channels_first", "Bilinear", name="up"),
]


@pytest.mark.parametrize("layer", CONFIG_LAYERS, ids=lambda x: type(x).__name__)
def test_config_round_trips_with_keras(layer, keras):
    config = layer.get_config()
    k = getattr(keras.layers, type(layer).__name__)
    kcfg = k.from_config(config).get_config()
    assert kcfg == config
    assert type(layer).from_config(kcfg).get_config() == config


def test_configs_equal_keras_defaults(keras):
    for ours, ref in [
        (ZeroPadding2D(name="z"), keras.layers.ZeroPadding2D(name="z")),
        (Cropping2D(name="c"), keras.layers.Cropping2D(name="c")),
        (UpSampling1D(name="u"), keras.layers.UpSampling1D(name="u")),
        (UpSampling2D(name="v"), keras.layers.UpSampling2D(name="v")),
        (Reshape((2, 3), name="r"), keras.layers.Reshape((2, 3), name="r")),
    ]:
        assert ours.get_config() == ref.get_config()


@pytest.mark.parametrize("repeats", [0, 1, 2, 3, 9])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_repeat_op_values_and_gradients(repeats, axis, rng):
    """`repeat` gives `np.repeat`; its gradient sums each element's copies (zeros for 0)."""
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    expected = np.repeat(x, repeats, axis=axis)
    g = rng.standard_normal(expected.shape).astype(np.float32)
    t = Tensor(x)
    with GradientTape() as tape:
        tape.watch(t)
        y = repeat(t, repeats, axis=axis)
        loss = (y * g).sum()
    np.testing.assert_array_equal(y.numpy(), expected)
    ax = axis % 3
    split = g.reshape(*x.shape[: ax + 1], repeats, *x.shape[ax + 1 :])
    np.testing.assert_allclose(np.asarray(tape.gradient(loss, t)), split.sum(axis=ax + 1),
                               rtol=1e-6, atol=1e-6)
