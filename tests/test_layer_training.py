"""A short training loop: GroupNormalization + an affine map, GradientTape and plain SGD.

The optimizer is written out (four lines) as Keras's applies updates: subtract the gradient,
then project each variable with its constraint.
"""

from __future__ import annotations

import numpy as np

from numba_gn import GradientTape, Variable
from numba_gn import autograd as ag
from numba_gn.layers import GroupNormalization
from numba_gn.params import initializers


def _teacher_data(rng):
    """Targets from a fixed GN + affine teacher, on inputs with an offset and a scale."""
    x = (3.0 + 2.0 * rng.standard_normal((32, 5, 8))).astype(np.float32)
    teacher = GroupNormalization(groups=4)
    teacher.build(x.shape)
    teacher.set_weights([rng.uniform(0.5, 1.5, 8), rng.standard_normal(8)])
    w = rng.standard_normal((8, 3)).astype(np.float32)
    target = teacher(x).numpy() @ w + 0.1
    return x, target


def test_sgd_lowers_the_loss_and_keeps_gamma_non_negative(rng):
    x, target = _teacher_data(rng)
    norm = GroupNormalization(
        groups=4,
        gamma_initializer=initializers.Constant(0.05),  # small: early steps push some below 0
        gamma_constraint="non_neg",
        gamma_regularizer="l2",
    )
    kernel = Variable(initializers.GlorotUniform(seed=1), shape=(8, 3), name="kernel")
    bias = Variable(np.zeros(3, np.float32), name="bias")

    def loss_fn():
        pred = ag.matmul(norm(x), kernel) + bias
        mse = ag.mean(ag.square(pred - target))
        return mse + sum(norm.losses, ag.Tensor(np.float32(0.0)))

    lr = 0.1
    losses, clamped = [], 0
    for _ in range(40):
        with GradientTape() as tape:
            loss = loss_fn()
        variables = norm.trainable_weights + [kernel, bias]
        grads = tape.gradient(loss, variables)
        assert all(
            g is not None and g.shape == v.shape for g, v in zip(grads, variables, strict=True)
        )
        for v, g in zip(variables, grads, strict=True):
            v.assign_sub(lr * g)
            if v.constraint is not None:
                clamped += int(np.sum(v.numpy() < 0))
                v.assign(v.constraint(v.numpy()))
        assert np.all(norm.gamma.numpy() >= 0), "non_neg must hold after every step"
        losses.append(float(loss.numpy()))

    assert clamped > 0, "the constraint was never exercised; the test would prove nothing"
    assert losses[-1] < 0.3 * losses[0]
    assert np.isfinite(losses).all()
    assert norm.gamma.dtype == kernel.dtype == np.float32


def test_frozen_layer_is_not_updated(rng):
    x, target = _teacher_data(rng)
    norm = GroupNormalization(groups=4, trainable=False)
    kernel = Variable(initializers.GlorotUniform(seed=2), shape=(8, 3), name="kernel")
    norm.build(x.shape)
    before = norm.get_weights()
    for _ in range(3):
        with GradientTape() as tape:
            loss = ag.mean(ag.square(ag.matmul(norm(x), kernel) - target))
        variables = norm.trainable_weights + [kernel]
        assert variables == [kernel]
        (g,) = tape.gradient(loss, variables)
        kernel.assign_sub(0.1 * g)
    for b, a in zip(before, norm.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
