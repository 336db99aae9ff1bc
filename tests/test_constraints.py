"""Constraints: Keras's formulas (epsilon included), axes, dtypes, configs."""

import os

import numpy as np
import pytest

from numba_gn.params import constraints as cons


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    return pytest.importorskip("keras")


def example(shape=(20, 30), scale=5.0, seed=3537):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * scale).astype(np.float32)
    w.flat[0] = 0.0
    return w


CASES = [
    ("MaxNorm", {}),
    ("MaxNorm", {"max_value": 0.5, "axis": 1}),
    ("MaxNorm", {"max_value": 30.0}),  # some norms below the bound stay (almost) unchanged
    ("MinMaxNorm", {}),
    ("MinMaxNorm", {"min_value": 0.2, "max_value": 0.5, "rate": 0.7, "axis": 1}),
    ("MinMaxNorm", {"min_value": 30.0, "max_value": 40.0}),
    ("UnitNorm", {}),
    ("UnitNorm", {"axis": 1}),
    ("NonNeg", {}),
    ("Constraint", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize("shape", [(20, 30), (3, 3, 4, 5)])
def test_matches_keras(keras, name, kwargs, shape):
    w = example(shape)
    ours = getattr(cons, name)(**kwargs)(w)
    theirs = np.asarray(getattr(keras.constraints, name)(**kwargs)(w))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["MaxNorm", "MinMaxNorm", "UnitNorm"])
def test_conv_kernel_axes_match_keras(keras, name):
    # Keras's docs: axis=[0, 1, 2] constrains each filter of a channels_last Conv2D kernel.
    w = example((3, 3, 4, 5))
    ours = getattr(cons, name)(axis=[0, 1, 2])(w)
    theirs = np.asarray(getattr(keras.constraints, name)(axis=[0, 1, 2])(w))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_config_matches_keras(keras, name, kwargs):
    ours = getattr(cons, name)(**kwargs)
    assert ours.get_config() == getattr(keras.constraints, name)(**kwargs).get_config()


def test_max_norm_by_hand():
    # Keras's own test case: columns with norms 0, 1, 3 and 3*sqrt(3), max_value=2.
    w = np.array([[0, 0, 0], [1.0, 0, 0], [3, 0, 0], [3, 3, 3]]).T
    target = np.array(
        [[0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [2 / np.sqrt(3), 2 / np.sqrt(3), 2 / np.sqrt(3)]]
    ).T
    out = cons.MaxNorm(2.0)(w)
    np.testing.assert_allclose(out, target, rtol=1e-6)
    # The epsilon shows: a column of norm 1 is scaled by 1 / (1 + 1e-7), as in Keras.
    assert out[0, 1] == 1.0 / (1.0 + 1e-7)


def test_unit_norm_and_min_max_norm_bounds():
    w = example((50, 40)).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(cons.UnitNorm()(w), axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cons.UnitNorm(axis=1)(w), axis=1), 1.0, rtol=1e-6)
    norms = np.linalg.norm(cons.MinMaxNorm(min_value=0.2, max_value=0.5)(w), axis=0)
    assert np.all(norms >= 0.2 - 1e-6) and np.all(norms <= 0.5 + 1e-6)


def test_min_max_norm_rate_moves_part_way():
    w = np.array([[3.0], [4.0]])  # norm 5
    out = cons.MinMaxNorm(min_value=0.0, max_value=1.0, rate=0.25)(w)
    # new norm = 0.25 * 1 + 0.75 * 5 = 4
    assert np.linalg.norm(out) == pytest.approx(4.0 * 5 / (5 + 1e-7), rel=1e-12)


def test_non_neg():
    w = np.array([-2.0, -0.0, 0.5, 3.0])
    np.testing.assert_array_equal(cons.NonNeg()(w), [0.0, 0.0, 0.5, 3.0])


@pytest.mark.parametrize("name", ["MaxNorm", "MinMaxNorm", "UnitNorm", "NonNeg"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes_are_kept(name, dtype):
    w = example((6, 4)).astype(dtype)
    assert getattr(cons, name)()(w).dtype == dtype


@pytest.mark.parametrize("name", ["MaxNorm", "MinMaxNorm", "UnitNorm", "NonNeg"])
def test_other_inputs_become_float32(name):
    out = getattr(cons, name)()([[1, -2], [3, 4]])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


def test_input_is_not_modified():
    w = example((5, 5))
    before = w.copy()
    for c in (cons.MaxNorm(0.1), cons.MinMaxNorm(), cons.UnitNorm(), cons.NonNeg()):
        c(w)
    np.testing.assert_array_equal(w, before)


def test_zero_column_stays_zero():
    w = np.zeros((4, 3))
    for c in (cons.MaxNorm(), cons.MinMaxNorm(min_value=1.0, max_value=2.0), cons.UnitNorm()):
        out = c(w)
        assert np.all(np.isfinite(out)) and np.all(out == 0.0)


def test_defaults():
    assert cons.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert cons.MinMaxNorm().get_config() == {
        "min_value": 0.0,
        "max_value": 1.0,
        "rate": 1.0,
        "axis": 0,
    }
    assert cons.UnitNorm().get_config() == {"axis": 0}
    assert cons.NonNeg().get_config() == {}
    assert cons.Constraint().get_config() == {}


def test_config_axis_list_is_a_copy():
    c = cons.UnitNorm(axis=[0, 1])
    c.get_config()["axis"].append(2)
    assert c.axis == [0, 1]
