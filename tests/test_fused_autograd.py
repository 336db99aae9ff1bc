"""The fused GroupNorm + residual + activation op on the tape: gradcheck and agreement.

`numba_gn.autograd.group_norm(..., residual=, activation=)` must be differentiable with respect
to x, gamma, beta and the residual (gradcheck in float64, for every activation, with and
without a residual), agree with the same computation as separate ops, and leave plain calls
(no residual, no activation) on the plain op.
"""

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn import functional
from numba_gn.autograd import Context, GradientTape, Tensor, gradcheck
from numba_gn.autograd.ops_groupnorm import FusedGroupNorm, GroupNorm
from numba_gn.numpy_reference import group_norm_numpy

# (activation, approximate): every activation the fused op has, both forms of gelu.
ACTIVATIONS = [
    (None, False),
    ("linear", False),
    ("relu", False),
    ("leaky_relu", False),
    ("silu", False),
    ("swish", False),
    ("sigmoid", False),
    ("gelu", False),
    ("gelu", True),
]
ACT_IDS = [f"{a}{'-tanh' if ap else ''}" for a, ap in ACTIVATIONS]

# (x shape, groups, axis): channels last, channels first, a tuple of channel axes.
SHAPES = [((2, 3, 4), 2, -1), ((2, 4, 3), 2, 1), ((2, 2, 3, 2), 3, (2, 3))]

# The fused kernels are compiled per activation, residual or not and kernel family (seconds
# each): every activation is checked with a residual on the row kernels (channels last, tuple
# axes), where each activation's own code runs; the channels-first shape and the calls without a
# residual, which change none of that code, take the identity and SiLU.
FEW = [(None, False), ("silu", False)]


def _gradcheck_cases():
    for shape, groups, axis in SHAPES:
        rows = axis != 1
        for residual in (False, True):
            for activation, approximate in ACTIVATIONS if rows and residual else FEW:
                act_id = f"{activation}{'-tanh' if approximate else ''}"
                yield pytest.param(
                    shape, groups, axis, residual, activation, approximate,
                    id=f"{shape}-{'residual' if residual else 'plain'}-{act_id}",
                )

# Finite differences step by 1e-6; a pre-activation this far from relu's and leaky_relu's kink
# at 0 keeps both sides of every difference on one side of it.
KINK_MARGIN = 0.02


def _channel_shape(shape, axis):
    axes = (axis,) if isinstance(axis, int) else axis
    return tuple(shape[a] for a in axes)


def _inputs(rng, shape, groups, axis, residual):
    """float64 (x, gamma, beta, residual|None) whose pre-activation avoids the kink at 0.

    Drawn again (from the seeded `rng`, so deterministically) until every element of
    `GN(x) * gamma + beta + residual` is at least `KINK_MARGIN` away from 0.
    """
    cshape = _channel_shape(shape, axis)
    for _ in range(200):
        x = rng.standard_normal(shape)
        gamma = rng.uniform(0.5, 1.5, size=cshape)
        beta = rng.standard_normal(cshape) * 0.5
        r = rng.standard_normal(shape) if residual else None
        z = group_norm_numpy(x, groups, gamma, beta, axis=axis)
        if r is not None:
            z = z + r
        if np.min(np.abs(z)) > KINK_MARGIN:
            return x, gamma, beta, r
    raise AssertionError("no draw kept the pre-activation away from 0")


def _reference(x, groups, gamma, beta, axis, residual, activation, approximate):
    """The fused result from separate float64 NumPy/SciPy ops."""
    from scipy.special import erf

    z = group_norm_numpy(x, groups, gamma, beta, axis=axis)
    if residual is not None:
        z = z + residual
    if activation in (None, "linear"):
        return z
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.maximum(z, 0.2 * z)
    if activation in ("silu", "swish"):
        return z / (1 + np.exp(-z))
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if approximate:
        return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    return 0.5 * z * (1 + erf(z / np.sqrt(2)))


