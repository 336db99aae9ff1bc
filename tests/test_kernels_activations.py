"""The one-pass activation kernels (ReLU, SiLU, sigmoid) and their vectorisable ``exp``.

Checked against float64 NumPy: the exponential to 1 ulp over float32's whole range (with inf,
0, subnormals and NaN at the ends), each activation and gradient to a few float32 ulps, NaN and
inf handled as NumPy's formulas handle them, and the serial and parallel kernels bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from numba_gn.autograd import GradientTape, Tensor, relu, sigmoid, silu
from numba_gn.kernels import activations

NAMES = ("relu", "silu", "sigmoid")


@njit
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = activations.exp(x[i])


def _reference(name: str, x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "relu":
            return np.where(np.isnan(x64), x64, np.maximum(x64, 0.0))
        s = 1.0 / (1.0 + np.exp(-x64))
        return x64 * s if name == "silu" else s


def _reference_grad(name: str, g: np.ndarray, x: np.ndarray) -> np.ndarray:
    g64, x64 = g.astype(np.float64), x.astype(np.float64)
    if name == "relu":
        return g64 * (x64 > 0)
    s = 1.0 / (1.0 + np.exp(-x64))
    return g64 * (s * (1.0 + x64 * (1.0 - s))) if name == "silu" else g64 * s * (1.0 - s)


def test_exp_within_one_ulp_over_the_float32_range():
    x = np.linspace(-87.0, 88.5, 400_001, dtype=np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(out - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.0


def test_exp_ends_and_specials():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 89.0, 1000.0, -104.0, -1000.0, -100.0],
                 np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:7], [np.inf, 0.0, 1.0, 1.0, np.inf, np.inf])
    np.testing.assert_array_equal(out[7:9], [0.0, 0.0])
    # exp(-100) = 3.7e-44 is subnormal in float32: within one subnormal step of the truth
    assert abs(float(out[9]) - np.exp(-100.0)) <= np.spacing(np.float32(0)) * 1.0


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_match_float64(rng, name):
    x = (rng.standard_normal((5, 7, 3, 11)) * 6).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    y = activations.forward(name, x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, _reference(name, x), rtol=3e-7, atol=1e-30)
    v = y if name == "sigmoid" else x
    dx = activations.backward(name, g, v)
    if name == "sigmoid":  # from the stored float32 output, as every framework computes it
        s64 = y.astype(np.float64)
        ref = g.astype(np.float64) * s64 * (1.0 - s64)
    else:
        ref = _reference_grad(name, g, x)
    np.testing.assert_allclose(dx, ref, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_as_numpy(name):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -100.0], np.float32)
    y = activations.forward(name, x)
    ref = _reference(name, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    finite = ~np.isnan(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=3e-7, atol=1e-38)


@pytest.mark.parametrize("name", NAMES)
def test_serial_and_parallel_give_the_same_bits(rng, name):
    n = 3 * 16384 + 17  # several chunks and a ragged end
    x = (rng.standard_normal(n) * 5).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    code = activations.CODES[name]
    y_ser, y_par = np.empty_like(x), np.empty_like(x)
    activations.forward_ser(code, x, y_ser)
    activations.forward_par(code, x, y_par)
    np.testing.assert_array_equal(y_ser, y_par)
    d_ser, d_par = np.empty_like(x), np.empty_like(x)
    activations.backward_ser(code, g, x, d_ser)
    activations.backward_par(code, g, x, d_par)
    np.testing.assert_array_equal(d_ser, d_par)


@pytest.mark.parametrize(("op", "name"), [(relu, "relu"), (silu, "silu"), (sigmoid, "sigmoid")])
def test_autograd_ops_use_the_kernels_on_float32(rng, op, name):
    # A non-contiguous float32 view: the op still gives the float64 answer to float32 accuracy.
    base = (rng.standard_normal((6, 8)) * 4).astype(np.float32)
    x = Tensor(base[:, ::2])
    g = rng.standard_normal((6, 4)).astype(np.float32)
    with GradientTape() as tape:
        tape.watch(x)
        y = op(x)
    (dx,) = tape.gradient(y, [x], output_gradients=g)
    assert y.numpy().dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), _reference(name, base[:, ::2]), rtol=3e-7, atol=1e-30)
    ref = _reference_grad(name, g, base[:, ::2])
    np.testing.assert_allclose(dx, ref, rtol=2e-6, atol=1e-6 if name == "sigmoid" else 1e-7)
