"""Keras and NumPy habits: ``*_variables`` aliases, NumPy's array protocols, batch-axis hints."""

from __future__ import annotations

import numpy as np
import pytest

import numba_gn
from numba_gn import autograd as ag
from numba_gn import layers
from numba_gn.layers.input_spec import InputSpec

# -- trainable_variables / non_trainable_variables / variables ---------------------------------


def _model(with_dropout: bool = False):
    stack = [layers.Input((4,)), layers.Dense(3)]
    if with_dropout:
        stack.append(layers.Dropout(0.5, seed=1))
    return numba_gn.Sequential([*stack, layers.BatchNormalization(), layers.Dense(2)])


def test_variables_aliases_are_the_weight_lists():
    model = _model()
    assert model.variables == model.weights and len(model.variables) == 8
    assert model.trainable_variables == model.trainable_weights
    assert model.non_trainable_variables == model.non_trainable_weights
    assert [v.name for v in model.non_trainable_variables] == ["moving_mean", "moving_variance"]
    dense = model.layers[0]
    assert dense.trainable_variables == [dense.kernel, dense.bias] == dense.variables
    assert dense.non_trainable_variables == []


def test_variables_aliases_follow_trainable():
    model = _model()
    model.layers[0].trainable = False  # frozen: its weights move to the non-trainable list
    assert len(model.trainable_variables) == 4
    assert model.layers[0].trainable_variables == []
    assert model.layers[0].non_trainable_variables == model.layers[0].weights
    model.trainable = False
    assert model.trainable_variables == [] and model.non_trainable_variables == model.weights


def test_variables_aliases_are_read_only():
    dense = layers.Dense(2)
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        with pytest.raises(AttributeError):
            setattr(dense, name, [])


def test_dropout_adds_no_seed_state():
    # Keras 3 lists a SeedGenerator's state in `variables` and `non_trainable_variables`;
    # numba_gn's Dropout draws from a NumPy Generator, which is not a Variable.
    model = _model(with_dropout=True)
    assert model.variables == model.weights
    assert layers.Dropout(0.5, seed=1).variables == []


def test_variables_aliases_match_keras_order():
    keras = pytest.importorskip("keras")
    theirs = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(2),
    ])
    ours = _model()

    def described(variables):  # layer names differ by their unique-name counters
        return [(v.path.rsplit("/", 1)[1], tuple(v.shape)) for v in variables]

    for attr in ("variables", "trainable_variables", "non_trainable_variables"):
        assert described(getattr(ours, attr)) == described(getattr(theirs, attr)), attr


def test_apply_gradients_with_trainable_variables(rng):
    model = _model()
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    optimizer = numba_gn.optimizers.SGD(learning_rate=0.1)
    before = [v.numpy() for v in model.trainable_variables]
    with numba_gn.GradientTape() as tape:
        loss = ag.mean(ag.square(model(x, training=True) - y))
    grads = tape.gradient(loss, model.trainable_variables)
    assert optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True)) == 1
    for v, b, g in zip(model.trainable_variables, before, grads, strict=True):
        np.testing.assert_allclose(v.numpy(), b - 0.1 * g, rtol=1e-6, atol=1e-7)


# -- NumPy's protocols ----------------------------------------------------------------------------


def test_numpy_functions_return_plain_values(rng):
    a = rng.standard_normal((3, 4))
    t = numba_gn.Tensor(a)
    m = np.mean(t)
    assert type(m) is np.float64 and m == pytest.approx(a.mean())
    s = np.sum(t, axis=0)
    assert type(s) is np.ndarray
    np.testing.assert_allclose(s, a.sum(axis=0))
    c = np.concatenate([t, a])
    assert type(c) is np.ndarray and c.shape == (6, 4)
    np.testing.assert_array_equal(np.transpose(t), a.T)
    assert np.allclose(t, a) and np.max(t) == a.max()
    v = numba_gn.Variable(a.astype(np.float32), name="v")
    assert np.mean(v) == pytest.approx(a.astype(np.float32).mean())


def test_asarray_follows_numpy2_copy_rules(rng):
    a = rng.standard_normal((2, 3))
    t = numba_gn.Tensor(a)
    assert np.asarray(t) is a  # no copy unless needed
    f32 = np.asarray(t, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, a, rtol=1e-6)
    copied = np.array(t, copy=True)
    assert not np.shares_memory(copied, a)
    np.testing.assert_array_equal(copied, a)
    assert np.array(t, copy=False) is a
    with pytest.raises(ValueError, match="copy"):
        np.array(t, dtype=np.float32, copy=False)
    assert t.__array__(np.float64, copy=False) is a


def test_numpy_functions_are_not_recorded():
    x = numba_gn.Tensor(np.array([1.0, 2.0, 3.0]))
    with numba_gn.GradientTape() as tape:
        tape.watch(x)
        plain = np.mean(x)  # a value, not an op on the tape
        y = ag.sum(x * plain)
    assert not isinstance(plain, numba_gn.Tensor)
    np.testing.assert_allclose(tape.gradient(y, x), [2.0, 2.0, 2.0])


