"""``group_norm_backward`` against central finite differences of ``group_norm`` (float64) and
against the closed-form float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from reference import group_norm_backward_ref

from numba_gn import group_norm, group_norm_backward

FD_STEP = 1e-6


def central_difference(f, a: np.ndarray, step: float = FD_STEP) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``a`` by central differences, element by element."""
    a = np.array(a, dtype=np.float64)
    grad = np.empty_like(a)
    flat = a.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + step
        up = f(a)
        flat[i] = keep - step
        down = f(a)
        flat[i] = keep
        gflat[i] = (up - down) / (2 * step)
    return grad


# (shape, axis, groups): int axes of every kind, tuple axes (adjacent, non-adjacent, unordered).
FD_CASES = [
    ((2, 4, 3), 1, 2),
    ((2, 3, 4), -1, 2),
    ((2, 3, 4, 2), 2, 4),
    ((3, 6), -1, 3),
    ((2, 5, 3), 1, 1),
    ((2, 2, 3, 2), (2, 3), 3),
    ((2, 3, 2, 2), (1, 3), 3),
    ((2, 2, 3, 2), (3, 1), 2),
]


def _ids(case):
    shape, axis, groups = case
    return f"{shape}-ax{axis}-g{groups}".replace(" ", "")


@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
@pytest.mark.parametrize(("shape", "axis", "groups"), FD_CASES, ids=[_ids(c) for c in FD_CASES])
def test_gradients_match_finite_differences(shape, axis, groups, epsilon, rng):
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    x = 2.0 + rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 1.5, cshape)
    beta = rng.standard_normal(cshape)
    w = rng.standard_normal(shape)  # loss = sum(w * y), so dy = w

    def loss(x_=x, gamma_=gamma, beta_=beta):
        return float(np.sum(w * group_norm(x_, groups, gamma_, beta_, axis=axis, epsilon=epsilon)))

    _, mean, rstd = group_norm(
        x, groups, gamma, beta, axis=axis, epsilon=epsilon, return_stats=True
    )
    dx, dgamma, dbeta = group_norm_backward(w, x, mean, rstd, groups, gamma, axis=axis)
    assert dx.shape == shape and dgamma.shape == cshape and dbeta.shape == cshape

    fd_x = central_difference(lambda a: loss(x_=a), x)
    fd_g = central_difference(lambda a: loss(gamma_=a), gamma)
    fd_b = central_difference(lambda a: loss(beta_=a), beta)
    np.testing.assert_allclose(dx, fd_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dgamma, fd_g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dbeta, fd_b, rtol=1e-6, atol=1e-7)


def test_gradients_without_gamma_match_finite_differences(rng):
    shape, axis, groups = (2, 6, 3), 1, 3
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape)
    _, mean, rstd = group_norm(x, groups, axis=axis, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(w, x, mean, rstd, groups, axis=axis)
    fd_x = central_difference(lambda a: float(np.sum(w * group_norm(a, groups, axis=axis))), x)
    np.testing.assert_allclose(dx, fd_x, rtol=1e-6, atol=1e-7)
    ones = np.ones(6)
    fd_g = central_difference(
        lambda a: float(np.sum(w * group_norm(x, groups, a, axis=axis))), ones
    )
    np.testing.assert_allclose(dgamma, fd_g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dbeta, w.sum(axis=(0, 2)), rtol=1e-12)


def test_gradient_of_nonlinear_loss(rng):
    # A loss that is not linear in y: dy = 2*(y - t).
    shape, axis, groups = (2, 4, 5), -1, 5
    x = rng.standard_normal(shape)
    t = rng.standard_normal(shape)
    gamma = rng.standard_normal(5)
    y, mean, rstd = group_norm(x, groups, gamma, axis=axis, return_stats=True)
    dx, dgamma, _ = group_norm_backward(2 * (y - t), x, mean, rstd, groups, gamma, axis=axis)
    fd_x = central_difference(
        lambda a: float(np.sum((group_norm(a, groups, gamma, axis=axis) - t) ** 2)), x
    )
    fd_g = central_difference(
        lambda a: float(np.sum((group_norm(x, groups, a, axis=axis) - t) ** 2)), gamma
    )
    np.testing.assert_allclose(dx, fd_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dgamma, fd_g, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# dx sums to zero over each group


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "axis", "groups"),
    [
        ((3, 8, 5), 1, 4),
        ((3, 5, 8), -1, 2),
        ((2, 4, 8, 3), 2, 4),
        ((2, 16, 32, 32), 1, 8),
        ((2, 32, 32, 32), -1, 8),
    ],
)
def test_dx_sums_to_zero_within_each_group(shape, axis, groups, dtype, rng):
    x = (10.0 + rng.standard_normal(shape)).astype(dtype)
    dy = (1.0 + rng.standard_normal(shape)).astype(dtype)
    C = shape[axis]
    _, mean, rstd = group_norm(x, groups, axis=axis, return_stats=True)
    dx, _, _ = group_norm_backward(dy, x, mean, rstd, groups, np.ones(C, dtype), axis=axis)
    # (N, G, rest) view of dx with the channel axis split into groups.
    moved = np.moveaxis(dx.astype(np.float64), axis, 1)
    grouped = moved.reshape(shape[0], groups, -1)
    sums = grouped.sum(axis=2)
    scale = np.abs(grouped).sum(axis=2)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.all(np.abs(sums) <= tol * scale)
    assert np.all(scale > 0)


