"""Add, Subtract, Multiply, Average, Concatenate: Keras parity, gradients, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import GradientTape, Tensor, gradcheck
from numba_gn.layers import Add, Average, Concatenate, Multiply, Subtract

ELEMENTWISE = [Add, Subtract, Multiply, Average]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _keras_out(keras, layer, inputs):
    return keras.ops.convert_to_numpy(layer(inputs))


# Shapes of the inputs, with broadcasting and a lower-rank input (Keras inserts size-1 axes
# after the batch axis).
ELEMENTWISE_SHAPES = [
    [(2, 3, 4), (2, 3, 4)],
    [(2, 1, 4), (2, 3, 1)],
    [(2, 4), (2, 3, 4)],
    [(3, 5), (3, 5), (3, 5)],
    [(2, 3, 4)],
]


@pytest.mark.parametrize("cls,shapes", [
    (cls, shapes)
    for cls in ELEMENTWISE
    for shapes in ELEMENTWISE_SHAPES
    if cls is not Subtract or len(shapes) == 2  # Subtract takes exactly two inputs
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_elementwise_matches_keras(cls, shapes, keras, rng):
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = cls()(xs).numpy()
    ref = _keras_out(keras, getattr(keras.layers, cls.__name__)(), xs)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_elementwise_values(rng):
    a, b, c = (rng.standard_normal((2, 3)) for _ in range(3))
    kw = {"dtype": "float64"}
    np.testing.assert_allclose(Add(**kw)([a, b, c]).numpy(), a + b + c, rtol=1e-15)
    np.testing.assert_allclose(Subtract(**kw)([a, b]).numpy(), a - b, rtol=1e-15)
    np.testing.assert_allclose(Multiply(**kw)([a, b, c]).numpy(), a * b * c, rtol=1e-15)
    np.testing.assert_allclose(Average(**kw)([a, b, c]).numpy(), (a + b + c) / 3, rtol=1e-15)


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(2, 3, 4), (2, 3, 2)]),
    (1, [(2, 3, 4), (2, 1, 4), (2, 5, 4)]),
    (0, [(2, 3), (4, 3)]),
    (-2, [(2, 3, 4), (2, 2, 4)]),
    (3, [(1, 2, 3, 1), (1, 2, 3, 2)]),
])
def test_concatenate_matches_keras(axis, shapes, keras, rng):
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    layer = Concatenate(axis=axis)
    ours = layer(xs).numpy()
    ref = _keras_out(keras, keras.layers.Concatenate(axis=axis), xs)
    np.testing.assert_array_equal(ours, ref)
    assert layer.compute_output_shape(shapes) == ours.shape


def test_tuple_and_tensor_inputs(rng):
    a, b = rng.standard_normal((2, 2, 3)).astype(np.float32)
    out = Add()((Tensor(a), b)).numpy()  # a tuple, mixing Tensors and arrays
    np.testing.assert_allclose(out, a + b, rtol=1e-7)


def test_mixed_int_and_float_inputs_promote_like_keras(keras):
    i = np.arange(6, dtype=np.int32).reshape(2, 3)
    f = np.full((2, 3), 0.5, np.float32)
    for cls in (Add, Multiply, Concatenate):
        ours = cls()([i, f]).numpy()
        ref = _keras_out(keras, getattr(keras.layers, cls.__name__)(), [i, f])
        assert ours.dtype == ref.dtype == np.float32, cls
        np.testing.assert_array_equal(ours, ref)
    assert Add()([i, i]).numpy().dtype == np.int32


# -- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_elementwise_gradients(cls, rng):
    layer = cls(dtype="float64")
    gradcheck(lambda x, y: layer([x, y]), [rng.standard_normal((2, 3)),
                                          rng.standard_normal((2, 4, 3))])
    gradcheck(lambda x, y: layer([x, y]), [rng.standard_normal((2, 1, 3)),
                                          rng.standard_normal((2, 4, 1))])
    if cls is not Subtract:
        gradcheck(lambda x, y, z, layer=layer: layer([x, y, z]),
                  [rng.standard_normal((2, 3)) for _ in range(3)])


def test_concatenate_gradients(rng):
    for axis in (-1, 1, 0):
        layer = Concatenate(axis=axis, dtype="float64")
        gradcheck(lambda x, y, z, layer=layer: layer([x, y, z]),
                  [rng.standard_normal((2, 2, 3)) for _ in range(3)])


def test_gradient_reaches_every_input(rng):
    a = Tensor(rng.standard_normal((2, 3)).astype(np.float32))
    b = Tensor(rng.standard_normal((2, 3)).astype(np.float32))
    with GradientTape() as tape:
        tape.watch([a, b])
        y = Multiply()([a, b]).sum()
    ga, gb = tape.gradient(y, [a, b])
    np.testing.assert_allclose(ga, b.numpy(), rtol=1e-7)
    np.testing.assert_allclose(gb, a.numpy(), rtol=1e-7)


# -- shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [*ELEMENTWISE, Concatenate], ids=lambda c: c.__name__)
def test_compute_output_shape_matches_the_output(cls, keras, rng):
    cases = [[(2, 3, 4), (2, 3, 4)], [(2, 1, 4), (2, 3, 1)], [(2, 4), (2, 3, 4)]]
    if cls is Concatenate:
        cases = [[(2, 3, 4), (2, 3, 2)], [(2, 3, 1), (2, 3, 5)]]
    for shapes in cases:
        layer = cls()
        out = layer([rng.standard_normal(s).astype(np.float32) for s in shapes])
        assert layer.compute_output_shape(shapes) == out.shape
        free = [(None, *s[1:]) for s in shapes]
        expected = (None, *out.shape[1:])
        assert layer.compute_output_shape(free) == expected
        k = getattr(keras.layers, cls.__name__)()
        assert tuple(k.compute_output_shape(free)) == expected


def test_compute_output_shape_with_free_dimensions(keras):
    cases = [
        (Add(), [(None, 3), (None, None)], (None, None)),
        (Add(), [(None, 1, 3), (5, 4, 1)], (5, 4, 3)),
        (Concatenate(axis=1), [(None, 1, 3), (None, None, 3)], (None, None, 3)),
        (Concatenate(axis=1), [(None, 1, 3), (None, 2, 3)], (None, 3, 3)),
        (Concatenate(), [(None, 4, 3), (None, None, 2)], (None, 4, 5)),
    ]
    for layer, shapes, expected in cases:
        assert layer.compute_output_shape(shapes) == expected
        ref = getattr(keras.layers, type(layer).__name__).from_config(layer.get_config())
        assert tuple(ref.compute_output_shape(shapes)) == expected


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda a: Add()(a), "should be called on a list of inputs"),
    (lambda a: Add()([a, np.ones((3, 3), np.float32)]), "different batch sizes"),
    (lambda a: Multiply()([a, np.ones((2, 4), np.float32)]), "incompatible shapes"),
    (lambda a: Subtract()([a, a, a]), "exactly 2 inputs"),
    (lambda a: Subtract()([a]), "exactly 2 inputs"),
    (lambda a: Average()([]), "at least 1 input"),
    (lambda a: Concatenate()([a, np.ones((2, 4, 3), np.float32)]), "matching shapes"),
    (lambda a: Concatenate(axis=0)([a, np.ones((2, 4), np.float32)]), "matching shapes"),
    (lambda a: Concatenate()([]), "at least 1 input"),
    (lambda a: Concatenate(axis=2)([a, a]), "axis"),
])
def test_bad_inputs_raise_keras_errors(call, match, keras):
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        call(a)


def test_failed_build_leaves_the_layer_unbuilt():
    layer = Add()
    with pytest.raises(ValueError, match="incompatible shapes"):
        layer([np.ones((2, 3)), np.ones((2, 4))])
    assert not layer.built
    assert layer([np.ones((2, 3)), np.ones((2, 3))]).shape == (2, 3)
    # Checked on every call, not only the first.
    with pytest.raises(ValueError, match="incompatible shapes"):
        layer([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="list of inputs"):
        layer(np.ones((2, 3)))


def test_build_takes_a_list_of_shapes():
    layer = Concatenate()
    layer.build([(None, 3), (None, 4)])
    assert layer.built
    with pytest.raises(ValueError, match="not a list of shapes"):
        Add().build((None, 3))
    with pytest.raises(ValueError, match="should be called on a list"):
        Concatenate().compute_output_shape((None, 3))


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="axis"):
        Concatenate(axis="1")
    with pytest.raises(TypeError, match="axis"):
        Concatenate(axis=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Add(axis=1)


# -- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [Add(), Subtract(name="diff"), Multiply(), Average(),
                                   Concatenate(axis=1), Concatenate(dtype="float64")],
                         ids=lambda x: type(x).__name__)
def test_config_round_trips_with_keras(layer, keras):
    config = layer.get_config()
    k = getattr(keras.layers, type(layer).__name__)
    kcfg = k.from_config(config).get_config()
    assert kcfg == config
    assert type(layer).from_config(kcfg).get_config() == config
    assert config.keys() == k().get_config().keys()
