"""Inputs that share memory with ``out``: the result is the one computed from copies.

NumPy's rule for ufuncs: ``np.add(a, b, out=a[::-1])`` behaves as if the inputs were copied
before anything is written. The kernels read ``gamma``, ``beta`` and the statistics while they
write ``out``, so a parameter that is a view of ``out`` used to be read after being
overwritten. Every input that can alias ``out`` (``x``, ``dy``, ``gamma``, ``beta``, ``mean``,
``rstd``) is checked here, directly and through random views of one buffer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import group_norm_backward_ref, group_norm_ref

from numba_gn import (
    group_norm,
    group_norm_backward,
    group_norm_masked,
    group_norm_masked_backward,
)

TOL = 1e-12  # float64 against the float64 reference on copies

# Small and deterministic: the same examples on every run, no example database.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL)


# -- the reproducers ---------------------------------------------------------------------------


def test_gamma_and_beta_views_of_out_that_is_x(rng):
    x = rng.standard_normal((3, 8))
    expected = group_norm_ref(x, 4, x[0].copy(), x[1].copy())[0]
    buf = x.copy()
    y = group_norm(buf, 4, gamma=buf[0], beta=buf[1], out=buf)
    assert y is buf
    _close(y, expected)


def test_gamma_view_of_out_with_separate_x(rng):
    x = rng.standard_normal((3, 8))
    buf = rng.standard_normal((3, 8))
    expected = group_norm_ref(x, 4, buf[0].copy())[0]
    x_before = x.copy()
    y = group_norm(x, 4, gamma=buf[0], out=buf)
    assert y is buf
    _close(y, expected)
    assert np.array_equal(x, x_before)


def test_backward_gamma_view_of_out_that_is_dy(rng):
    x = rng.standard_normal((3, 8))
    dy = rng.standard_normal((3, 8))
    gamma = dy[0].copy()
    _, mean, rstd = group_norm(x, 4, gamma, return_stats=True)
    ref = group_norm_backward_ref(dy, x, 4, gamma)
    buf = dy.copy()
    dx, dgamma, dbeta = group_norm_backward(buf, x, mean, rstd, 4, gamma=buf[0], out=buf)
    assert dx is buf
    for got, want in zip((dx, dgamma, dbeta), ref, strict=True):
        _close(got, want)


def test_backward_mean_and_rstd_views_of_out(rng):
    # (N, G) statistics stored in the first rows of dx's own buffer: out is (8, 4), G = 2.
    x = rng.standard_normal((8, 4))
    dy = rng.standard_normal((8, 4))
    _, mean, rstd = group_norm(x, 2, return_stats=True)
    ref = group_norm_backward_ref(dy, x, 2)
    buf = np.empty((8, 4))
    stats = buf.reshape(-1)[:32].reshape(2, 8, 2)  # stats[0] is mean, stats[1] rstd
    stats[0], stats[1] = mean, rstd
    dx, dgamma, dbeta = group_norm_backward(dy, x, stats[0], stats[1], 2, out=buf)
    assert dx is buf
    for got, want in zip((dx, dgamma, dbeta), ref, strict=True):
        _close(got, want)


def test_beta_view_of_out_in_a_channels_first_layout(rng):
    # Another memory layout (channel axis 1): same rule. beta lies in sample 0's part of out,
    # written before sample 1 reads beta.
    x = rng.standard_normal((2, 4, 5))
    buf = rng.standard_normal((2, 4, 5))
    beta = buf[0, 0, :4]
    expected = group_norm_ref(x, 2, None, beta.copy(), axis=1)[0]
    y = group_norm(x, 2, None, beta, axis=1, out=buf)
    assert y is buf
    _close(y, expected)


def test_masked_functions_leave_shared_inputs_alone(rng):
    # No `out` here, so nothing can be overwritten; the inputs must not be written either.
    buf = rng.standard_normal(64)
    x = buf[:24].reshape(3, 8)
    gamma, beta, dy = buf[4:12], buf[8:16], buf[16:40].reshape(3, 8)
    mask = np.ones((3,), bool)
    before = buf.copy()
    y, mean, rstd = group_norm_masked(x, mask, 4, gamma, beta)
    grads = group_norm_masked_backward(dy, x, mask, mean, rstd, 4, gamma)
    assert np.array_equal(buf, before)
    _close(y, group_norm_ref(x, 4, gamma, beta)[0])
    for got, want in zip(grads, group_norm_backward_ref(dy, x, 4, gamma), strict=True):
        _close(got, want)


def test_no_copy_of_parameters_without_aliasing(rng, monkeypatch):
    # The common case pays nothing: a float64 contiguous gamma disjoint from out is used as is.
    from numba_gn import _engine

    x = rng.standard_normal((3, 8))
    gamma = rng.standard_normal(8)
    seen = []
    real = _engine.forward

    def spy(xc, yc, canon, groups, g, b, eps, *epilogue):
        seen.append(np.shares_memory(g, gamma))
        return real(xc, yc, canon, groups, g, b, eps, *epilogue)

    monkeypatch.setattr(_engine, "forward", spy)
    group_norm(x, 4, gamma, out=np.empty_like(x))
    group_norm(x, 4, gamma)
    assert seen == [True, True]


# -- random views of one buffer ----------------------------------------------------------------

BUF_LEN = 160


@st.composite
def _views(draw, shapes: dict[str, tuple[int, ...]], can_be_none: tuple[str, ...] = ()):
    """For each named array: None, "fresh" (its own memory) or a view ``(offset, step, flip)``
    of the shared buffer; ``out`` may also be exactly ``x`` or ``dy`` (in-place)."""
    specs = {}
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        kinds = ["view", "view", "fresh"] + (["none"] if name in can_be_none else [])
        if name == "out":
            kinds += [k for k in ("same:x", "same:dy") if k[5:] in shapes]
        kind = draw(st.sampled_from(kinds))
        if kind == "view":
            step = draw(st.sampled_from([1, 1, 2]))
            offset = draw(st.integers(0, BUF_LEN - step * (n - 1) - 1))
            specs[name] = ("view", offset, step, draw(st.booleans()))
        else:
            specs[name] = (kind,)
    return specs


def _view(base, spec, shape):
    _, offset, step, flip = spec
    n = int(np.prod(shape))
    v = base[offset : offset + step * (n - 1) + 1 : step].reshape(shape)
    return v[::-1] if flip else v


def _arrays(specs, shapes, seed):
    """The buffer, the arrays, and for each array of the buffer the indices of its elements."""
    rng = np.random.default_rng(seed)
    buf = rng.standard_normal(BUF_LEN)
    index = np.arange(BUF_LEN)
    arrays, where = {}, {}
    for name, spec in specs.items():
        if spec[0] == "none":
            arrays[name] = None
        elif spec[0] == "fresh":
            arrays[name] = rng.standard_normal(shapes[name])
        elif spec[0] == "view":
            arrays[name] = _view(buf, spec, shapes[name])
            where[name] = _view(index, spec, shapes[name])
    for name, spec in specs.items():
        if spec[0].startswith("same:"):
            arrays[name] = arrays[spec[0][5:]]
            if spec[0][5:] in where:
                where[name] = where[spec[0][5:]]
    return buf, arrays, where


def _copies(arrays: dict) -> dict:
    return {k: None if v is None else v.copy() for k, v in arrays.items()}


def _expected_buffer(buf, where, result):
    """The buffer after the call: ``out``'s elements replaced, every other element kept."""
    expected = buf.copy()
    if "out" in where:
        expected[where["out"]] = result
    return expected


