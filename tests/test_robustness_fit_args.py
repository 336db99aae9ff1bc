"""Bad arguments to compile/fit/evaluate/predict, the layers and Sequential fail at the call.

Each one raises ``ValueError`` or ``TypeError`` naming the argument, before any work: the
weights and the optimizer's iteration count are unchanged afterwards. Counts must be real ints
(0, -1, nan, inf, 10**400, 2.5 and bools are refused) where Keras would crash later, train
nothing, or quietly drop samples.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from numba_gn.layers import Dense, GroupNormalization, Input
from numba_gn.models import Sequential
from numba_gn.training import metrics, optimizers

N = 20
HUGE = 10**400


def _ids(value):
    """Readable test ids: "10**400" rather than its 401 digits."""
    return "10**400" if value == HUGE and not isinstance(value, float) else None


NAN, INF = math.nan, math.inf
BAD_COUNTS = [  # (value, exception) for a positive count
    (0, ValueError), (-1, ValueError), (HUGE, ValueError), (NAN, TypeError), (INF, TypeError),
    (2.5, TypeError), (32.0, TypeError), (True, TypeError), ("32", TypeError),
]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 4)).astype(np.float32)
    y = rng.standard_normal((N, 1)).astype(np.float32)
    return x, y


@pytest.fixture
def model():
    m = Sequential([Input((4,)), Dense(3), Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    return m


def _snapshot(model):
    return [w.numpy().copy() for w in model.weights], model.optimizer.iterations


def _assert_unchanged(model, snapshot):
    values, iterations = snapshot
    assert model.optimizer.iterations == iterations == 0
    assert len(model.weights) == len(values)
    for w, v in zip(model.weights, values, strict=True):
        np.testing.assert_array_equal(w.numpy(), v)


def _refused(model, call, exc, name):
    before = _snapshot(model)
    with pytest.raises(exc, match=name):
        call()
    _assert_unchanged(model, before)


# -- the reported cases ----------------------------------------------------------------------------


def test_reported_batch_sizes_are_refused(model, data):
    x, y = data
    _refused(model, lambda: model.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size")
    _refused(model, lambda: model.predict(x, batch_size=0), ValueError, "batch_size")
    _refused(model, lambda: model.fit(x, y, batch_size=-1, verbose=0), ValueError, "batch_size")
    _refused(model, lambda: model.evaluate(x, y, batch_size=-1, verbose=0), ValueError,
             "batch_size")


# -- counts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "exc"), BAD_COUNTS, ids=_ids)
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_batch_size(model, data, method, value, exc):
    x, y = data
    calls = {
        "fit": lambda: model.fit(x, y, batch_size=value, verbose=0),
        "evaluate": lambda: model.evaluate(x, y, batch_size=value, verbose=0),
        "predict": lambda: model.predict(x, batch_size=value),
    }
    _refused(model, calls[method], exc, "batch_size")


@pytest.mark.parametrize(("value", "exc"), [*BAD_COUNTS, (None, TypeError)], ids=_ids)
def test_epochs(model, data, value, exc):
    x, y = data
    _refused(model, lambda: model.fit(x, y, epochs=value, verbose=0), exc, "epochs")


@pytest.mark.parametrize(
    ("value", "exc"),
    [(v, e) for v, e in BAD_COUNTS if v != 0] + [(None, TypeError), (1.0, TypeError)],
    ids=_ids,
)
def test_initial_epoch(model, data, value, exc):
    x, y = data
    _refused(model, lambda: model.fit(x, y, epochs=3, initial_epoch=value, verbose=0), exc,
             "initial_epoch")


@pytest.mark.parametrize("initial_epoch", [3, 4])
def test_no_epoch_left_to_train_is_refused(model, data, initial_epoch):
    # Keras would return an empty History without a word.
    x, y = data
    _refused(model, lambda: model.fit(x, y, epochs=3, initial_epoch=initial_epoch, verbose=0),
             ValueError, "epochs")


@pytest.mark.parametrize(
    ("value", "exc"),
    [(-1, ValueError), (HUGE, ValueError), (NAN, TypeError), (INF, TypeError), (1.5, TypeError),
     (True, TypeError), ("0", TypeError)],
    ids=_ids,
)
def test_seed(model, data, value, exc):
    x, y = data
    _refused(model, lambda: model.fit(x, y, seed=value, verbose=0), exc, "seed")


# -- flags, verbose, stream ------------------------------------------------------------------------


BAD_VERBOSE = [
    (-1, ValueError), (3, ValueError), (HUGE, ValueError), ("loud", ValueError),
    (NAN, TypeError), (INF, TypeError), (1.0, TypeError), (True, TypeError), (None, TypeError),
]


@pytest.mark.parametrize(("value", "exc"), BAD_VERBOSE, ids=_ids)
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_verbose(model, data, method, value, exc):
    x, y = data
    calls = {
        "fit": lambda: model.fit(x, y, verbose=value),
        "evaluate": lambda: model.evaluate(x, y, verbose=value),
        "predict": lambda: model.predict(x, verbose=value),
    }
    _refused(model, calls[method], exc, "verbose")


@pytest.mark.parametrize("value", [0, 1, "yes", None, NAN, np.array([True, False])])
def test_shuffle(model, data, value):
    x, y = data
    _refused(model, lambda: model.fit(x, y, shuffle=value, verbose=0), TypeError, "shuffle")


@pytest.mark.parametrize("value", [0, 1, "yes", None])
def test_return_dict(model, data, value):
    x, y = data
    _refused(model, lambda: model.evaluate(x, y, return_dict=value, verbose=0), TypeError,
             "return_dict")


@pytest.mark.parametrize("value", [5, "out.txt", b""])
def test_stream(model, data, value):
    x, y = data
    _refused(model, lambda: model.fit(x, y, stream=value), TypeError, "stream")
    _refused(model, lambda: model.evaluate(x, y, stream=value), TypeError, "stream")


def test_good_values_still_work(model, data):
    x, y = data
    h = model.fit(x, y, batch_size=None, verbose=0, shuffle=np.True_, seed=np.int64(3))
    assert h.params["steps"] == 1  # None is Keras's 32: one step for 20 samples
    h = model.fit(np.concatenate([x, x]), np.concatenate([y, y]), verbose=0)
    assert h.params["steps"] == 2
    out = io.StringIO()
    model.fit(x, y, epochs=2, verbose=2, stream=out, batch_size=np.int32(5))
    assert out.getvalue().count("Epoch") == 2 and out.getvalue().count("\n") == 4
    model.fit(x, y, batch_size=1000, verbose=0)  # larger than the data: one step (Keras)
    assert model.predict(x, batch_size=None, verbose="auto").shape == (N, 1)
    assert isinstance(model.evaluate(x, y, batch_size=None, verbose=0), float)


# -- validation_split / validation_data ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "exc"),
    [(-0.1, ValueError), (1, ValueError), (1.5, ValueError), (NAN, ValueError),
     (INF, ValueError), (-INF, ValueError), (HUGE, ValueError), (True, TypeError),
     ("0.2", TypeError), (None, TypeError)],
    ids=_ids,
)
def test_validation_split(model, data, value, exc):
    x, y = data
    _refused(model, lambda: model.fit(x, y, validation_split=value, verbose=0), exc,
             "validation_split")


@pytest.mark.parametrize("value", [1e-17, 0.99])
def test_validation_split_leaving_an_empty_part(model, data, value):
    x, y = data
    _refused(model, lambda: model.fit(x, y, validation_split=value, verbose=0), ValueError,
             "validation_split")


def _bad_validation_data(x, y):
    return {
        "one item": ((x,), ValueError),
        "four items": ((x, y, np.ones(N), np.ones(N)), ValueError),
        "weight count": ((x, y, np.ones(N - 1)), ValueError),
        "weight values": ((x, y, np.full(N, np.nan)), ValueError),
        "an array": (x, ValueError),
        "a dict": ({"x": x, "y": y}, ValueError),
        "feature shape": ((x[:, :3], y), ValueError),
        "target shape": ((x, y[:, 0]), ValueError),
        "sample counts": ((x[:5], y[:4]), ValueError),
        "empty": ((x[:0], y[:0]), ValueError),
        "None x": ((None, y), TypeError),
        "strings": ((x, np.array(["a"] * N)), TypeError),
    }


@pytest.mark.parametrize("case", list(_bad_validation_data(np.zeros((1, 1)), np.zeros((1, 1)))))
def test_validation_data(model, data, case):
    x, y = data
    value, exc = _bad_validation_data(x, y)[case]
    _refused(model, lambda: model.fit(x, y, validation_data=value, verbose=0), exc,
             "validation_data")


# -- x and y ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_x_y(model, data, method):
    x, y = data

    def call(xx, yy):
        if method == "fit":
            return lambda: model.fit(xx, yy, verbose=0)
        return lambda: model.evaluate(xx, yy, verbose=0)

    _refused(model, call(x[:19], y), ValueError, "`x` and `y`")
    _refused(model, call(x[:0], y[:0]), ValueError, "`x`.*empty")
    _refused(model, call(None, y), TypeError, "`x`")
    _refused(model, call(x, None), TypeError, "`y`")
    _refused(model, call(np.array(["a"] * N), y), TypeError, "`x`")
    _refused(model, call(3.0, 1.0), ValueError, "`x`")
    _refused(model, call([[1.0, 2.0], [3.0]], y), ValueError, "`x`")


def test_predict_x(model, data):
    x, _ = data
    _refused(model, lambda: model.predict(x[:0]), ValueError, "`x`.*empty")
    _refused(model, lambda: model.predict(None), TypeError, "`x`")
    _refused(model, lambda: model.predict(np.array(["a"] * N)), TypeError, "`x`")


def test_fit_on_an_unbuilt_model_trains_it(data):
    # The first step builds the model; its weights must be read after that, not before.
    x, y = data
    model = Sequential([Dense(3), Dense(1)])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=10, verbose=0)
    assert model.optimizer.iterations == 2 and len(model.weights) == 4


# -- compile ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"metrics": "accuracy"}, "metrics"), ({"metrics": 5}, "metrics"),
     ({"metrics": ["no_such_metric"]}, "metric"), ({"loss": None}, "loss"),
     ({"optimizer": "no_such_optimizer"}, "optimizer")],
)
def test_failed_compile_keeps_the_earlier_one(model, kwargs, name):
    optimizer, loss = model.optimizer, model.loss
    args = {"optimizer": "adam", "loss": "mse", **kwargs}
    with pytest.raises(ValueError, match=name):
        model.compile(**args)
    assert model.optimizer is optimizer and model.loss is loss and model.compiled_metrics == []


def test_evaluate_does_not_touch_the_compiled_metric_instances(data):
    # A Metric instance given to compile() is copied for evaluate(): fit's validation pass
    # must not add validation batches to the training metric.
    x, y = data
    labels = (y > 0).astype(np.float32)
    runs = []
    for validation_data in (None, (x[:5], 1.0 - labels[:5])):
        model = Sequential([Input((4,)), Dense(1, kernel_initializer="ones")])
        acc = metrics.Accuracy()
        model.compile(optimizer=optimizers.SGD(0.0), loss="mse", metrics=[acc])
        h = model.fit(x, labels, verbose=0, validation_data=validation_data, shuffle=False)
        runs.append(h.history["accuracy"])
        assert acc.result() == h.history["accuracy"][-1]
    assert runs[0] == runs[1]


# -- layers and Sequential -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [({"name": 5}, ValueError, "name"), ({"name": ""}, ValueError, "name"),
     ({"name": "a/b"}, ValueError, "name"), ({"trainable": 1}, ValueError, "trainable"),
     ({"trainable": "yes"}, ValueError, "trainable"), ({"trainable": None}, ValueError,
                                                        "trainable"),
     ({"autocast": "yes"}, TypeError, "autocast"), ({"dtype": 5}, TypeError, "dtype"),
     ({"dtype": "no_such_dtype"}, ValueError, "dtype")],
)
def test_layer_constructor(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        Dense(2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [({"layers": Dense(2)}, TypeError, "layers"), ({"layers": "dense"}, TypeError, "layers"),
     ({"layers": 5}, TypeError, "layers"), ({"layers": [5]}, TypeError, "Layer"),
     ({"name": 5}, ValueError, "name"), ({"trainable": 1}, ValueError, "trainable")],
)
def test_sequential_constructor(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        Sequential(**kwargs)


def test_trainable_setter_takes_only_bools():
    model = Sequential([Dense(2)])
    for bad in ("no", 0, None):
        with pytest.raises(ValueError, match="trainable"):
            model.trainable = bad
        with pytest.raises(ValueError, match="trainable"):
            model.layers[0].trainable = bad
    model.trainable = np.False_
    assert model.trainable is False and model.layers[0].trainable is False


def test_sequential_add_and_pop_misuse():
    model = Sequential([Input((4,)), Dense(4)])
    with pytest.raises(TypeError, match="Layer"):
        model.add(5)
    with pytest.raises(ValueError, match="itself"):
        model.add(model)
    outer = Sequential([model])
    with pytest.raises(ValueError, match="itself"):
        model.add(outer)
    with pytest.raises(TypeError, match="rebuild"):
        model.add(Dense(2), rebuild=1)
    with pytest.raises(TypeError, match="rebuild"):
        model.pop(rebuild="yes")
    with pytest.raises(ValueError, match="InputLayer"):
        model.add(Input((4,)))
    # A layer that cannot be built on the model's output is not added.
    weights = model.weights
    with pytest.raises(ValueError):
        model.add(GroupNormalization(groups=3))  # 4 channels, 3 groups
    assert len(model.layers) == 1 and model.weights == weights
    assert model.output_shape == (None, 4)
    model.add(GroupNormalization(groups=2))
    assert len(model.layers) == 2 and model.output_shape == (None, 4)
    model.pop()
    model.pop()
    with pytest.raises(IndexError, match="no layers"):
        model.pop()