def test_operator_ufuncs_stay_differentiable():
    x = numba_gn.Tensor(np.array([1.0, 2.0, 3.0]))
    c = np.array([2.0, 3.0, 4.0])
    with numba_gn.GradientTape() as tape:
        tape.watch(x)
        y = ag.sum(c * x - c / x + np.negative(x) + np.add(c, x)) + c @ x
    assert isinstance(y, numba_gn.Tensor)
    expected = c + c / x.numpy() ** 2 - 1 + 1 + c
    np.testing.assert_allclose(tape.gradient(y, x), expected)
    less = c < x
    assert type(less) is np.ndarray and less.dtype == bool and not less.any()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda t: np.exp(t), ["np.exp", "numba_gn.autograd.exp", "t.numpy()"]),
        (lambda t: np.maximum(t, 0), ["np.maximum", "numba_gn.autograd.maximum"]),
        (lambda t: np.floor_divide(t, 2), ["np.floor_divide", "numba_gn.autograd", "t.numpy()"]),
        (lambda t: np.add.reduce(t), ["np.add.reduce", "t.numpy()"]),
    ],
)
def test_other_ufuncs_refuse_with_a_clear_message(call, words):
    t = numba_gn.Tensor(np.ones(3))
    with pytest.raises(TypeError) as exc:
        call(t)
    for word in words:
        assert word in str(exc.value)


def test_tensors_are_never_written_by_numpy():
    t = numba_gn.Tensor(np.ones(3))
    a = np.ones(3)
    with pytest.raises(TypeError, match=r"a = a \+ t"):
        a += t
    assert np.array_equal(a, np.ones(3))
    with pytest.raises(TypeError, match="immutable"):
        np.add(np.ones(3), np.ones(3), out=t)
    with pytest.raises(TypeError, match="immutable"):
        np.sum(np.ones((2, 3)), axis=0, out=t)
    assert np.array_equal(t.numpy(), np.ones(3))


# -- a missing batch axis ---------------------------------------------------------------------


def test_built_layer_names_a_missing_batch_axis(rng):
    norm = layers.GroupNormalization(4)
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    norm(x)
    weights = [w.numpy() for w in norm.weights]
    for sample in (x[0], x[0].transpose(2, 0, 1)):  # (H, W, C) and (C, H, W)
        with pytest.raises(ValueError) as exc:
            norm(sample)
        message = str(exc.value)
        assert "expected rank 4, got rank 3" in message
        assert "missing its batch axis" in message and "x[None]" in message
    for w, before in zip(norm.weights, weights, strict=True):  # the failed calls changed nothing
        np.testing.assert_array_equal(w.numpy(), before)
    np.testing.assert_allclose(norm(x[0][None]).numpy(), norm(x).numpy()[:1], rtol=1e-6)


def test_group_norm_names_a_missing_batch_axis(rng):
    image = rng.standard_normal((16, 8, 8))  # one channels-first image
    gamma, beta = np.ones(16), np.zeros(16)
    for axis in (-1, 1):
        with pytest.raises(ValueError) as exc:
            numba_gn.group_norm(image, 4, gamma, beta, axis=axis)
        message = str(exc.value)
        assert message.startswith("`gamma` must have shape (8,)")
        assert "missing its batch axis" in message and "axis=1" in message
    y = numba_gn.group_norm(image[None], 4, gamma, beta, axis=1)
    assert y.shape == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="missing its batch axis"):
        numba_gn.group_norm_backward(image, image, np.zeros((16, 4)), np.ones((16, 4)), 4, gamma)


def test_other_shape_mistakes_get_no_batch_axis_hint(rng):
    x = rng.standard_normal((2, 16, 8))  # gamma matches axis 1, not the batch axis
    with pytest.raises(ValueError) as exc:
        numba_gn.group_norm(x, 4, np.ones(16), np.zeros(16))
    assert "batch axis" not in str(exc.value)
    with pytest.raises(ValueError) as exc:
        InputSpec(ndim=4).check((8, 8), "layer")  # two axes short
    assert "batch axis" not in str(exc.value)
    with pytest.raises(ValueError) as exc:
        InputSpec(ndim=4).check((2, 8, 8, 3, 1), "layer")  # one too many
    assert "batch axis" not in str(exc.value)


@pytest.mark.parametrize(
    ("layer", "sample"),
    [
        (layers.Dense(4), np.ones(3, np.float32)),
        (layers.MaxPooling2D(), np.ones((8, 8, 3), np.float32)),
        (layers.UpSampling2D(), np.ones((8, 8, 3), np.float32)),
    ],
    ids=["Dense", "MaxPooling2D", "UpSampling2D"],
)
def test_unbuilt_layers_name_a_missing_batch_axis(layer, sample):
    with pytest.raises(ValueError, match="missing its batch axis"):
        layer(sample)
    assert layer(sample[None]).shape[0] == 1
