"""Concurrent first calls build a layer or model exactly once, and every thread uses its weights.

Two threads are released together by a ``threading.Barrier`` onto a fresh, unbuilt layer, so
both find ``built`` false at the same moment. The build must run once (under the layer's lock);
the other thread waits for it and then computes with the same weights. Each case is repeated
``TRIALS`` times: without the lock, weights were doubled (``kernel, bias, kernel, bias``) or the
second build failed with "already built" in nearly every trial.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest

from numba_gn.layers import Dense, Dropout, GroupNormalization
from numba_gn.models import Sequential
from numba_gn.training import optimizers

TRIALS = 20


def _race(make, x, threads=2):
    """Call a fresh ``make()`` from ``threads`` threads at once; per thread: output, weights."""
    layer = make()
    barrier = threading.Barrier(threads)
    results: list = [None] * threads
    errors: list = []

    def work(i):
        try:
            barrier.wait()
            y = layer(x)
            results[i] = (y.numpy(), layer.weights, [w.numpy() for w in layer.weights])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return layer, results


def _check_same_everywhere(layer, results, names):
    assert [w.name for w in layer.weights] == names
    assert len(layer.weights) == len(names)
    first_out, first_vars, first_vals = results[0]
    for out, variables, values in results[1:]:
        # The very same Variable objects, holding the very same values, give bitwise equal outputs.
        assert [id(v) for v in variables] == [id(v) for v in first_vars]
        for a, b in zip(values, first_vals, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(out, first_out)


def test_dense_is_built_once_by_concurrent_first_calls():
    x = np.random.default_rng(0).standard_normal((2, 2048)).astype(np.float32)
    for _ in range(TRIALS):
        layer, results = _race(lambda: Dense(2048), x)
        _check_same_everywhere(layer, results, ["kernel", "bias"])
        assert layer.built and layer.kernel is layer.weights[0]


def test_dense_on_zeros_as_reported():
    # The reported reproducer: zeros in, so the output is the bias; the weights still must not
    # be doubled.
    x = np.zeros((2, 2048), np.float32)
    for _ in range(TRIALS):
        layer, results = _race(lambda: Dense(2048), x)
        _check_same_everywhere(layer, results, ["kernel", "bias"])


def test_group_normalization_is_built_once_by_concurrent_first_calls():
    x = np.random.default_rng(1).standard_normal((2, 4096)).astype(np.float32)
    for _ in range(TRIALS):
        layer, results = _race(
            lambda: GroupNormalization(groups=32, gamma_initializer="random_normal"), x
        )
        _check_same_everywhere(layer, results, ["gamma", "beta"])
        assert layer.gamma is layer.weights[0]


def test_sequential_without_input_is_built_once_by_concurrent_first_calls():
    x = np.random.default_rng(2).standard_normal((2, 1024)).astype(np.float32)

    def make():
        return Sequential([Dense(1024), GroupNormalization(groups=8), Dense(512)])

    for _ in range(TRIALS):
        model, results = _race(make, x)
        _check_same_everywhere(model, results, ["kernel", "bias", "gamma", "beta"] + [
            "kernel", "bias"])
        assert [len(layer.weights) for layer in model.layers] == [2, 2, 2]
        assert model.output_shape == (None, 512)


def test_many_threads_build_once():
    x = np.random.default_rng(3).standard_normal((2, 1024)).astype(np.float32)
    for _ in range(5):
        layer, results = _race(lambda: Dense(1024), x, threads=6)
        _check_same_everywhere(layer, results, ["kernel", "bias"])


def test_waiting_thread_still_checks_its_input_against_the_built_spec():
    # The thread that loses the race must not skip the input check: its input is checked
    # against the spec the winner's build set.
    for _ in range(TRIALS):
        layer = Dense(8)
        barrier = threading.Barrier(2)
        outcomes: dict = {}

        def work(key, x, barrier=barrier, layer=layer, outcomes=outcomes):
            barrier.wait()
            try:
                layer(x)
                outcomes[key] = "ok"
            except ValueError as exc:
                outcomes[key] = str(exc)

        a = threading.Thread(target=work, args=("a", np.ones((2, 2048), np.float32)))
        b = threading.Thread(target=work, args=("b", np.ones((2, 1024), np.float32)))
        a.start(), b.start()
        a.join(), b.join()
        assert sorted(outcomes) == ["a", "b"]
        # Exactly one shape won the build; the other call was refused with a clear message.
        assert sorted(v == "ok" for v in outcomes.values()) == [False, True]
        assert len(layer.weights) == 2


def test_explicit_build_and_failed_build_still_behave():
    layer = GroupNormalization(groups=4)
    with pytest.raises(ValueError):
        layer(np.ones((2, 3, 6)))  # 6 channels, 4 groups: the build fails and is undone
    assert not layer.built and layer.weights == []
    assert layer(np.ones((2, 3, 8))).shape == (2, 3, 8)
    with pytest.raises(ValueError, match="already built"):
        layer.build((2, 3, 8))
    assert len(layer.weights) == 2


def test_locked_layers_still_copy_and_pickle():
    x = np.random.default_rng(4).standard_normal((3, 8)).astype(np.float32)
    model = Sequential([Dense(4), GroupNormalization(groups=2), Dropout(0.5, seed=1)])
    model(x)
    model.compile(optimizer="sgd", loss="mse")
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone._build_lock is not model._build_lock
        assert clone._train_lock is not model._train_lock
        np.testing.assert_array_equal(clone(x).numpy(), model(x).numpy())
        clone.fit(x, np.zeros((3, 4), np.float32), verbose=0)  # its training lock works
        # The clone's lock works: a fresh sub-layer of the clone can still be built.
        fresh = Dense(2)
        clone.add(fresh)
        assert fresh.built and clone.output_shape == (None, 2)
    shallow = copy.copy(Dense(3))
    assert shallow(x).shape == (3, 3)


def test_concurrent_fit_calls_are_serialised():
    # One model trained from two threads: the steps of both fits run one fit after the other,
    # so the optimizer sees every step once and the metric state is not interleaved.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    model = Sequential([Dense(4), Dense(1)])
    model.compile(optimizer=optimizers.SGD(0.01), loss="mse")
    barrier = threading.Barrier(2)
    errors: list = []

    def work():
        try:
            barrier.wait()
            model.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=0)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(2)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert model.optimizer.iterations == 2 * 2 * 4
    assert len(model.weights) == 4


def test_concurrent_evaluate_and_predict_match_sequential_results():
    # evaluate() keeps its metrics per call (copies of a compiled Metric instance), so threads
    # evaluating one model at once each get the single-threaded answer.
    from numba_gn.training import metrics

    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    y = (rng.standard_normal((40, 1)) > 0).astype(np.float32)
    model = Sequential([Dense(4), Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=[metrics.Accuracy()])
    expected_eval = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    expected_pred = model.predict(x, batch_size=7)
    barrier = threading.Barrier(4)
    results: list = []

    def work():
        barrier.wait()
        for _ in range(10):
            results.append((model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True),
                            model.predict(x, batch_size=7)))

    pool = [threading.Thread(target=work) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(results) == 40
    for logs, pred in results:
        assert logs == expected_eval
        np.testing.assert_array_equal(pred, expected_pred)
