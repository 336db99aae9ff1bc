"""MaxPooling1D/2D, AveragePooling1D/2D and their ops: Keras parity, gradients, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, gradcheck
from numba_gn.autograd import avg_pool, max_pool
from numba_gn.layers import AveragePooling1D, AveragePooling2D, MaxPooling1D, MaxPooling2D

FORMATS = ["channels_last", "channels_first"]
PADDINGS = ["valid", "same"]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


# -- ops -----------------------------------------------------------------------------------------


OP_CASES = [
    # pool_size, strides, axes, input shape
    ((2, 2), None, (1, 2), (2, 4, 6, 2)),
    ((3, 3), (2, 2), (1, 2), (1, 5, 7, 2)),  # overlapping windows, odd sizes
    ((3, 2), (1, 2), (2, 3), (1, 2, 5, 5)),  # channels-first axes
    ((2, 3), (3, 1), (1, 2), (2, 7, 4, 1)),  # stride larger than the window
    ((3,), (2,), (1,), (2, 7, 3)),
    ((4,), (1,), (2,), (1, 2, 6)),
]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pool,strides,axes,shape", OP_CASES, ids=str)
def test_pool_op_gradients(pool, strides, axes, shape, padding, rng):
    x = rng.standard_normal(shape)
    gradcheck(lambda t: max_pool(t, pool, strides, padding, axes), [x])
    gradcheck(lambda t: avg_pool(t, pool, strides, padding, axes), [x])


def _windows_reference(x, pool, strides, padding, reduce):
    """A direct loop over the windows of a (N, H, W, C) input (padding left out)."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = pool, strides
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0) // 2
        pw = max((ow - 1) * sw + kw - w, 0) // 2
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        ph = pw = 0
    out = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - ph, j * sw - pw
            window = x[:, max(r0, 0):r0 + kh, max(c0, 0):c0 + kw, :]
            out[:, i, j, :] = reduce(window, axis=(1, 2))
    return out


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pool,strides", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 3)),
                                          ((4, 4), (3, 3))])
def test_pool_op_values(pool, strides, padding, rng):
    x = rng.standard_normal((2, 7, 8, 3))
    for op, reduce in ((max_pool, np.max), (avg_pool, np.mean)):
        ours = op(x, pool, strides, padding).numpy()
        np.testing.assert_allclose(ours, _windows_reference(x, pool, strides, padding, reduce),
                                   rtol=1e-13, atol=1e-15)


def test_same_average_leaves_the_padding_out():
    x = np.ones((1, 3, 3, 1))
    out = avg_pool(x, (2, 2), (1, 1), "same").numpy()
    np.testing.assert_array_equal(out, np.ones((1, 3, 3, 1)))  # zero padding would lower edges
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    out = avg_pool(x, (3, 3), (1, 1), "same").numpy()[0, :, :, 0]
    assert out[0, 0] == np.mean([0, 1, 3, 4])
    assert out[1, 1] == np.mean(np.arange(9.0))


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = Tensor(np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 0.0, 3.0]]).reshape(1, 2, 4, 1))
    with GradientTape() as tape:
        tape.watch(x)
        y = max_pool(x, (2, 2)).sum()
    grad = tape.gradient(y, x)[0, :, :, 0]
    # Window 1: the 3 at (0, 1) comes first in row-major order; window 2: the 3 at (0, 2).
    np.testing.assert_array_equal(grad, [[0, 1, 1, 0], [0, 0, 0, 0]])


def test_max_pool_gradient_with_ties_matches_jax(rng):
    jax = pytest.importorskip("jax")
    from jax import lax

    # Small integers: many ties, and exact in float32 (no need to switch jax to float64).
    x = rng.integers(0, 3, (2, 6, 7, 2)).astype(np.float32)
    for strides in ((2, 2), (1, 2), (3, 3)):
        def f(v, strides=strides):
            return lax.reduce_window(v, -np.inf, lax.max, (1, 3, 3, 1), (1, *strides, 1),
                                     "VALID")

        out, vjp = jax.vjp(f, x)
        t = Tensor(x)
        with GradientTape() as tape:
            tape.watch(t)
            y = max_pool(t, (3, 3), strides)
        c = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(y.numpy(), np.asarray(out))
        np.testing.assert_allclose(tape.gradient(y, t, output_gradients=c),
                                   np.asarray(vjp(c)[0]), rtol=1e-6, atol=1e-6)


