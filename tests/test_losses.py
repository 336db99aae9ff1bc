"""Losses: Keras's values (KERAS_BACKEND=numpy), gradients by finite differences, stability."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import gradcheck
from numba_gn.training import losses


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _data(rng):
    logits = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    labels = np.array([0, 2, 4, 1, 2, 3])
    onehot = np.eye(5, dtype=np.float32)[labels]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    binary = (rng.random((6, 5)) > 0.5).astype(np.float32)
    return logits, labels, onehot, probs, binary


CASES = [
    ("SparseCategoricalCrossentropy", dict(from_logits=True), "labels", "logits"),
    ("SparseCategoricalCrossentropy", dict(), "labels", "probs"),
    ("SparseCategoricalCrossentropy", dict(from_logits=True, ignore_class=2), "labels", "logits"),
    ("CategoricalCrossentropy", dict(from_logits=True), "onehot", "logits"),
    ("CategoricalCrossentropy", dict(from_logits=True, label_smoothing=0.1), "onehot", "logits"),
    ("CategoricalCrossentropy", dict(), "onehot", "probs"),
    ("BinaryCrossentropy", dict(from_logits=True), "binary", "logits"),
    ("BinaryCrossentropy", dict(label_smoothing=0.2), "binary", "probs"),
    ("MeanSquaredError", dict(), "binary", "logits"),
    ("MeanSquaredError", dict(reduction="sum"), "binary", "logits"),
    ("MeanSquaredError", dict(reduction=None), "binary", "logits"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("weighted", [False, True])
def test_values_match_keras(keras, case, weighted, rng):
    name, kwargs, target, pred = case
    logits, labels, onehot, probs, binary = _data(rng)
    data = dict(logits=logits, labels=labels, onehot=onehot, probs=probs, binary=binary)
    sw = rng.random(6).astype(np.float32) if weighted else None
    ours = getattr(losses, name)(**kwargs)(data[target], data[pred], sample_weight=sw)
    ref = getattr(keras.losses, name)(**kwargs)(data[target], data[pred], sample_weight=sw)
    # Keras's NumPy backend takes a float32 sigmoid of binary logits and then logs of
    # 1 - sigmoid, losing ~1e-5 relative; ours is exact (checked in float64 below).
    rtol = 5e-5 if name == "BinaryCrossentropy" and kwargs.get("from_logits") else 2e-6
    np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(ref), rtol=rtol,
                               atol=1e-7)


def test_binary_logits_exact_in_float64(rng):
    x = rng.standard_normal((4, 3)) * 10
    z = (rng.random((4, 3)) > 0.5).astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    expected = -(z * np.log(p) + (1 - z) * np.log1p(-p)).mean()
    ours = losses.BinaryCrossentropy(from_logits=True)(z, x).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_gradients(case, rng):
    name, kwargs, target, pred = case
    logits, labels, onehot, probs, binary = _data(rng)
    data = dict(logits=logits, labels=labels, onehot=onehot, probs=probs, binary=binary)
    loss = getattr(losses, name)(**kwargs)
    y = data[target].astype(np.float64) if target != "labels" else labels
    p = data[pred].astype(np.float64)
    if pred == "probs":
        p = 0.05 + 0.9 * p  # inside the clip range: the gradient is smooth there
    gradcheck(lambda t: loss(y, t), [p])


def test_sparse_accepts_trailing_axis_of_one(rng):
    logits, labels, *_ = _data(rng)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(loss(labels[:, None], logits).numpy(), loss(labels, logits).numpy())


def test_logits_paths_are_stable():
    big = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sce = losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([1]), big).numpy()
        cce = losses.CategoricalCrossentropy(from_logits=True)(np.array([[0, 1, 0.0]]), big)
        bce = losses.BinaryCrossentropy(from_logits=True)(np.array([[1.0, 0.0, 1.0]]), big)
    np.testing.assert_allclose(sce, 2e4, rtol=1e-6)
    np.testing.assert_allclose(cce.numpy(), 2e4, rtol=1e-6)
    np.testing.assert_allclose(bce.numpy(), np.log(2) / 3, rtol=1e-6)


def test_get_and_config():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("sparse_categorical_crossentropy"),
                      losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("BinaryCrossentropy"), losses.BinaryCrossentropy)
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    again = losses.deserialize(losses.serialize(loss))
    assert again.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="Could not interpret loss"):
        losses.get("nope")
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="avg")


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        losses.BinaryCrossentropy()(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="until the last"):
        losses.SparseCategoricalCrossentropy()(np.zeros(3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="Labels"):
        losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([5]), np.zeros((1, 4)))
