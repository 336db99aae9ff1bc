"""``group_norm_backward(..., out=)``: dx written into a preallocated array, dy, or x itself."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import group_norm, group_norm_backward

CASES = [((2, 8, 8, 32), -1), ((4, 64, 32, 32), 1), ((4, 32, 32, 64), -1), ((3, 12), -1)]


@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("where", ["fresh", "dy", "x", "strided"])
def test_backward_out_matches_the_allocating_call(shape, axis, where, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    _, mean, rstd = group_norm(x, 4, axis=axis, return_stats=True)
    expected = group_norm_backward(dy, x, mean, rstd, 4, axis=axis)
    x_in, dy_in = x.copy(), dy.copy()
    if where == "fresh":
        out = np.empty_like(x)
    elif where == "dy":
        out = dy_in
    elif where == "x":
        out = x_in
    else:  # a non-contiguous destination: computed elsewhere, then copied in
        out = np.empty(shape[:-1] + (2 * shape[-1],), np.float32)[..., ::2]
    dx, dgamma, dbeta = group_norm_backward(dy_in, x_in, mean, rstd, 4, axis=axis, out=out)
    assert dx is out
    np.testing.assert_array_equal(dx, expected[0])
    np.testing.assert_array_equal(dgamma, expected[1])
    np.testing.assert_array_equal(dbeta, expected[2])


def test_backward_out_is_validated_before_anything_is_written(rng):
    x = rng.standard_normal((2, 8, 4)).astype(np.float32)
    _, mean, rstd = group_norm(x, 2, return_stats=True)
    out = np.full_like(x, 7.0)
    with pytest.raises(TypeError, match="`out`"):
        group_norm_backward(x, x, mean, rstd, 2, out=out.astype(np.float64))
    with pytest.raises(ValueError, match="`out`"):
        group_norm_backward(x, x, mean, rstd, 2, out=out[:1])
    with pytest.raises(ValueError, match="`gamma`"):
        group_norm_backward(x, x, mean, rstd, 2, np.ones(3), out=out)
    assert np.all(out == 7.0)