def test_max_pool_nan_propagates():
    x = np.array([1.0, np.nan, 2.0, 0.5, np.nan, np.nan]).reshape(1, 6, 1)
    out = max_pool(x, (2,), axes=(1,)).numpy().ravel()
    assert np.isnan(out[0]) and out[1] == 2.0 and np.isnan(out[2])


def test_pool_op_errors():
    x = np.zeros((1, 3, 3, 1))
    with pytest.raises(ValueError, match="do not fit"):
        max_pool(x, (4, 4))
    with pytest.raises(ValueError, match="padding"):
        avg_pool(x, (2, 2), padding="full")
    with pytest.raises(ValueError, match="same length"):
        max_pool(x, (2, 2), (1,))
    with pytest.raises(ValueError, match="positive"):
        max_pool(x, (0, 2))


# -- layers against Keras ------------------------------------------------------------------------


LAYER_CASES_2D = [
    ((2, 2), None),
    ((3, 3), (2, 2)),
    ((3, 2), (1, 2)),
    ((2, 3), (3, 1)),
    (2, 1),
]


def _check_against_keras(keras, ours, x):
    ref_layer = getattr(keras.layers, type(ours).__name__).from_config(ours.get_config())
    out = ours(x).numpy()
    ref = keras.ops.convert_to_numpy(ref_layer(x))
    assert out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert ours.compute_output_shape(x.shape) == out.shape
    assert tuple(ref_layer.compute_output_shape(x.shape)) == out.shape
    free = (None, *x.shape[1:])
    assert ours.compute_output_shape(free) == (None, *out.shape[1:])
    return out


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D], ids=lambda c: c.__name__)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pool,strides", LAYER_CASES_2D, ids=str)
def test_pooling2d_matches_keras(cls, pool, strides, padding, data_format, keras, rng):
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    if data_format == "channels_first":
        x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    layer = cls(pool, strides, padding, data_format)
    _check_against_keras(keras, layer, x)
    small = x[:1, :3, :5, :5] if data_format == "channels_first" else x[:1, :5, :5, :3]
    gradcheck(lambda t: cls(pool, strides, padding, data_format, dtype="float64")(t), [small])


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D], ids=lambda c: c.__name__)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pool,strides", [(2, None), (3, 2), (4, 1), (3, 3)], ids=str)
def test_pooling1d_matches_keras(cls, pool, strides, padding, data_format, keras, rng):
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    layer = cls(pool, strides, padding, data_format)
    _check_against_keras(keras, layer, x)
    gradcheck(lambda t: cls(pool, strides, padding, data_format, dtype="float64")(t), [x[:1]])


def test_max_pooling_of_integers_and_nan_matches_keras(keras, rng):
    x = rng.integers(-50, 50, (2, 5, 5, 2)).astype(np.int32)
    out = _check_against_keras(keras, MaxPooling2D(padding="same"), x)
    assert out.dtype == np.int32
    y = rng.standard_normal((1, 4, 4, 1)).astype(np.float32)
    y[0, 1, 2, 0] = np.nan
    ours = MaxPooling2D()(y).numpy()
    ref = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D()(y))
    np.testing.assert_array_equal(ours, ref)  # equal_nan: both NaN in the same window


def test_output_shapes_with_free_dimensions(keras):
    cases = [
        (MaxPooling2D((3, 3), 2, "valid"), (None, None, 9, 4), (None, None, 4, 4)),
        (AveragePooling2D(2, padding="same"), (None, 5, None, 3), (None, 3, None, 3)),
        (MaxPooling1D(3, 2, "same", "channels_first"), (None, 4, 7), (None, 4, 4)),
        (AveragePooling1D(2), (None, None, 2), (None, None, 2)),
    ]
    for layer, shape, expected in cases:
        assert layer.compute_output_shape(shape) == expected
        ref = getattr(keras.layers, type(layer).__name__).from_config(layer.get_config())
        assert tuple(ref.compute_output_shape(shape)) == expected


# -- errors --------------------------------------------------------------------------------------