@pytest.mark.parametrize(
    "shape, groups, axis, residual, activation, approximate", list(_gradcheck_cases())
)
def test_gradcheck(shape, groups, axis, residual, activation, approximate, rng):
    x, gamma, beta, r = _inputs(rng, shape, groups, axis, residual)
    kwargs = dict(axis=axis, activation=activation, approximate=approximate)
    if residual:
        assert gradcheck(
            lambda x, g, b, r: ag.group_norm(x, groups, g, b, residual=r, **kwargs),
            [x, gamma, beta, r],
        )
    else:
        assert gradcheck(lambda x, g, b: ag.group_norm(x, groups, g, b, **kwargs), [x, gamma, beta])


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu", "gelu"])
def test_gradcheck_without_gamma_and_beta(activation, rng):
    x, _, _, r = _inputs(rng, (2, 3, 6), 3, -1, True)
    assert gradcheck(
        lambda x, r: ag.group_norm(x, 3, residual=r, activation=activation), [x, r]
    )


def test_gradcheck_leaky_relu_slope_and_group_size(rng):
    x, gamma, beta, r = _inputs(rng, (2, 2, 6), 2, -1, True)
    assert gradcheck(
        lambda x, g, b, r: ag.group_norm(
            x, gamma=g, beta=b, group_size=3, epsilon=0.1, residual=r,
            activation="leaky_relu", negative_slope=0.05,
        ),
        [x, gamma, beta, r],
    )


@pytest.mark.parametrize(
    "residual, activation, approximate",
    [(True, *a) for a in ACTIVATIONS] + [(False, *a) for a in FEW],
    ids=[f"residual-{i}" for i in ACT_IDS] + ["plain-None", "plain-silu"],
)
def test_forward_matches_separate_ops_in_float64(residual, activation, approximate, rng):
    x, gamma, beta, r = _inputs(rng, (3, 4, 6), 2, -1, residual)
    y = ag.group_norm(Tensor(x), 2, gamma, beta, residual=r, activation=activation,
                      approximate=approximate)
    want = _reference(x, 2, gamma, beta, -1, r, activation, approximate)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu", "sigmoid", "gelu"])
def test_forward_is_the_array_function(activation, rng):
    """The op returns exactly what `numba_gn.group_norm` returns for the same arguments."""
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    beta = rng.standard_normal(8).astype(np.float32)
    r = rng.standard_normal((2, 5, 8)).astype(np.float32)
    y = ag.group_norm(Tensor(x), 4, Tensor(gamma), beta, residual=Tensor(r),
                      activation=activation)
    assert y.dtype == np.float32
    want = functional.group_norm(x, 4, gamma, beta, residual=r, activation=activation)
    np.testing.assert_array_equal(y.data, want)


def _unfused(x, groups, gamma, beta, residual, activation):
    """The same computation as separate taped ops (the layers' way)."""
    z = ag.group_norm(x, groups, gamma, beta)
    if residual is not None:
        z = z + residual
    if activation == "relu":
        return ag.relu(z)
    if activation == "leaky_relu":
        return ag.maximum(z, z * 0.2)
    if activation == "silu":
        return ag.silu(z)
    if activation == "sigmoid":
        return ag.sigmoid(z)
    if activation == "gelu":
        return ag.gelu(z)
    return z