# ----------------------------------------------------------------------------------------------
# against the closed-form reference (all kernel paths)


REF_CASES = [
    ((2, 8, 6, 5), 1, 4),
    ((2, 6, 5, 8), -1, 4),
    ((2, 6, 8, 5), 2, 4),
    ((4, 16, 32, 32), 1, 4),  # slab, parallel fused
    ((1, 8, 64, 128), 1, 2),  # slab, parallel chunked, two pieces per slab
    ((2, 16, 16, 256), -1, 32),  # rows, parallel
    ((4, 512, 8, 8), 2, 4),  # middle axis, rows, parallel
    ((2, 32, 64, 32), 2, 32),  # middle axis, slab, parallel
    ((64, 1024), -1, 32),  # 2-D
    ((2, 3, 4, 5), (2, 3), 5),
    ((2, 4, 3, 6), (3, 1), 4),
]


@pytest.mark.parametrize(("shape", "axis", "groups"), REF_CASES, ids=[_ids(c) for c in REF_CASES])
def test_backward_matches_reference_float64(shape, axis, groups, rng):
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    x = 3.0 + rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 1.5, cshape)
    _, mean, rstd = group_norm(x, groups, gamma, axis=axis, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    dxr, dgr, dbr = group_norm_backward_ref(dy, x, groups, gamma, axis=axis)
    assert dx.dtype == np.float64 and dgamma.dtype == np.float64 and dbeta.dtype == np.float64
    np.testing.assert_allclose(dx, dxr, rtol=1e-9, atol=1e-11 * np.abs(dxr).max())
    np.testing.assert_allclose(dgamma, dgr, rtol=1e-9, atol=1e-11 * np.abs(dgr).max())
    np.testing.assert_allclose(dbeta, dbr, rtol=1e-9, atol=1e-11 * np.abs(dbr).max())


@pytest.mark.parametrize(
    ("shape", "axis", "groups"), REF_CASES[:8], ids=[_ids(c) for c in REF_CASES[:8]]
)
def test_backward_matches_reference_float32(shape, axis, groups, rng):
    C = shape[axis]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    _, mean, rstd = group_norm(x, groups, gamma, axis=axis, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    dxr, dgr, dbr = group_norm_backward_ref(dy, x, groups, gamma, axis=axis)
    assert dx.dtype == np.float32 and dgamma.dtype == np.float32 and dbeta.dtype == np.float32
    for got, ref in ((dx, dxr), (dgamma, dgr), (dbeta, dbr)):
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_gamma_none_equals_gamma_ones(rng):
    x = rng.standard_normal((3, 8, 5)).astype(np.float32)
    dy = rng.standard_normal((3, 8, 5)).astype(np.float32)
    _, mean, rstd = group_norm(x, 4, axis=1, return_stats=True)
    a = group_norm_backward(dy, x, mean, rstd, 4, axis=1)
    b = group_norm_backward(dy, x, mean, rstd, 4, np.ones(8, np.float32), axis=1)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
        assert u.dtype == v.dtype == np.float32


def test_parameter_gradient_dtypes_follow_gamma(rng):
    x = rng.standard_normal((2, 8, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 5)).astype(np.float32)
    _, mean, rstd = group_norm(x, 4, axis=1, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, 4, np.ones(8), axis=1)
    assert dx.dtype == np.float32
    assert dgamma.dtype == np.float64 and dbeta.dtype == np.float64
    dxr, dgr, dbr = group_norm_backward_ref(dy, x, 4, axis=1)
    assert np.abs(dgamma - dgr).max() <= 1e-5 * np.abs(dgr).max()
    assert np.abs(dbeta - dbr).max() <= 1e-5 * np.abs(dbr).max()


def test_group_size_and_groups_minus_one_in_backward(rng):
    x = rng.standard_normal((2, 6, 4))
    dy = rng.standard_normal((2, 6, 4))
    _, mean, rstd = group_norm(x, 3, axis=1, return_stats=True)
    a = group_norm_backward(dy, x, mean, rstd, 3, axis=1)
    b = group_norm_backward(dy, x, mean, rstd, group_size=2, axis=1)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    _, mean6, rstd6 = group_norm(x, -1, axis=1, return_stats=True)
    c = group_norm_backward(dy, x, mean6, rstd6, -1, axis=1)
    d = group_norm_backward(dy, x, mean6, rstd6, 6, axis=1)
    for u, v in zip(c, d, strict=True):
        np.testing.assert_array_equal(u, v)
    dxr, _, _ = group_norm_backward_ref(dy, x, 6, axis=1)
    np.testing.assert_allclose(c[0], dxr, rtol=1e-9, atol=1e-12)


def test_backward_does_not_modify_inputs(rng):
    x = rng.standard_normal((2, 8, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 5)).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    _, mean, rstd = group_norm(x, 4, gamma, axis=1, return_stats=True)
    copies = [a.copy() for a in (x, dy, gamma, mean, rstd)]
    group_norm_backward(dy, x, mean, rstd, 4, gamma, axis=1)
    for before, after in zip(copies, (x, dy, gamma, mean, rstd), strict=True):
        np.testing.assert_array_equal(before, after)
