"""Optimizers: the same updates as Keras 3 (bitwise in float32), constraints, clipping, config."""

from __future__ import annotations

import numpy as np
import pytest

from numba_gn import Variable
from numba_gn.training import optimizers


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


CASES = [
    ("SGD", dict()),
    ("SGD", dict(learning_rate=0.1, momentum=0.9)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict()),
    ("Adam", dict(learning_rate=0.01, amsgrad=True)),
    ("Adam", dict(clipnorm=0.5)),
    ("Adam", dict(global_clipnorm=0.5)),
    ("Adam", dict(clipvalue=0.1, weight_decay=0.01)),
    ("AdamW", dict()),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.1, beta_1=0.8)),
    ("SGD", dict(learning_rate=0.1, clipnorm=0.3, weight_decay=0.05)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("steps", [1, 4])
def test_updates_match_keras(keras, case, steps, rng):
    name, kwargs = case
    w0 = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    ours_vars = [Variable(w) for w in w0]
    ref_vars = [keras.Variable(w) for w in w0]
    ours = getattr(optimizers, name)(**kwargs)
    ref = getattr(keras.optimizers, name)(**kwargs)
    for _ in range(steps):
        grads = [rng.standard_normal(w.shape).astype(np.float32) for w in w0]
        ours.apply(grads, ours_vars)
        ref.apply(grads, ref_vars)
    for v, r in zip(ours_vars, ref_vars, strict=True):
        np.testing.assert_allclose(v.numpy(), keras.ops.convert_to_numpy(r), rtol=1e-6, atol=1e-7)
    assert ours.iterations == steps


def test_keras_defaults():
    sgd, adam, adamw = optimizers.SGD(), optimizers.Adam(), optimizers.AdamW()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov) == (0.01, 0.0, False)
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999,
                                                                            1e-7)
    assert adamw.weight_decay == 0.004 and adamw.learning_rate == 0.001


def test_constraint_applied_after_each_update():
    v = Variable(np.array([0.5, -0.5, 2.0], np.float32), constraint="non_neg")
    opt = optimizers.SGD(learning_rate=1.0)
    opt.apply([np.array([1.0, 0.0, 0.0], np.float32)], [v])
    np.testing.assert_array_equal(v.numpy(), [0.0, 0.0, 2.0])


def test_none_gradients_skipped_and_weight_decay_exclusion():
    a, b = Variable(np.ones(2, np.float32), name="kernel"), Variable(np.ones(2, np.float32),
                                                                      name="bias")
    opt = optimizers.AdamW(weight_decay=0.5, learning_rate=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply([np.zeros(2, np.float32), np.zeros(2, np.float32)], [a, b])
    np.testing.assert_allclose(a.numpy(), 1 - 0.5 * 0.1)  # decayed (zero gradient: no step)
    np.testing.assert_array_equal(b.numpy(), 1.0)  # excluded
    opt.apply([None, np.ones(2, np.float32)], [a, b])
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply([None], [a])


def test_schedule_and_config():
    opt = optimizers.SGD(learning_rate=lambda step: 0.1 / (1 + step))
    v = Variable(np.zeros(1, np.float32))
    opt.apply([np.ones(1, np.float32)], [v])
    opt.apply([np.ones(1, np.float32)], [v])
    np.testing.assert_allclose(v.numpy(), [-0.1 - 0.05])
    adam = optimizers.Adam(learning_rate=0.01, clipnorm=1.0)
    again = optimizers.deserialize(optimizers.serialize(adam))
    assert again.get_config() == adam.get_config()
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        optimizers.get("rmsprop")
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_reads_keras_config(keras):
    cfg = keras.optimizers.Adam(learning_rate=0.02, clipnorm=2.0).get_config()
    ours = optimizers.Adam.from_config(cfg)
    assert ours.learning_rate == pytest.approx(0.02) and ours.clipnorm == 2.0


def test_cosine_decay_matches_keras(keras):
    ours = optimizers.CosineDecay(0.003, 100, alpha=0.1)
    ref = keras.optimizers.schedules.CosineDecay(0.003, 100, alpha=0.1)
    for step in (0, 1, 37, 99, 100, 150):
        assert ours(step) == pytest.approx(float(ref(step)), rel=1e-6)
    adam = optimizers.Adam.from_config(keras.optimizers.Adam(learning_rate=ref).get_config())
    assert isinstance(adam._learning_rate, optimizers.CosineDecay)
    assert optimizers.Adam.from_config(adam.get_config()).get_config() == adam.get_config()
