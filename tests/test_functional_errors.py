"""Bad input gets a ValueError/TypeError naming the argument and the value, and changes nothing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from numba_gn import group_norm, group_norm_backward

ERR = (ValueError, TypeError)


@pytest.fixture
def x():
    return np.linspace(-1.0, 1.0, 2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)


def _stats(x, groups=4, axis=-1):
    _, mean, rstd = group_norm(x, groups, axis=axis, return_stats=True)
    return mean, rstd


# ----------------------------------------------------------------------------------------------
# groups / group_size


@pytest.mark.parametrize(
    ("groups", "pattern"),
    [
        (3, r"groups.*\b3\b"),  # does not divide 8
        (5, r"groups.*\b5\b"),
        (16, r"groups.*\(16\).*more than.*channels \(8\)"),  # more groups than channels
        (0, r"argument `groups`.*groups=0"),
        (-2, r"argument `groups`.*groups=-2"),
        (1.5, r"argument `groups`.*groups=1\.5"),
        ("32", r"argument `groups`.*groups='32'"),
        (True, r"argument `groups`.*groups=True"),
        (None, r"argument `groups`.*groups=None"),
        (4.0, r"argument `groups`.*groups=4\.0"),
    ],
)
def test_bad_groups(x, groups, pattern):
    with pytest.raises(ValueError, match=pattern):
        group_norm(x, groups)
    with pytest.raises(ValueError, match=pattern):
        group_norm_backward(x, x, *_stats(x), groups)


def test_groups_not_dividing_names_channels_and_groups(x):
    with pytest.raises(ValueError, match=r"channels \(8\).*`groups`=3") as info:
        group_norm(x, 3)
    assert "8" in str(info.value) and "3" in str(info.value)


def test_numpy_integer_groups_are_accepted(x):
    np.testing.assert_array_equal(group_norm(x, np.int64(4)), group_norm(x, 4))


@pytest.mark.parametrize(
    ("groups", "group_size", "pattern"),
    [
        (2, 2, r"`groups`=2 and `group_size`=2 are inconsistent"),  # 8 // 2 == 4 groups, not 2
        (8, 4, r"`groups`=8 and `group_size`=4"),
        (-1, 2, r"`groups`=-1 and `group_size`=2"),
    ],
)
def test_groups_and_group_size_inconsistent(x, groups, group_size, pattern):
    with pytest.raises(ValueError, match=pattern):
        group_norm(x, groups, group_size=group_size)
    with pytest.raises(ValueError, match=pattern):
        group_norm_backward(x, x, *_stats(x), groups, group_size=group_size)


@pytest.mark.parametrize(
    ("group_size", "pattern"),
    [
        (0, r"argument `group_size`.*group_size=0"),
        (-1, r"argument `group_size`.*group_size=-1"),
        (3, r"`group_size`=3 must divide.*channels \(8\)"),
        (16, r"`group_size`=16 must divide"),
        (2.0, r"argument `group_size`.*group_size=2\.0"),
        (True, r"argument `group_size`.*group_size=True"),
        ("2", r"argument `group_size`.*group_size='2'"),
    ],
)
def test_bad_group_size(x, group_size, pattern):
    with pytest.raises(ValueError, match=pattern):
        group_norm(x, group_size=group_size)


# ----------------------------------------------------------------------------------------------
# axis


@pytest.mark.parametrize(
    ("axis", "exc", "pattern"),
    [
        (3, ValueError, r"`axis`=3 is out of range"),
        (-4, ValueError, r"`axis`=-4 is out of range"),
        (0, ValueError, r"`axis`=0 .*batch axis"),
        (-3, ValueError, r"`axis`=-3 .*batch axis"),
        ((1, 1), ValueError, r"`axis`=\(1, 1\) repeats"),
        ((1, -2), ValueError, r"`axis`=\(1, -2\) repeats"),
        ((0, 1), ValueError, r"`axis`=\(0, 1\) .*batch axis"),
        ((1, 5), ValueError, r"`axis`=\(1, 5\) is out of range"),
        (1.0, TypeError, r"`axis`.*axis=1\.0"),
        ("1", TypeError, r"`axis`.*axis='1'"),
        (None, TypeError, r"`axis`.*axis=None"),
        ((), TypeError, r"`axis`.*axis=\(\)"),
        (True, TypeError, r"`axis`.*axis=True"),
        ((1, 2.0), TypeError, r"`axis`.*axis=\(1, 2\.0\)"),
    ],
)
def test_bad_axis(x, axis, exc, pattern):
    with pytest.raises(exc, match=pattern):
        group_norm(x, 1, axis=axis)
    with pytest.raises(exc, match=pattern):
        group_norm_backward(x, x, *_stats(x, 1), 1, axis=axis)


# ----------------------------------------------------------------------------------------------
# gamma / beta


@pytest.mark.parametrize("name", ["gamma", "beta"])
@pytest.mark.parametrize(
    ("value", "exc", "pattern"),
    [
        (np.ones(4, np.float32), ValueError, r"shape \(8,\).*got shape \(4,\)"),
        (np.ones((8, 1), np.float32), ValueError, r"got shape \(8, 1\)"),
        (np.ones(3, np.float32), ValueError, r"got shape \(3,\)"),
        (np.float32(1.0), ValueError, r"got shape \(\)"),
        (np.ones(8, complex), TypeError, r"dtype complex128"),
        (np.ones(8, bool), TypeError, r"dtype bool"),
        (np.array(["a"] * 8), TypeError, r"dtype <U1"),
    ],
)
def test_bad_gamma_beta(x, name, value, exc, pattern):
    with pytest.raises(exc, match=rf"`{name}`.*{pattern}"):
        group_norm(x, 4, **{name: value})
    if name == "gamma":
        with pytest.raises(exc, match=rf"`{name}`.*{pattern}"):
            group_norm_backward(x, x, *_stats(x), 4, value)


def test_gamma_with_tuple_axes_needs_the_axes_shape(x):
    with pytest.raises(ValueError, match=r"`gamma`.*shape \(3, 8\).*got shape \(24,\)"):
        group_norm(x, 4, np.ones(24), axis=(1, 2))
    with pytest.raises(ValueError, match=r"`beta`.*shape \(8, 3\).*got shape \(3, 8\)"):
        group_norm(x, 4, None, np.ones((3, 8)), axis=(2, 1))


# ----------------------------------------------------------------------------------------------
# x


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((2, 8), np.int32),
        np.ones((2, 8), np.int64),
        np.ones((2, 8), np.uint8),
        np.ones((2, 8), bool),
        np.ones((2, 8), np.complex64),
        np.ones((2, 8), np.complex128),
        np.ones((2, 8), object),
        np.array([["a"] * 8] * 2),
    ],
    ids=lambda a: str(a.dtype),
)
def test_bad_x_dtype(bad):
    pattern = rf"`x`.*dtype {re.escape(str(bad.dtype))}"
    with pytest.raises(TypeError, match=pattern):
        group_norm(bad, 4)
    with pytest.raises(TypeError, match=pattern):
        group_norm_backward(np.ones((2, 8), np.float32), bad, np.zeros((2, 4)), np.ones((2, 4)), 4)


def test_ragged_x(x):
    with pytest.raises(ERR, match=r"`x`"):
        group_norm([[1.0, 2.0], [3.0]], 1)


@pytest.mark.parametrize("bad", [np.ones(8, np.float32), np.float32(1.0), np.ones(0)])
def test_x_with_fewer_than_two_dims(bad):
    shape = re.escape(str(np.shape(bad)))
    with pytest.raises(ValueError, match=rf"`x`.*2 dimensions.*{shape}"):
        group_norm(bad, 1)
    with pytest.raises(ValueError, match=rf"`x`.*2 dimensions.*{shape}"):
        group_norm_backward(bad, bad, np.zeros((1, 1)), np.ones((1, 1)), 1)


# ----------------------------------------------------------------------------------------------
# out


@pytest.mark.parametrize(
    ("out", "exc", "pattern"),
    [
        (np.empty((2, 3, 4), np.float32), ValueError, r"`out`.*shape \(2, 3, 8\).*\(2, 3, 4\)"),
        (np.empty((2, 24), np.float32), ValueError, r"`out`.*\(2, 24\)"),
        (np.empty((3, 2, 8), np.float32), ValueError, r"`out`.*\(3, 2, 8\)"),
        (np.empty((2, 3, 8), np.float64), TypeError, r"`out`.*dtype float32.*float64"),
        (np.empty((2, 3, 8), np.float16), TypeError, r"`out`.*float16"),
        (np.empty((2, 3, 8), np.int32), TypeError, r"`out`.*int32"),
        ([[0.0] * 8] * 3, TypeError, r"`out`.*list"),
    ],
)
def test_bad_out(x, out, exc, pattern):
    with pytest.raises(exc, match=pattern):
        group_norm(x, 4, out=out)


def test_read_only_out(x):
    out = np.zeros_like(x)
    out.setflags(write=False)
    with pytest.raises(ValueError, match=r"`out`.*read-only"):
        group_norm(x, 4, out=out)
    np.testing.assert_array_equal(out, np.zeros_like(x))


# ----------------------------------------------------------------------------------------------
# epsilon


@pytest.mark.parametrize(
    ("eps", "exc", "pattern"),
    [
        (-1e-3, ValueError, r"`epsilon`.*epsilon=-0\.001"),
        (-1e-300, ValueError, r"`epsilon`.*epsilon=-1e-300"),
        (float("nan"), ValueError, r"`epsilon`.*epsilon=nan"),
        (float("inf"), ValueError, r"`epsilon`.*epsilon=inf"),
        (-float("inf"), ValueError, r"`epsilon`.*epsilon=-inf"),
        ("1e-3", TypeError, r"`epsilon`.*epsilon='1e-3'"),
        (None, TypeError, r"`epsilon`.*epsilon=None"),
        (1j, TypeError, r"`epsilon`.*epsilon=1j"),
        (True, TypeError, r"`epsilon`.*epsilon=True"),
    ],
)
def test_bad_epsilon(x, eps, exc, pattern):
    with pytest.raises(exc, match=pattern):
        group_norm(x, 4, epsilon=eps)


def test_zero_epsilon_is_allowed(x):
    y = group_norm(x, 4, epsilon=0.0)
    assert np.isfinite(y).all()


# ----------------------------------------------------------------------------------------------
# backward: mean / rstd / dy


@pytest.mark.parametrize("which", ["mean", "rstd"])
@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((2, 2), r"shape \(2, 4\).*got shape \(2, 2\)"),
        ((4, 2), r"got shape \(4, 2\)"),
        ((8,), r"got shape \(8,\)"),
        ((2, 4, 1), r"got shape \(2, 4, 1\)"),
        ((), r"got shape \(\)"),
    ],
)
def test_backward_bad_stats_shape(x, which, shape, pattern):
    mean, rstd = _stats(x)
    stats = {"mean": mean, "rstd": rstd}
    stats[which] = np.ones(shape)
    with pytest.raises(ValueError, match=rf"`{which}`.*{pattern}"):
        group_norm_backward(x, x, stats["mean"], stats["rstd"], 4)


@pytest.mark.parametrize("which", ["mean", "rstd"])
def test_backward_bad_stats_dtype(x, which):
    mean, rstd = _stats(x)
    stats = {"mean": mean, "rstd": rstd}
    stats[which] = np.ones((2, 4), np.int64)
    with pytest.raises(TypeError, match=rf"`{which}`.*int64"):
        group_norm_backward(x, x, stats["mean"], stats["rstd"], 4)


@pytest.mark.parametrize(
    ("dy", "exc", "pattern"),
    [
        (np.ones((2, 3, 4), np.float32), ValueError, r"`dy`.*\(2, 3, 8\).*\(2, 3, 4\)"),
        (np.ones((2, 24), np.float32), ValueError, r"`dy`.*\(2, 24\)"),
        (np.ones((3, 8), np.float32), ValueError, r"`dy`.*\(3, 8\)"),
        (np.ones((2, 3, 8), np.int32), TypeError, r"`dy`.*int32"),
        (np.ones((2, 3, 8), complex), TypeError, r"`dy`.*complex128"),
    ],
)
def test_backward_bad_dy(x, dy, exc, pattern):
    mean, rstd = _stats(x)
    with pytest.raises(exc, match=pattern):
        group_norm_backward(dy, x, mean, rstd, 4)


# ----------------------------------------------------------------------------------------------
# a failing call changes nothing


def test_failing_call_leaves_out_untouched(x):
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="`gamma`"):
        group_norm(x, 4, np.ones(5, np.float32), out=out)
    np.testing.assert_array_equal(out, np.full_like(x, 7.0))
    with pytest.raises(ValueError, match="`beta`"):
        group_norm(x, 4, None, np.ones(5, np.float32), out=out)
    with pytest.raises(ValueError, match="`epsilon`"):
        group_norm(x, 4, epsilon=-1.0, out=out)
    with pytest.raises(ValueError, match="groups"):
        group_norm(x, 3, out=out)
    np.testing.assert_array_equal(out, np.full_like(x, 7.0))


def test_failing_in_place_call_leaves_x_untouched(x):
    before = x.copy()
    with pytest.raises(ValueError, match="`gamma`"):
        group_norm(x, 4, np.ones(5, np.float32), out=x)
    with pytest.raises(ValueError, match="`epsilon`"):
        group_norm(x, 4, epsilon=float("nan"), out=x)
    np.testing.assert_array_equal(x, before)
