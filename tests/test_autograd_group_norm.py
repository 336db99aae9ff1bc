"""The group_norm op on the tape: gradcheck in float64 and agreement with the engine."""

import numpy as np
import pytest

from numba_gn import autograd as ag
from numba_gn import functional
from numba_gn.autograd import GradientTape, Tensor, gradcheck
from numba_gn.params import Variable

# (x shape, groups, axis, affine)
CASES = [
    ((2, 4), 2, -1, True),
    ((3, 6), 1, -1, True),
    ((2, 3, 4), 4, -1, True),
    ((2, 4, 3), 2, 1, True),
    ((2, 2, 3, 4), 2, -1, False),
    ((2, 4, 2, 3), -1, 1, True),
    ((2, 2, 3, 2), 3, (2, 3), True),  # tuple axis: channels are the 3x2 block
]


@pytest.mark.parametrize("shape, groups, axis, affine", CASES)
def test_gradcheck(shape, groups, axis, affine, rng):
    x = rng.standard_normal(shape)
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    if affine:
        gamma = rng.uniform(0.5, 1.5, size=cshape)
        beta = rng.standard_normal(cshape)
        assert gradcheck(
            lambda x, g, b: ag.group_norm(x, groups, g, b, axis=axis), [x, gamma, beta]
        )
    else:
        assert gradcheck(lambda x: ag.group_norm(x, groups=groups, axis=axis), [x])


def test_group_size_and_epsilon_are_passed_through(rng):
    x = rng.standard_normal((2, 6))
    assert gradcheck(lambda x: ag.group_norm(x, group_size=3, epsilon=0.5), [x])
    y = ag.group_norm(x, group_size=3, epsilon=0.5)
    np.testing.assert_array_equal(y.data, functional.group_norm(x, 2, epsilon=0.5))


def test_forward_matches_the_engine(rng):
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    beta = rng.standard_normal(8).astype(np.float32)
    y = ag.group_norm(Tensor(x), gamma=gamma, beta=beta, groups=4)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, functional.group_norm(x, 4, gamma, beta))


def test_parameters_get_no_gradient_when_none(rng):
    x = Tensor(rng.standard_normal((2, 4)))
    with GradientTape() as tape:
        tape.watch(x)
        loss = ag.sum(ag.group_norm(x, groups=2) * np.arange(4.0))
    dx = tape.gradient(loss, x)
    assert dx.shape == (2, 4)
    np.testing.assert_allclose(dx.sum(axis=1), 0.0, atol=1e-12)  # a group's dx sums to 0


def test_variables_train_with_float32_gradients(rng):
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    gamma = Variable("ones", shape=(6,))
    beta = Variable("zeros", shape=(6,))
    with GradientTape() as tape:
        y = ag.group_norm(x, gamma=gamma, beta=beta, groups=3)
        loss = ag.mean(ag.square(y - 1.0))
    dgamma, dbeta = tape.gradient(loss, [gamma, beta])
    assert dgamma.dtype == np.float32 and dbeta.dtype == np.float32
    dy = 2.0 * (y.data - 1.0) / y.size
    np.testing.assert_allclose(dbeta, dy.sum(axis=(0, 1)), rtol=1e-5)


def test_only_requested_gradients_are_returned(rng):
    x = Tensor(rng.standard_normal((2, 4)))
    gamma = Tensor(np.ones(4))
    beta = Tensor(np.zeros(4))
    with GradientTape() as tape:
        tape.watch(gamma)
        loss = ag.sum(ag.group_norm(x, gamma=gamma, beta=beta, groups=2) * x)
    dx, dgamma, dbeta = tape.gradient(loss, [x, gamma, beta])
    assert dx is None and dbeta is None
    assert dgamma.shape == (4,)
