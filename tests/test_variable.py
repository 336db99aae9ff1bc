"""Variable: construction from arrays/initializers/identifiers, in-place assignment, tape use."""

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn.autograd import GradientTape, Tensor
from numba_gn.params import Variable, constraints, initializers, regularizers


def test_from_array_takes_shape_and_dtype_and_copies():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    v = Variable(a)
    assert isinstance(v, Tensor)
    assert v.shape == (2, 3) and v.dtype == np.float64
    assert not np.shares_memory(v.data, a)
    assert v.initializer is None


def test_python_floats_default_to_float32():
    assert Variable([1.0, 2.0]).dtype == np.float32
    assert Variable(3.0).dtype == np.float32
    assert Variable([1, 2]).dtype.kind == "i"
    assert Variable([1.0, 2.0], dtype="float64").dtype == np.float64


def test_from_tensor_and_from_readonly_view():
    v = Variable(Tensor(np.ones(3, dtype=np.float32)))
    assert v.dtype == np.float32
    w = Variable(np.broadcast_to(np.ones(1), (2, 3)))
    assert w.data.flags.writeable and w.data.flags.c_contiguous
    w.assign(np.zeros((2, 3)))


def test_callable_initializer_needs_shape():
    v = Variable(initializers.Ones(), shape=(2, 3))
    assert v.dtype == np.float32 and v.shape == (2, 3)
    np.testing.assert_array_equal(v.numpy(), np.ones((2, 3)))
    assert isinstance(v.initializer, initializers.Ones)
    assert Variable(
        lambda shape, dtype: np.zeros(shape, dtype), shape=4, dtype="float64"
    ).shape == (4,)
    with pytest.raises(ValueError, match="`shape` argument should be specified"):
        Variable(initializers.Ones())


def test_string_and_config_initializers():
    v = Variable("glorot_uniform", shape=(4, 5), dtype="float64")
    assert v.dtype == np.float64 and isinstance(v.initializer, initializers.GlorotUniform)
    limit = np.sqrt(6 / 9)
    assert np.all(np.abs(v.numpy()) <= limit)
    c = Variable({"class_name": "Constant", "config": {"value": 2.0}}, shape=(3,))
    np.testing.assert_array_equal(c.numpy(), [2.0, 2.0, 2.0])


def test_shape_mismatch_with_array_or_initializer():
    with pytest.raises(ValueError, match="does not match"):
        Variable(np.ones(3), shape=(4,))
    with pytest.raises(ValueError, match="returned shape"):
        Variable(lambda shape, dtype: np.ones(2), shape=(3,))


def test_names():
    a, b = Variable(1.0), Variable(1.0)
    assert a.name.startswith("variable") and a.name != b.name
    assert Variable(1.0, name="gamma").name == "gamma"
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        Variable(1.0, name="a/b")


def test_regularizer_and_constraint_are_resolved():
    v = Variable(np.ones(2), regularizer="l2", constraint="non_neg")
    assert isinstance(v.regularizer, regularizers.L2)
    assert isinstance(v.constraint, constraints.NonNeg)
    plain = Variable(np.ones(2))
    assert plain.regularizer is None and plain.constraint is None


def test_assign_updates_in_place_and_casts():
    v = Variable(np.zeros(3, dtype=np.float32))
    buffer = v.data
    assert v.assign([1.5, 2.5, 3.5]) is v
    assert v.data is buffer and v.dtype == np.float32
    np.testing.assert_array_equal(v.numpy(), [1.5, 2.5, 3.5])
    v.assign(Tensor(np.ones(3)))
    np.testing.assert_array_equal(v.numpy(), [1.0, 1.0, 1.0])


def test_assign_shape_error_names_both_shapes():
    v = Variable(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"variable.shape=\(2, 3\), Received: value.shape=\(3,\)"):
        v.assign(np.zeros(3))


def test_assign_add_and_sub():
    v = Variable(np.ones((2, 2)))
    buffer = v.data
    v.assign_add(np.array([1.0, 2.0]))  # broadcast onto the variable's shape
    v.assign_sub(0.5)
    assert v.data is buffer
    np.testing.assert_array_equal(v.numpy(), [[1.5, 2.5], [1.5, 2.5]])
    with pytest.raises(ValueError, match="broadcastable"):
        v.assign_add(np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="broadcastable"):
        v.assign_sub(np.ones(3))


def test_numpy_returns_a_copy():
    v = Variable(np.zeros(2))
    snapshot = v.numpy()
    v.assign([1.0, 2.0])
    np.testing.assert_array_equal(snapshot, [0.0, 0.0])


def test_value_is_a_differentiable_snapshot():
    v = Variable(np.array([2.0]))
    with GradientTape() as tape:
        val = v.value
        y = val * val
    v.assign([10.0])
    np.testing.assert_array_equal(val.data, [2.0])
    np.testing.assert_array_equal(tape.gradient(y, v), [4.0])


def test_trainable_toggle_controls_auto_watching():
    v = Variable(np.array([1.0]))
    v.trainable = False
    with GradientTape() as tape:
        y = v * 2.0
    assert tape.gradient(y, v) is None
    v.trainable = True
    with GradientTape() as tape:
        y = v * 2.0
    np.testing.assert_array_equal(tape.gradient(y, v), [2.0])


def test_usable_anywhere_a_tensor_is():
    v = Variable(np.array([[1.0, 2.0]]))
    out = ag.relu(v @ np.ones((2, 1)) + v.sum())
    assert isinstance(out, Tensor) and not isinstance(out, Variable)
    np.testing.assert_array_equal(out.data, [[6.0]])
    assert "Variable" in repr(v) and "shape=(1, 2)" in repr(v)
