"""Winograd F(2x2, 3x3) convolutions: tile transforms, agreement with im2col, gradients, rule."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from numba_gn import gradcheck
from numba_gn.autograd import ops_conv
from numba_gn.autograd.function import Context
from numba_gn.autograd.ops_conv import Conv, _forced_path, _use_winograd, conv
from numba_gn.kernels.conv import (
    winograd_input,
    winograd_input_grad,
    winograd_output,
    winograd_output_grad,
)
from numba_gn.layers import Conv2D

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def _tiles(out_h, out_w):
    return -(-out_h // 2), -(-out_w // 2)


def _reference_input(x, pads, tiles):
    """``B^T d B`` of every 4x4 window taken every 2 pixels of the zero-padded image."""
    n, h, w, c = x.shape
    th, tw = tiles
    pt, pl = pads
    xp = np.zeros((n, 2 * th + 2, 2 * tw + 2, c))
    rows, cols = min(h, 2 * th + 2 - pt), min(w, 2 * tw + 2 - pl)
    xp[:, pt : pt + rows, pl : pl + cols] = x[:, :rows, :cols]
    v = np.empty((4, 4, n, th, tw, c))
    for ty in range(th):
        for tx in range(tw):
            d = xp[:, 2 * ty : 2 * ty + 4, 2 * tx : 2 * tx + 4]  # (n, 4, 4, c)
            v[:, :, :, ty, tx] = np.einsum("ia,nabc,jb->ijnc", BT, d, BT)
    return v.reshape(16, n * th * tw, c)


# -- the tile transforms ---------------------------------------------------------------------------


TRANSFORM_CASES = [
    # x shape, pads, output (OH, OW)
    ((2, 5, 7, 3), (1, 1), (5, 7)),  # "same", odd sizes: partial last tiles
    ((1, 6, 6, 1), (0, 0), (4, 4)),  # "valid"
    ((3, 4, 9, 5), (1, 1), (4, 9)),
    ((2, 3, 3, 2), (0, 0), (1, 1)),  # a single output pixel
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "pads", "out_hw"), TRANSFORM_CASES)
def test_input_transform_matches_definition(shape, pads, out_hw, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    tiles = _tiles(*out_hw)
    v = winograd_input(x, pads, tiles)
    assert v.dtype == dtype and v.shape == (16, shape[0] * tiles[0] * tiles[1], shape[3])
    tol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(v, _reference_input(x.astype(np.float64), pads, tiles), atol=tol)


@pytest.mark.parametrize(("shape", "pads", "out_hw"), TRANSFORM_CASES)
def test_output_transform_matches_definition(shape, pads, out_hw, rng):
    n, f = shape[0], 4
    oh, ow = out_hw
    th, tw = _tiles(oh, ow)
    m = rng.standard_normal((16, n * th * tw, f))
    bias = rng.standard_normal(f)
    y = winograd_output(m, bias, (n, oh, ow, f))
    full = np.einsum("ak,klnyxf,bl->nyaxbf", AT, m.reshape(4, 4, n, th, tw, f), AT)
    expected = full.reshape(n, 2 * th, 2 * tw, f)[:, :oh, :ow] + bias
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(("shape", "pads", "out_hw"), TRANSFORM_CASES)
def test_gradient_transforms_are_the_adjoints(shape, pads, out_hw, rng):
    """<T(a), b> == <a, T*(b)> for the input and output transforms and their gradients."""
    n, c = shape[0], shape[3]
    oh, ow = out_hw
    tiles = _tiles(oh, ow)
    x = rng.standard_normal(shape)
    dv = rng.standard_normal((16, n * tiles[0] * tiles[1], c))
    dx = winograd_input_grad(dv, shape, pads, tiles)
    assert dx.shape == shape
    np.testing.assert_allclose(np.vdot(winograd_input(x, pads, tiles), dv), np.vdot(x, dx))
    m = rng.standard_normal((16, n * tiles[0] * tiles[1], 3))
    g = rng.standard_normal((n, oh, ow, 3))
    y = winograd_output(m, np.zeros(3), (n, oh, ow, 3))
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(m, winograd_output_grad(g)))


def test_input_gradient_rejects_tiles_that_miss_pixels():
    with pytest.raises(ValueError, match="do not cover"):
        winograd_input_grad(np.zeros((16, 2, 1)), (1, 8, 3, 1), (0, 0), (1, 2))


@pytest.mark.parametrize("shape", [(16, 12, 12, 24), (5, 32, 32, 24)])
def test_parallel_and_serial_kernels_give_the_same_bits(shape, rng):
    """One thread or all, the bits are the same: one chunk of samples (its transforms go
    parallel) or several (the chunks spread over threads, their kernel gradients summed in
    chunk order)."""
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 24, 16)).astype(np.float32)
    g = rng.standard_normal((*shape[:3], 16)).astype(np.float32)
    results = []
    threads = numba.get_num_threads()
    for n in sorted({1, threads}):
        numba.set_num_threads(n)
        try:
            results.append(_forward_backward(x, kernel, None, g, "winograd", "same"))
        finally:
            numba.set_num_threads(threads)
    for a, b in zip(results[0], results[-1], strict=True):
        np.testing.assert_array_equal(a, b)


# -- agreement with the im2col path ---------------------------------------------------------------


def _forward_backward(x, kernel, bias, g, path, padding, data_format="channels_last"):
    """Output and (dx, dkernel, dbias) of one convolution on the given path."""
    with _forced_path(path):
        ctx = Context((True, True, bias is not None))
        y = Conv.forward(
            ctx,
            x,
            kernel,
            bias,
            strides=(1, 1),
            dilation=(1, 1),
            padding=padding,
            data_format=data_format,
        )
        if g is None:
            return (y,)
        return (y, *Conv.backward(ctx, g))


AGREEMENT_CASES = [
    # x (N, H, W, C), filters F, padding, offset of x
    ((4, 9, 7, 8), 6, "same", 0.0),  # odd sizes
    ((3, 8, 10, 5), 4, "valid", 0.0),
    ((1, 6, 5, 16), 8, "same", 0.0),  # N = 1
    ((2, 7, 7, 1), 3, "same", 0.0),  # C = 1
    ((2, 6, 6, 4), 1, "valid", 0.0),  # F = 1
    ((2, 3, 4, 3), 2, "valid", 0.0),  # one output row
    ((3, 8, 8, 12), 5, "same", 1e3),  # large offset: x = 1e3 + N(0, 1)
]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize(("shape", "filters", "padding", "offset"), AGREEMENT_CASES)
def test_winograd_agrees_with_im2col(shape, filters, padding, offset, with_bias, rng):
    """Both float32 paths stay within a few float32 rounding errors of the float64 result.

    Measured on these shapes: each path is within 1e-6 of the largest float64 value (forward
    and gradients); the bound below leaves room for the sums over larger batches.
    """
    x = (offset + rng.standard_normal(shape)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, shape[3], filters)) / 3).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32) if with_bias else None
    (y,) = _forward_backward(x, kernel, bias, None, "im2col", padding)
    g = (offset + rng.standard_normal(y.shape)).astype(np.float32)
    exact = _forward_backward(
        x.astype(np.float64),
        kernel.astype(np.float64),
        None if bias is None else bias.astype(np.float64),
        g.astype(np.float64),
        "im2col",
        padding,
    )
    im2col = _forward_backward(x, kernel, bias, g, "im2col", padding)
    winograd = _forward_backward(x, kernel, bias, g, "winograd", padding)
    names = ("y", "dx", "dkernel", "dbias")
    for name, ref, a, b in zip(names, exact, im2col, winograd, strict=True):
        if ref is None:
            assert a is None and b is None
            continue
        assert b.dtype == np.float32 and b.shape == ref.shape, name
        scale = np.abs(ref).max()
        assert np.abs(a - ref).max() <= 3e-6 * scale, name
        assert np.abs(b - ref).max() <= 3e-6 * scale, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_over_several_chunks_of_samples(dtype, rng):
    """Batches larger than one chunk (here 2 or 1 samples per chunk, a shorter last chunk)."""
    shape, filters = (5, 32, 32, 32), 8
    per_sample = 16 * 16 * 16 * 32 * np.dtype(dtype).itemsize  # transformed tiles of a sample
    assert 1 <= ops_conv.WINOGRAD_CHUNK_BYTES // per_sample < shape[0]
    x = rng.standard_normal(shape).astype(dtype)
    kernel = (rng.standard_normal((3, 3, 32, filters)) / 9).astype(dtype)
    bias = rng.standard_normal(filters).astype(dtype)
    g = rng.standard_normal((*shape[:3], filters)).astype(dtype)
    exact = _forward_backward(
        *(a.astype(np.float64) for a in (x, kernel, bias, g)), "im2col", "same"
    )
    winograd = _forward_backward(x, kernel, bias, g, "winograd", "same")
    rtol = 3e-6 if dtype == np.float32 else 1e-13
    for ref, got in zip(exact, winograd, strict=True):
        assert got.dtype == dtype
        assert np.abs(got - ref).max() <= rtol * np.abs(ref).max()
    # Without a kernel gradient V is made chunk by chunk too; the output is the same.
    with _forced_path("winograd"):
        y = Conv.forward(
            Context((True, False, True)),
            x,
            kernel,
            bias,
            strides=(1, 1),
            dilation=(1, 1),
            padding="same",
        )
    np.testing.assert_array_equal(y, winograd[0])


def test_winograd_channels_first_matches_channels_last(rng):
    x = rng.standard_normal((2, 5, 6, 7))
    kernel = rng.standard_normal((3, 3, 5, 4))
    bias = rng.standard_normal(4)
    g = rng.standard_normal((2, 4, 6, 7))
    first = _forward_backward(x, kernel, bias, g, "winograd", "same", "channels_first")
    last = _forward_backward(
        x.transpose(0, 2, 3, 1), kernel, bias, g.transpose(0, 2, 3, 1), "winograd", "same"
    )
    np.testing.assert_allclose(first[0], last[0].transpose(0, 3, 1, 2), rtol=1e-13)
    np.testing.assert_allclose(first[1], last[1].transpose(0, 3, 1, 2), rtol=1e-13)
    np.testing.assert_allclose(first[2], last[2], rtol=1e-13)
    np.testing.assert_allclose(first[3], last[3], rtol=1e-13)


# -- gradients (finite differences, float64) -------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "filters", "padding", "data_format"),
    [
        ((2, 5, 4, 3), 2, "same", "channels_last"),
        ((1, 6, 5, 2), 3, "valid", "channels_last"),
        ((2, 2, 5, 4), 2, "same", "channels_first"),
    ],
)
def test_winograd_gradients(shape, filters, padding, data_format, rng):
    x = rng.standard_normal(shape)
    channels = shape[1] if data_format == "channels_first" else shape[3]
    kernel = rng.standard_normal((3, 3, channels, filters))
    bias = rng.standard_normal(filters)
    with _forced_path("winograd"):
        gradcheck(lambda x, k, b: conv(x, k, b, 1, padding, 1, data_format), [x, kernel, bias])


# -- the rule --------------------------------------------------------------------------------------


def _takes_winograd(x_shape, kernel_shape, steps=(1, 1, 1, 1), dtype=np.float32):
    x = np.empty(x_shape, dtype=dtype)
    kernel = np.empty(kernel_shape, dtype=dtype)
    return _use_winograd(x, kernel, steps, (x_shape[0], *x_shape[1:3]))


def test_rule_takes_winograd_for_resnet_sized_convolutions():
    assert _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32))
    assert _takes_winograd((1, 32, 32, 64), (3, 3, 64, 16))
    assert _takes_winograd((64, 4, 4, 64), (3, 3, 64, 64))
    assert _takes_winograd((64, 16, 16, 16), (3, 3, 16, 16))
    assert _takes_winograd((128, 8, 8, 16), (3, 3, 16, 16))
    assert _takes_winograd((64, 16, 16, 32), (3, 3, 32, 1))
    assert _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32), dtype=np.float64)


def test_rule_keeps_im2col_where_winograd_does_not_win_or_does_not_apply():
    assert not _takes_winograd((64, 16, 16, 1), (3, 3, 1, 32))  # one input channel
    assert not _takes_winograd((64, 16, 16, 3), (3, 3, 3, 16))  # RGB input
    assert not _takes_winograd((256, 2, 2, 32), (3, 3, 32, 32))  # tiny images
    assert not _takes_winograd((64, 16, 16, 8), (3, 3, 8, 8))  # 8 channels
    assert not _takes_winograd((64, 4, 4, 16), (3, 3, 16, 16))  # small problems
    assert not _takes_winograd((1, 16, 16, 32), (3, 3, 32, 32))
    assert not _takes_winograd((64, 16, 16, 32), (5, 5, 32, 32))
    assert not _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32), (2, 2, 1, 1))
    assert not _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32), (1, 1, 2, 2))
    assert not _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32), dtype=np.float16)


def test_forced_path_applies_only_where_winograd_can_run():
    with _forced_path("winograd"):
        assert _takes_winograd((2, 4, 4, 1), (3, 3, 1, 1))
        assert not _takes_winograd((2, 4, 4, 1), (3, 3, 1, 1), (2, 2, 1, 1))
    with _forced_path("im2col"):
        assert not _takes_winograd((64, 16, 16, 32), (3, 3, 32, 32))
    with pytest.raises(ValueError, match="path"):
        with _forced_path("fft"):
            pass


def test_rule_depends_on_shapes_only():
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = _takes_winograd((8, 16, 16, 32), (3, 3, 32, 32))
    finally:
        numba.set_num_threads(threads)
    assert single == _takes_winograd((8, 16, 16, 32), (3, 3, 32, 32))


def test_grouped_convolutions_keep_im2col(rng):
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)  # two groups
    with _forced_path("winograd"):
        forced = conv(x, kernel, None, 1, "same").numpy()
    with _forced_path("im2col"):
        plain = conv(x, kernel, None, 1, "same").numpy()
    np.testing.assert_array_equal(forced, plain)


# -- a layer on the Winograd path ------------------------------------------------------------------


def test_conv2d_layer_on_winograd_matches_keras(rng):
    keras = pytest.importorskip("keras")
    shape = (5, 17, 15, 32)  # odd sizes: partial last tiles
    x = rng.standard_normal(shape).astype(np.float32)
    ours = Conv2D(16, 3, padding="same")
    ref = keras.layers.Conv2D(16, 3, padding="same")
    ours.build(shape)
    ref.build(shape)
    # Weights scaled by the fan-in as Keras initialises them: with unit weights the outputs
    # reach ~50 and float32 rounding alone (either path, or Keras's) exceeds 1e-5.
    kernel = rng.standard_normal(ours.kernel.shape) / np.sqrt(9 * 32)
    weights = [kernel.astype(np.float32), rng.standard_normal(16).astype(np.float32)]
    ours.set_weights(weights)
    ref.set_weights(weights)
    assert _takes_winograd(shape, (3, 3, 32, 16))  # the rule's own choice, nothing forced
    expected = np.asarray(keras.ops.convert_to_numpy(ref(x)))
    np.testing.assert_allclose(ours(x).numpy(), expected, rtol=1e-5, atol=1e-5)