_LAYOUTS = st.sampled_from([((3, 8), -1, 4), ((2, 6), 1, 3), ((2, 3, 4), -1, 2), ((2, 4, 3), 1, 2)])


@SETTINGS
@given(layout=_LAYOUTS, data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_forward_views_of_one_buffer_match_copies(layout, data, seed):
    shape, axis, groups = layout
    cshape = (shape[axis],)
    shapes = {"x": shape, "gamma": cshape, "beta": cshape, "out": shape}
    specs = data.draw(_views(shapes, can_be_none=("gamma", "beta")))
    buf, a, where = _arrays(specs, shapes, seed)
    c = _copies(a)
    expected = group_norm(c["x"], groups, c["gamma"], c["beta"], axis=axis)
    expected_buf = _expected_buffer(buf, where, expected)
    y = group_norm(a["x"], groups, a["gamma"], a["beta"], axis=axis, out=a["out"])
    assert y is a["out"]
    _close(y, expected)
    _close(buf, expected_buf)  # nothing but out was written


@SETTINGS
@given(layout=_LAYOUTS, data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_backward_views_of_one_buffer_match_copies(layout, data, seed):
    shape, axis, groups = layout
    cshape = (shape[axis],)
    stats = (shape[0], groups)
    shapes = {
        "dy": shape,
        "x": shape,
        "mean": stats,
        "rstd": stats,
        "gamma": cshape,
        "out": shape,
    }
    specs = data.draw(_views(shapes, can_be_none=("gamma",)))
    buf, a, where = _arrays(specs, shapes, seed)
    c = _copies(a)
    expected = group_norm_backward(
        c["dy"], c["x"], c["mean"], c["rstd"], groups, c["gamma"], axis=axis
    )
    expected_buf = _expected_buffer(buf, where, expected[0])
    got = group_norm_backward(
        a["dy"], a["x"], a["mean"], a["rstd"], groups, a["gamma"], axis=axis, out=a["out"]
    )
    assert got[0] is a["out"]
    for g, e in zip(got, expected, strict=True):
        _close(g, e)
    _close(buf, expected_buf)


@pytest.mark.parametrize("name", ["gamma", "beta"])
def test_forward_error_after_alias_check_writes_nothing(rng, name):
    # A failing call changes nothing, aliasing or not: bad epsilon with gamma a view of out.
    buf = rng.standard_normal((3, 8))
    before = buf.copy()
    kwargs = {name: buf[0]}
    with pytest.raises(ValueError, match="`epsilon`"):
        group_norm(buf, 4, **kwargs, epsilon=-1.0, out=buf)
    assert np.array_equal(buf, before)
