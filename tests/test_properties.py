"""Property-based tests (hypothesis) against the float64 reference.

Random ranks (2-5), shapes, channel axes (an int, or a tuple of one to three axes in any order),
``groups`` (a divisor of the channel count, or -1) or ``group_size``, dtypes (float16/32/64),
offsets and scales, optional gamma/beta, several epsilons; some examples are big enough
(`GROUP_NORM_PARALLEL_MIN_ELEMENTS`) to take the parallel kernels. Random composite functions
through the tape are checked against finite differences with :func:`numba_gn.autograd.gradcheck`.

Profiles: ``ci`` (the default: bounded example counts, derandomized so CI is reproducible, no
example database) and ``thorough`` (ten times the examples, random), chosen with
``HYPOTHESIS_PROFILE=thorough``. Arrays are drawn from a NumPy generator seeded by hypothesis
(cheap, and shrinking still works on shapes, axes and parameters).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from reference import group_norm_backward_ref, group_norm_ref

from numba_gn import _knobs, group_norm, group_norm_backward
from numba_gn import autograd as ag

# On a failure, hypothesis's pytest plugin imports its patch writer, which imports libcst, which
# imports mypy_extensions.TypedDict: a DeprecationWarning that ``filterwarnings = error`` turns
# into a pytest INTERNALERROR hiding the falsifying example. Import it here, warnings ignored,
# so the plugin finds it already loaded.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin then skips the patch
        pass

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "thorough"):
    raise ValueError(f"HYPOTHESIS_PROFILE must be 'ci' or 'thorough', got {PROFILE!r}")
SCALE = 1 if PROFILE == "ci" else 10

#: examples per test in the ci profile (thorough: x10); about 320 in all.
BUDGET = {"forward": 130, "backward": 70, "invariants": 40, "tape": 60, "tape_layer": 20}


def budget(name: str) -> settings:
    """The active profile with the example count for test ``name``."""
    return settings(settings.get_profile(PROFILE), max_examples=BUDGET[name] * SCALE)


DTYPES = ("float16", "float32", "float64")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def problems(draw, max_side: int = 6, allow_big: bool = True, dtypes=DTYPES):
    """A random group-norm call: shape, axis, groups/group_size, dtype, data parameters."""
    ndim = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 3))] + [draw(st.integers(1, max_side)) for _ in range(ndim - 1)]
    if allow_big and draw(st.integers(0, 9)) == 0:  # ~10%: parallel kernels
        k = draw(st.integers(1, ndim - 1))
        big = _knobs.GROUP_NORM_PARALLEL_MIN_ELEMENTS
        shape[k] = max(shape[k], -(-big // math.prod(shape[:k] + shape[k + 1 :])))
    shape = tuple(shape)
    if draw(st.booleans()):
        a = draw(st.integers(1, ndim - 1))
        axis = a - ndim if draw(st.booleans()) else a  # negative or positive
    else:
        k = draw(st.integers(1, min(3, ndim - 1)))
        axis = tuple(draw(st.permutations(range(1, ndim)))[:k])
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    C = math.prod(cshape)
    how = draw(st.sampled_from(["groups", "minus1", "group_size"]))
    if how == "groups":
        groups, group_size, G = (g := draw(st.sampled_from(_divisors(C)))), None, g
    elif how == "minus1":
        groups, group_size, G = -1, None, C
    else:
        gs = draw(st.sampled_from(_divisors(C)))
        groups, group_size, G = 32, gs, C // gs  # groups left at its default
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
    # offset/scale ratio bounded by what each precision can resolve
    ratios = {"float16": [0, 1, 10], "float32": [0, 1, 1e2, 1e4], "float64": [0, 1, 1e4, 1e6]}
    offset = scale * draw(st.sampled_from(ratios[dtype])) * draw(st.sampled_from([1, -1]))
    if dtype == "float16":
        assume(abs(offset) + 8 * scale < 6e4)
    return {
        "shape": shape,
        "axis": axis,
        "cshape": cshape,
        "groups": groups,
        "group_size": group_size,
        "G": G,
        "dtype": dtype,
        "scale": scale,
        "offset": offset,
        "affine": draw(st.sampled_from(["none", "gamma", "both"])),
        "epsilon": draw(st.sampled_from([1e-3, 1e-5, 0.1])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _arrays(p):
    rng = np.random.default_rng(p["seed"])
    x = (p["offset"] + p["scale"] * rng.standard_normal(p["shape"])).astype(p["dtype"])
    gamma = beta = None
    if p["affine"] in ("gamma", "both"):
        gamma = rng.uniform(-2.0, 2.0, p["cshape"])
    if p["affine"] == "both":
        beta = rng.standard_normal(p["cshape"])
    dy = rng.standard_normal(p["shape"]).astype(p["dtype"])
    return x, gamma, beta, dy


def _call_kwargs(p):
    kw = {"axis": p["axis"]}
    if p["group_size"] is not None:
        kw["group_size"] = p["group_size"]
    return kw


# Forward tolerance on y (absolute, times 1 + |y_ref|): float16 output rounding is 2**-11
# relative; float32 meets the 1e-5 target on N(0,1) data at offsets up to 1e6 (the ratio here
# is at most 1e4, but gamma goes up to 2 and epsilon down to 1e-5); float64 ~1e-16 * ratio.
Y_TOL = {"float16": 2e-3, "float32": 2e-5, "float64": 1e-9}
RSTD_TOL = {"float16": 1e-5, "float32": 1e-5, "float64": 1e-9}


@budget("forward")
@given(p=problems())
def test_forward_matches_float64_reference(p):
    x, gamma, beta, _ = _arrays(p)
    big = x.size >= _knobs.GROUP_NORM_PARALLEL_MIN_ELEMENTS
    event(f"kernels: {'parallel' if big else 'serial'}")
    event(f"axis: {type(p['axis']).__name__}, dtype: {p['dtype']}")
    x_before = x.copy()
    y, mean, rstd = group_norm(
        x, p["groups"], gamma, beta, epsilon=p["epsilon"], return_stats=True, **_call_kwargs(p)
    )
    yr, mr, rr = group_norm_ref(x, p["G"], gamma, beta, axis=p["axis"], epsilon=p["epsilon"])
    assert y.shape == x.shape and y.dtype == x.dtype
    assert mean.shape == rstd.shape == (x.shape[0], p["G"]) and mean.dtype == np.float64
    np.testing.assert_array_equal(x, x_before)
    tol = Y_TOL[p["dtype"]]
    err = np.abs(y.astype(np.float64) - yr) / (1.0 + np.abs(yr))
    assert np.all(np.isfinite(y)) and float(err.max()) <= tol, float(err.max())
    # statistics of the stored (rounded) input, in float64
    spread = abs(p["offset"]) + p["scale"]
    assert np.allclose(mean, mr, rtol=0, atol=1e-6 * spread + 1e-12)
    assert np.allclose(rstd, rr, rtol=RSTD_TOL[p["dtype"]], atol=0)


DX_TOL = {"float16": 2e-2, "float32": 2e-4, "float64": 1e-8}


@budget("backward")
@given(p=problems(max_side=5))
def test_backward_matches_float64_reference(p):
    assume(abs(p["offset"]) <= 1e2 * p["scale"] or p["dtype"] == "float64")
    x, gamma, _, dy = _arrays(p)
    y, mean, rstd = group_norm(x, p["groups"], gamma, return_stats=True, **_call_kwargs(p))
    dx, dg, db = group_norm_backward(dy, x, mean, rstd, p["groups"], gamma, **_call_kwargs(p))
    dxr, dgr, dbr = group_norm_backward_ref(dy, x, p["G"], gamma, axis=p["axis"])
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert dg.shape == db.shape == p["cshape"]
    tol = DX_TOL[p["dtype"]]
    # Error scales: the size of the terms each result sums (a gradient that cancels to ~0 is
    # judged against its terms, not against itself).
    dy64 = dy.astype(np.float64)
    gmax = 1.0 if gamma is None else float(np.abs(gamma).max())
    xhat = group_norm_ref(x, p["G"], axis=p["axis"])[0]
    _, _, db_abs = group_norm_backward_ref(np.abs(dy64), x, p["G"], None, axis=p["axis"])
    dx_scale = float(rstd.max()) * gmax * float(np.abs(dy64).max())
    db_scale = np.asarray(db_abs, np.float64) + 1e-30
    dg_scale = db_scale * max(1.0, float(np.abs(xhat).max()))

    assert np.isfinite(dx).all()
    errs = (
        float(np.max(np.abs(dx.astype(np.float64) - dxr))) / dx_scale,
        float(np.max(np.abs(dg.astype(np.float64) - dgr) / dg_scale)),
        float(np.max(np.abs(db.astype(np.float64) - dbr) / db_scale)),
    )
    assert max(errs) <= tol, errs


@budget("invariants")
@given(p=problems(max_side=5, allow_big=False, dtypes=("float32", "float64")), data=st.data())
def test_batch_independence_and_layout_invariance(p, data):
    """Each sample is normalised on its own; the memory layout does not change the values."""
    x, gamma, beta, _ = _arrays(p)
    kw = _call_kwargs(p)
    y = group_norm(x, p["groups"], gamma, beta, **kw)
    i = data.draw(st.integers(0, x.shape[0] - 1))
    yi = group_norm(x[i : i + 1], p["groups"], gamma, beta, **kw)
    np.testing.assert_array_equal(yi[0], y[i])
    # the same values in another memory order (Fortran, or a reversed-stride view)
    xf = np.asfortranarray(x)
    yf = group_norm(xf, p["groups"], gamma, beta, **kw)
    tol = 1e-12 if p["dtype"] == "float64" else 1e-5
    np.testing.assert_allclose(yf, y, rtol=tol, atol=tol * (1 + np.abs(y).max()))
    # out= the input itself (in place) gives the same bits as a fresh output
    xc = x.copy()
    group_norm(xc, p["groups"], gamma, beta, out=xc, **kw)
    np.testing.assert_array_equal(xc, y)


# ----------------------------------------------------------------------------------------------
# Random composite functions through the tape, against finite differences

_PRE = {
    "identity": lambda t, w: t,
    "tanh": lambda t, w: ag.tanh(t),
    "affine": lambda t, w: t * 1.7 - 0.3,
    "square": lambda t, w: t * t,
    "exp": lambda t, w: ag.exp(t * 0.3),
    "mul_w": lambda t, w: t * w,
}
_POST = {
    "identity": lambda t, w: t,
    "silu": lambda t, w: ag.silu(t),
    "sigmoid": lambda t, w: ag.sigmoid(t),
    "square": lambda t, w: ag.square(t),
    "tanh_mul": lambda t, w: ag.tanh(t) * w,
    "softmax_last": lambda t, w: ag.softmax(t, axis=-1),
    "mean_sqrt": lambda t, w: ag.sqrt(ag.mean(t * t, axis=-1) + 1.0),
    "gelu": lambda t, w: ag.gelu(t),
}


@budget("tape")
@given(
    p=problems(max_side=4, allow_big=False, dtypes=("float64",)),
    pre=st.sampled_from(sorted(_PRE)),
    post=st.sampled_from(sorted(_POST)),
    twice=st.booleans(),
)
def test_composite_gradients_match_finite_differences(p, pre, post, twice):
    assume(math.prod(p["shape"]) <= 72)
    assume(abs(p["offset"]) <= 10 * p["scale"])
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal(p["shape"]) * 1.5
    gamma = rng.uniform(0.5, 1.5, p["cshape"])
    beta = rng.standard_normal(p["cshape"])
    w = rng.standard_normal(p["shape"])
    kw = _call_kwargs(p)
    groups, eps = p["groups"], p["epsilon"]

    def f(xt, gt, bt):
        h = _PRE[pre](xt, w)
        h = ag.group_norm(h, groups, gt, bt, epsilon=eps, **kw)
        if twice:  # a second normalisation (instance norm on the last axis) on top
            h = ag.group_norm(h * w + 0.5, -1, None, None, epsilon=eps, axis=-1)
        return _POST[post](h, w)

    ag.gradcheck(f, [x, gamma, beta], eps=1e-6, atol=1e-5, rtol=1e-3)


@budget("tape_layer")
@given(
    p=problems(max_side=4, allow_big=False, dtypes=("float64",)),
    post=st.sampled_from(["silu", "tanh_mul"]),
)
def test_layer_gradients_match_finite_differences(p, post):
    GroupNormalization = pytest.importorskip("numba_gn.layers").GroupNormalization
    assume(math.prod(p["shape"]) <= 72)
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal(p["shape"])
    w = rng.standard_normal(p["shape"])
    layer = GroupNormalization(
        groups=p["groups"],
        axis=p["axis"],
        epsilon=p["epsilon"],
        group_size=p["group_size"],
        dtype="float64",
    )
    layer(x)
    gamma, beta = rng.uniform(0.5, 1.5, p["cshape"]), rng.standard_normal(p["cshape"])
    layer.set_weights([gamma, beta])
    # d/dx through the layer against finite differences; d/dgamma, d/dbeta through the tape
    # against the functional backward (exact same arithmetic).
    ag.gradcheck(lambda xt: _POST[post](layer(xt), w), [x], eps=1e-6, atol=1e-5, rtol=1e-3)
    xt = ag.Tensor(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        loss = ag.sum(layer(xt) * w)
    dx, dg, db = tape.gradient(loss, [xt, *layer.trainable_weights])
    y, m, r = group_norm(
        x, p["groups"], gamma, beta, epsilon=p["epsilon"], return_stats=True, **_call_kwargs(p)
    )
    ex, eg, eb = group_norm_backward(w, x, m, r, p["groups"], gamma, **_call_kwargs(p))
    np.testing.assert_allclose(dx, ex, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, eg, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, eb, rtol=1e-10, atol=1e-12)


def test_profiles_are_registered():
    assert settings.get_profile("ci").deadline is None
    assert settings.get_profile("thorough").deadline is None
    assert sum(BUDGET.values()) <= 400  # "a few hundred examples" in CI
