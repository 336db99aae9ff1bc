"""Regularizers: Keras's formulas on the same inputs, validation, and a differentiable result."""

import math
import os

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn.params import regularizers as regs


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    return pytest.importorskip("keras")


def value(result):
    """The penalty as a Python float."""
    assert isinstance(result, ag.Tensor)
    assert tuple(result.shape) == ()
    return float(np.asarray(result.numpy()))


def example(shape=(6, 5), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- values against Keras -----------------------------------------------------------------------

CASES = [
    ("L1", {}),
    ("L1", {"l1": 0.3}),
    ("L2", {}),
    ("L2", {"l2": 0.7}),
    ("L1L2", {}),
    ("L1L2", {"l1": 0.1}),
    ("L1L2", {"l2": 0.2}),
    ("L1L2", {"l1": 0.3, "l2": 0.4}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize("shape", [(6, 5), (3, 3, 4, 5), (7,)])
def test_matches_keras(keras, name, kwargs, shape):
    x = example(shape)
    ours = value(getattr(regs, name)(**kwargs)(x))
    theirs = float(getattr(keras.regularizers, name)(**kwargs)(x))
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("factor", [0.01, 0.5])
@pytest.mark.parametrize("shape", [(6, 5), (5, 6), (4, 4), (2, 9)])
def test_orthogonal_rows_matches_keras(keras, factor, shape):
    x = example(shape)
    ours = value(regs.OrthogonalRegularizer(factor=factor, mode="rows")(x))
    theirs = float(keras.regularizers.OrthogonalRegularizer(factor=factor, mode="rows")(x))
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("shape", [(6, 5), (5, 6), (4, 4)])
def test_orthogonal_columns_matches_keras(keras, shape):
    # Keras's numpy backend normalises the wrong axis in columns mode (its numpy `normalize`
    # turns axis=0 into -1), so compare with its rows mode on the transpose, which is the
    # columns formula on every other backend.
    x = example(shape)
    ours = value(regs.OrthogonalRegularizer(factor=0.2, mode="columns")(x))
    theirs = float(keras.regularizers.OrthogonalRegularizer(factor=0.2, mode="rows")(x.T))
    assert ours == pytest.approx(theirs, rel=1e-6)


def reference_orthogonal(x, factor, mode):
    """The formula written out in numpy, float64."""
    x = np.asarray(x, dtype=np.float64)
    if mode == "columns":
        x = x.T
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-7)
    gram = np.abs(unit @ unit.T)
    n = x.shape[0]
    return factor * gram[np.triu_indices(n, k=1)].mean()


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", [(6, 5), (3, 8)])
def test_orthogonal_matches_reference(mode, shape):
    x = example(shape, seed=2)
    got = value(regs.OrthogonalRegularizer(factor=0.3, mode=mode)(x))
    assert got == pytest.approx(reference_orthogonal(x, 0.3, mode), rel=1e-5)


# -- values by hand ---------------------------------------------------------------------------


def test_l2_has_no_half():
    # Keras's docstring example: L2(2.) on ones((5, 5)) is 50.
    assert value(regs.L2(2.0)(np.ones((5, 5), np.float32))) == pytest.approx(50.0)


def test_l1_and_l1l2_by_hand():
    x = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert value(regs.L1(0.1)(x)) == pytest.approx(0.1 * 3.5)
    assert value(regs.L1L2(l1=0.1, l2=0.2)(x)) == pytest.approx(0.1 * 3.5 + 0.2 * 5.25)
    assert value(regs.L1L2()(x)) == 0.0
    assert value(regs.Regularizer()(x)) == 0.0


def test_orthogonal_by_hand():
    reg = regs.OrthogonalRegularizer(factor=0.5)
    assert value(reg(np.eye(3))) == pytest.approx(0.0, abs=1e-12)
    assert value(reg(np.ones((4, 3)))) == pytest.approx(0.5)  # every pair parallel
    # Rows at 45 degrees: |cos| = 1/sqrt(2); rows are normalised, so scale does not matter.
    assert value(reg(np.array([[2.0, 0.0], [3.0, 3.0]]))) == pytest.approx(0.5 / math.sqrt(2))


def test_orthogonal_edge_cases():
    reg = regs.OrthogonalRegularizer()
    # A zero row is clamped, not divided by zero.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert value(reg(x)) == pytest.approx(0.0, abs=1e-12)
    # One row: no pairs, no penalty (Keras would give nan).
    assert value(reg(np.ones((1, 4)))) == 0.0
    with pytest.raises(ValueError, match="rank 2"):
        reg(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="mode"):
        regs.OrthogonalRegularizer(mode="diagonal")


def test_result_keeps_float32():
    x = example()
    for reg in (regs.L1(), regs.L2(), regs.L1L2(0.1, 0.1), regs.OrthogonalRegularizer()):
        assert np.asarray(reg(x).numpy()).dtype == np.float32
    # Integer input is treated as float32 (Keras would cast the factor to int and get 0).
    ints = regs.L2(0.5)(np.array([[1, 2], [3, 4]]))
    assert np.asarray(ints.numpy()).dtype == np.float32 and value(ints) == 15.0


# -- differentiable -----------------------------------------------------------------------------


def grad_of(reg, x):
    """Gradient of ``reg(x)`` with respect to ``x`` through the autograd tape."""
    t = ag.Tensor(np.array(x, dtype=np.float64))
    with ag.GradientTape() as tape:
        tape.watch(t)
        penalty = reg(t)
    return np.asarray(tape.gradient(penalty, t))


def numeric_grad(reg, x, h=1e-6):
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (value(reg(up)) - value(reg(down))) / (2 * h)
    return g


def test_l1_l2_gradients():
    x = example((4, 3)).astype(np.float64)
    np.testing.assert_allclose(grad_of(regs.L2(0.3), x), 2 * 0.3 * x, rtol=1e-12)
    np.testing.assert_allclose(grad_of(regs.L1(0.3), x), 0.3 * np.sign(x), rtol=1e-12)
    np.testing.assert_allclose(
        grad_of(regs.L1L2(0.1, 0.2), x), 0.1 * np.sign(x) + 0.4 * x, rtol=1e-12
    )


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_gradient_matches_finite_differences(mode):
    reg = regs.OrthogonalRegularizer(factor=0.4, mode=mode)
    x = example((4, 3), seed=5).astype(np.float64)
    np.testing.assert_allclose(grad_of(reg, x), numeric_grad(reg, x), rtol=1e-5, atol=1e-8)


def test_orthogonal_gradient_is_finite_with_a_zero_row():
    x = np.array([[0.0, 0.0], [1.0, 0.5], [0.2, 1.0]])
    assert np.all(np.isfinite(grad_of(regs.OrthogonalRegularizer(), x)))


# -- validation and config --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "arg"),
    [(regs.L1, "l1"), (regs.L2, "l2"), (regs.L1L2, "l1"), (regs.L1L2, "l2")],
)
@pytest.mark.parametrize("bad", [-0.1, math.inf, -math.inf, math.nan, "0.1", True])
def test_invalid_factors(cls, arg, bad):
    with pytest.raises(ValueError, match=f"Invalid value for argument {arg}"):
        cls(**{arg: bad})


@pytest.mark.parametrize("bad", [-1.0, math.nan, "x"])
def test_invalid_orthogonal_factor(bad):
    with pytest.raises(ValueError, match="factor"):
        regs.OrthogonalRegularizer(factor=bad)


def test_validate_float_arg_matches_keras(keras):
    from keras.src.regularizers.regularizers import validate_float_arg

    for good in [0, 0.0, 1, 2.5]:
        assert regs.validate_float_arg(good, "a") == validate_float_arg(good, "a")
    for bad in [-1, math.inf, math.nan, "1"]:
        with pytest.raises(ValueError):
            validate_float_arg(bad, "a")
        with pytest.raises(ValueError):
            regs.validate_float_arg(bad, "a")


def test_none_factors_mean_defaults():
    assert regs.L1(None).l1 == 0.01
    assert regs.L2(None).l2 == 0.01
    assert regs.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


def test_defaults():
    assert regs.L1().get_config() == {"l1": 0.01}
    assert regs.L2().get_config() == {"l2": 0.01}
    assert regs.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert regs.OrthogonalRegularizer().get_config() == {"factor": 0.01, "mode": "rows"}
    assert regs.Regularizer().get_config() == {}


@pytest.mark.parametrize(
    ("name", "kwargs"), [*CASES, ("OrthogonalRegularizer", {"factor": 0.3, "mode": "columns"})]
)
def test_config_matches_keras(keras, name, kwargs):
    ours = getattr(regs, name)(**kwargs).get_config()
    theirs = getattr(keras.regularizers, name)(**kwargs).get_config()
    assert ours.keys() == theirs.keys()
    for key, v in ours.items():
        # Keras keeps L1's and OrthogonalRegularizer's factor as float32; ours stay exact.
        assert v == (pytest.approx(theirs[key], rel=1e-7) if isinstance(v, float) else theirs[key])