@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu", "silu", "sigmoid", "gelu"])
def test_float32_gradients_match_separate_ops(activation, rng):
    """Every input's gradient agrees with the unfused chain's to float32 rounding."""
    shape = (3, 4, 8)
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    gamma = Tensor(rng.uniform(0.5, 1.5, 8).astype(np.float32))
    beta = Tensor(rng.standard_normal(8).astype(np.float32))
    r = Tensor(rng.standard_normal(shape).astype(np.float32))
    w = rng.standard_normal(shape).astype(np.float32)
    grads = []
    for fused in (True, False):
        with GradientTape() as tape:
            tape.watch([x, gamma, beta, r])
            if fused:
                y = ag.group_norm(x, 4, gamma, beta, residual=r, activation=activation)
            else:
                y = _unfused(x, 4, gamma, beta, r, activation)
            loss = ag.sum(y * w)
        grads.append(tape.gradient(loss, [x, gamma, beta, r]))
    for name, a, b in zip(("x", "gamma", "beta", "residual"), *grads, strict=True):
        assert a.dtype == np.float32, name
        scale = np.max(np.abs(b))
        # Measured: identical except gelu (within about 1 float32 ulp of the largest entry).
        assert np.max(np.abs(a - b)) <= 8 * np.finfo(np.float32).eps * scale, name


def test_plain_calls_stay_on_the_plain_op(rng, monkeypatch):
    """No residual and no (or a linear) activation: the original op, not the fused one."""

    def refuse(*args, **kwargs):
        raise AssertionError("the fused op ran for a plain call")

    monkeypatch.setattr(FusedGroupNorm, "forward", staticmethod(refuse))
    x = rng.standard_normal((2, 3, 4))
    gamma = rng.uniform(0.5, 1.5, 4)
    want = functional.group_norm(x, 2, gamma)
    np.testing.assert_array_equal(ag.group_norm(x, 2, gamma).data, want)
    np.testing.assert_array_equal(ag.group_norm(x, 2, gamma, activation="linear").data, want)
    assert gradcheck(lambda x: ag.group_norm(x, 2, gamma), [x])


def test_the_fused_op_keeps_no_output(rng):
    """The forward keeps x, the statistics, gamma, beta and the residual, nothing else."""
    x = rng.standard_normal((2, 3, 4))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    r = rng.standard_normal((2, 3, 4))
    ctx = Context((True, True, True, True))
    y = FusedGroupNorm.forward(
        ctx, x, gamma, beta, r, groups=2, axis=-1, epsilon=1e-3, group_size=None,
        activation="silu", negative_slope=0.2, approximate=False,
    )
    saved = ctx.saved_tensors
    assert len(saved) == 6
    assert saved[0] is x and saved[3] is gamma and saved[4] is beta and saved[5] is r
    assert saved[1].shape == saved[2].shape == (2, 2)  # mean and rstd per (sample, group)
    assert not any(s is y for s in saved)
    # The plain op's residuals are unchanged too.
    ctx = Context((True, True, True))
    GroupNorm.forward(ctx, x, gamma, beta, groups=2, axis=-1, epsilon=1e-3, group_size=None)
    assert len(ctx.saved_tensors) == 4


def test_only_watched_inputs_get_gradients(rng):
    x = Tensor(rng.standard_normal((2, 3, 4)))
    r = rng.standard_normal((2, 3, 4))  # a plain array: a constant
    gamma = Tensor(rng.uniform(0.5, 1.5, 4))
    with GradientTape() as tape:
        tape.watch(x)
        loss = ag.sum(ag.group_norm(x, 2, gamma, residual=r, activation="silu"))
    dx, dgamma = tape.gradient(loss, [x, gamma])
    assert dx.shape == (2, 3, 4)
    assert dgamma is None


def test_bad_arguments_name_themselves(rng):
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match="activation"):
        ag.group_norm(x, 2, activation="tanh")
    with pytest.raises(TypeError, match="activation"):
        ag.group_norm(x, 2, activation=len)
    with pytest.raises(ValueError, match="residual"):
        ag.group_norm(x, 2, residual=np.zeros((2, 3, 5)))
    with pytest.raises(TypeError, match="negative_slope"):
        ag.group_norm(x, 2, activation="leaky_relu", negative_slope="0.1")
    # Refused even where unused (a plain call), as nonsense anywhere is.
    with pytest.raises(ValueError, match="negative_slope"):
        ag.group_norm(x, 2, negative_slope=float("nan"))
    with pytest.raises(TypeError, match="approximate"):
        ag.group_norm(x, 2, approximate="yes")
