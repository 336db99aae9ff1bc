"""Tensor: wrapping without copies, introspection, operator sugar on both sides, comparisons."""

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn.autograd import Tensor


def test_wraps_ndarray_without_copy():
    a = np.arange(6.0).reshape(2, 3)
    t = Tensor(a)
    assert t.data is a
    assert t.numpy() is a
    assert np.asarray(t) is a


def test_constructor_dtype_and_tensor_input():
    t = Tensor([1, 2, 3], dtype=np.float32)
    assert t.dtype == np.float32
    u = Tensor(t)
    assert u.data is t.data
    assert Tensor(t, dtype=np.float64).dtype == np.float64


def test_introspection():
    t = Tensor(np.zeros((2, 3, 4), dtype=np.float32))
    assert t.shape == (2, 3, 4)
    assert t.dtype == np.float32
    assert t.ndim == 3
    assert t.size == 24
    assert len(t) == 2
    assert t.T.shape == (4, 3, 2)
    assert Tensor(2.5).item() == 2.5
    assert float(Tensor(2.5)) == 2.5
    assert int(Tensor(3)) == 3
    assert bool(Tensor(1.0))


def test_array_protocol_dtype_and_copy():
    a = np.arange(3.0)
    t = Tensor(a)
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    c = np.array(t, copy=True)
    assert c is not a and np.array_equal(c, a)


def test_repr_mentions_shape_and_dtype():
    r = repr(Tensor(np.ones(2, dtype=np.float32)))
    assert r.startswith("Tensor(") and "shape=(2,)" in r and "float32" in r


def test_iteration_yields_rows():
    t = Tensor(np.arange(6.0).reshape(3, 2))
    rows = list(t)
    assert len(rows) == 3 and all(isinstance(r, Tensor) for r in rows)
    np.testing.assert_array_equal(rows[2].data, [4.0, 5.0])


@pytest.mark.parametrize(
    "op, ref",
    [
        (lambda a, b: a + b, np.add),
        (lambda a, b: a - b, np.subtract),
        (lambda a, b: a * b, np.multiply),
        (lambda a, b: a / b, np.divide),
        (lambda a, b: a**b, np.power),
    ],
    ids=["add", "sub", "mul", "div", "pow"],
)
@pytest.mark.parametrize("other", ["tensor", "ndarray", "scalar"])
def test_binary_operators_both_sides(op, ref, other, rng):
    a = rng.uniform(0.5, 2.0, size=(2, 3))
    b = rng.uniform(0.5, 2.0, size=(3,))
    wrap = {"tensor": Tensor, "ndarray": np.asarray, "scalar": lambda v: 1.5}[other]
    bo = wrap(b)
    braw = 1.5 if other == "scalar" else b
    left = op(Tensor(a), bo)
    right = op(bo, Tensor(a))
    assert isinstance(left, Tensor) and isinstance(right, Tensor)
    np.testing.assert_allclose(left.data, ref(a, braw))
    np.testing.assert_allclose(right.data, ref(braw, a))


def test_matmul_both_sides(rng):
    a = rng.standard_normal((2, 3))
    b = rng.standard_normal((3, 4))
    np.testing.assert_allclose((Tensor(a) @ b).data, a @ b)
    np.testing.assert_allclose((a @ Tensor(b)).data, a @ b)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b)


def test_unary_operators():
    t = Tensor(np.array([-1.5, 0.0, 2.0]))
    np.testing.assert_array_equal((-t).data, [1.5, -0.0, -2.0])
    np.testing.assert_array_equal(abs(t).data, [1.5, 0.0, 2.0])
    np.testing.assert_array_equal(t.abs().data, [1.5, 0.0, 2.0])
    assert (+t) is t


def test_python_scalars_keep_float32():
    t = Tensor(np.ones(3, dtype=np.float32))
    for out in (t * 2.0, 2.0 * t, t + 1, 1 - t, t / 3.0, t**2, 2.0**t, -t):
        assert out.dtype == np.float32


def test_comparisons_return_plain_arrays():
    t = Tensor(np.array([1.0, 2.0, 3.0]))
    for res, expected in [
        (t < 2, [True, False, False]),
        (t <= 2, [True, True, False]),
        (t > 2, [False, False, True]),
        (t >= 2, [False, True, True]),
        (t == 2, [False, True, False]),
        (t != 2, [True, False, True]),
        (t < Tensor(np.array([2.0, 2.0, 2.0])), [True, False, False]),
        (np.array([2.0, 2.0, 2.0]) > t, [True, False, False]),
    ]:
        assert type(res) is np.ndarray
        np.testing.assert_array_equal(res, expected)


def test_tensors_hash_by_identity():
    a, b = Tensor(1.0), Tensor(1.0)
    assert len({a, b}) == 2
    assert {a: 1}[a] == 1


def test_ufuncs_and_inplace_ndarray_updates_refuse_tensors():
    # Silently dropping a Tensor off the tape would be worse than an error.
    t = Tensor(np.ones(3))
    with pytest.raises(TypeError):
        np.exp(t)
    a = np.ones(3)
    with pytest.raises(TypeError):
        a += t


def test_methods_match_numpy(rng):
    a = rng.standard_normal((2, 3, 4))
    t = Tensor(a)
    np.testing.assert_allclose(t.sum().data, a.sum())
    np.testing.assert_allclose(t.sum(axis=1).data, a.sum(axis=1))
    np.testing.assert_allclose(t.sum(axis=(0, 2), keepdims=True).data, a.sum((0, 2), keepdims=True))
    np.testing.assert_allclose(t.mean(axis=-1).data, a.mean(axis=-1))
    assert t.reshape(6, 4).shape == (6, 4)
    assert t.reshape((4, -1)).shape == (4, 6)
    assert t.transpose((1, 0, 2)).shape == (3, 2, 4)
    assert t.transpose().shape == (4, 3, 2)
    assert t.astype(np.float32).dtype == np.float32


def test_shape_ops_are_views():
    a = np.arange(12.0).reshape(3, 4)
    t = Tensor(a)
    for out in (t.reshape(4, 3), t.T, t[1:, ::2], t[0]):
        assert np.shares_memory(out.data, a)


@pytest.mark.parametrize(
    "index",
    [
        1,
        -1,
        slice(1, None),
        (slice(None), 2),
        (Ellipsis, 1),
        (None, 0),
        np.array([0, 2, 2]),
        [1, 0],
        np.array([True, False, True]),
        (np.array([0, 1]), np.array([1, 3])),
    ],
)
def test_getitem_matches_numpy(index):
    a = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(Tensor(a)[index].data, a[index])


def test_getitem_accepts_tensor_indices():
    a = np.arange(12.0).reshape(3, 4)
    idx = Tensor(np.array([2, 0]))
    np.testing.assert_array_equal(Tensor(a)[idx].data, a[[2, 0]])
    mask = Tensor(a > 5)
    np.testing.assert_array_equal(Tensor(a)[mask].data, a[a > 5])


def test_reductions_return_ndarrays_not_numpy_scalars():
    out = ag.sum(np.ones(3))
    assert type(out.data) is np.ndarray and out.shape == ()