def test_windows_larger_than_the_input(keras):
    layer = MaxPooling2D((4, 4))
    message = "Computed output size would be zero or negative"
    with pytest.raises(ValueError, match=message):
        layer.compute_output_shape((None, 3, 8, 1))
    with pytest.raises(ValueError, match=message):
        keras.layers.MaxPooling2D((4, 4)).compute_output_shape((None, 3, 8, 1))
    with pytest.raises(ValueError, match=message):
        layer(np.zeros((1, 3, 8, 1), np.float32))
    assert not layer.built
    assert layer(np.zeros((1, 4, 8, 1), np.float32)).shape == (1, 1, 2, 1)
    with pytest.raises(ValueError, match="do not fit"):
        layer(np.zeros((1, 3, 8, 1), np.float32))  # a later call: the op's own check


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D], ids=lambda c: c.__name__)
@pytest.mark.parametrize("kwargs,error,match", [
    ({"pool_size": 0}, ValueError, "pool_size"),
    ({"pool_size": (2, 2, 2)}, ValueError, "pool_size"),
    ({"pool_size": 2.0}, ValueError, "pool_size"),
    ({"pool_size": True}, ValueError, "pool_size"),
    ({"pool_size": 2, "strides": 0}, ValueError, "strides"),
    ({"pool_size": 2, "strides": (1,)}, ValueError, "strides"),
    ({"pool_size": 2, "padding": "full"}, ValueError, "padding"),
    ({"pool_size": 2, "padding": 1}, ValueError, "padding"),
    ({"pool_size": 2, "data_format": "NHWC"}, ValueError, "data_format"),
    ({"pool_size": 2, "dilation_rate": 2}, TypeError, "dilation_rate"),
])
def test_bad_arguments(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_average_pooling_needs_a_pool_size(keras):
    with pytest.raises(TypeError, match="pool_size"):
        AveragePooling2D()
    with pytest.raises(TypeError, match="pool_size"):
        keras.layers.AveragePooling2D()


# -- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [
    MaxPooling1D(), MaxPooling2D(), AveragePooling1D(3, 2, "SAME"),
    AveragePooling2D((2, 3), (1, 2), "same", "channels_first", name="pool"),
    MaxPooling2D(3, padding="Valid", dtype="float64"),
], ids=lambda x: type(x).__name__)
def test_config_round_trips_with_keras(layer, keras):
    config = layer.get_config()
    k = getattr(keras.layers, type(layer).__name__)
    kcfg = k.from_config(config).get_config()
    assert kcfg == config
    assert type(layer).from_config(kcfg).get_config() == config


def test_configs_equal_keras_defaults(keras):
    for ours, ref in [
        (MaxPooling1D(name="a"), keras.layers.MaxPooling1D(name="a")),
        (MaxPooling2D(name="b"), keras.layers.MaxPooling2D(name="b")),
        (AveragePooling1D(2, name="c"), keras.layers.AveragePooling1D(2, name="c")),
        (AveragePooling2D(2, name="d"), keras.layers.AveragePooling2D(2, name="d")),
    ]:
        assert ours.get_config() == ref.get_config()


@pytest.mark.parametrize(
    ("shape", "pool", "strides", "padding", "axes"),
    [
        ((3, 9, 8, 5), (2, 2), (2, 2), "valid", (1, 2)),  # channels-last, the common case
        ((3, 9, 8, 5), (3, 3), (1, 2), "same", (1, 2)),  # overlapping windows, padding
        ((2, 4, 9, 7), (3, 2), (2, 1), "same", (2, 3)),  # channels-first: one channel a plane
        ((4, 11, 6), (3,), (2,), "same", (1,)),  # 1-D
        ((2, 5, 7, 3, 2), (2, 3), (1, 2), "valid", (1, 2)),  # several trailing axes
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_kernels_match_the_numpy_passes(shape, pool, strides, padding, axes, dtype,
                                                 rng, monkeypatch):
    """The Numba kernels give the NumPy version's maxima (NaN included) and gradients."""
    from numba_gn.autograd import ops_pool

    # Few distinct values: ties in most windows, and some NaN.
    x = rng.integers(0, 4, shape).astype(dtype)
    x[rng.random(shape) < 0.05] = np.nan
    g = rng.standard_normal(max_pool(x, pool, strides, padding, axes).shape).astype(dtype)

    def run():
        t = Tensor(x)
        with GradientTape() as tape:
            tape.watch(t)
            y = max_pool(t, pool, strides, padding, axes)
            loss = (y * g).sum()
        return y.numpy(), np.asarray(tape.gradient(loss, t))

    y, dx = run()
    assert ops_pool._planes(x, ops_pool._Geometry(shape, axes, pool, strides, padding))
    monkeypatch.setattr(ops_pool, "_planes", lambda x, geo: None)
    y_ref, dx_ref = run()
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert np.isnan(y).any()
