"""Subclassed models: ``class Net(numba_gn.Model)`` with ``__init__`` and ``call``.

Keras's dispatch between functional and subclassed use, attribute tracking of layers, lazy
building (first call, ``build``, ``fit``, ``evaluate``, ``predict``), the ``training`` flag,
several inputs and outputs, configs, and parity with the same subclass in Keras.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import numba_gn
from numba_gn import layers
from numba_gn.autograd import Tensor
from numba_gn.models import Model, Sequential, model_from_json
from numba_gn.models.functional import Functional


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


class Net(Model):
    """Dense -> Dropout -> a list of Dense blocks -> Dense."""

    def __init__(self, units: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(units, activation="relu")
        self.drop = layers.Dropout(0.5, seed=3)
        self.blocks = [layers.Dense(5), layers.Dense(4)]
        self.out = layers.Dense(2)

    def call(self, x, training=False):
        h = self.drop(self.hidden(x), training=training)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


class TwoInTwoOut(Model):
    """Takes ``[a, b]``, returns ``[p, q]``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.left = layers.Dense(3)
        self.right = layers.Dense(3)
        self.heads = {"p": layers.Dense(2), "q": layers.Dense(1)}

    def call(self, inputs):
        h = self.left(inputs[0]) + self.right(inputs[1])
        return [self.heads["p"](h), self.heads["q"](h)]


def test_model_dispatches_between_functional_and_subclassed_use():
    assert type(Net()) is Net and not isinstance(Net(), Functional)
    a = numba_gn.Input((3,))
    out = layers.Dense(2)(a)
    assert type(Model(a, out)) is Functional
    assert type(Model(inputs=a, outputs=out)) is Functional
    assert type(Model(a, outputs=out)) is Functional
    plain = Model(name="bare")
    assert type(plain) is Model and plain.name == "bare" and plain.layers == []
    with pytest.raises(NotImplementedError, match="does not have a `call\\(\\)`"):
        plain(np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="keyword arguments"):
        Model("just-one")


def test_a_subclass_may_build_itself_as_a_functional_graph(rng):
    class Residual(Model):
        def __init__(self, width: int = 4):
            inputs = numba_gn.Input((width,))
            outputs = layers.Add()([inputs, layers.Dense(width)(inputs)])
            super().__init__(inputs, outputs, name="residual")

        def describe(self) -> str:
            return f"{self.name}: {len(self.layers)} layers"

    model = Residual()
    assert type(model) is Residual and model.describe() == "residual: 3 layers"
    x = _f32(rng, 2, 4)
    k, b = model.get_weights()
    np.testing.assert_allclose(model.predict(x), x + x @ k + b, rtol=1e-5, atol=1e-6)


def test_layers_are_tracked_and_the_model_builds_on_its_first_call(rng):
    net = Net(name="net")
    assert not net.built and net.weights == []
    assert [type(la).__name__ for la in net.layers] == ["Dense", "Dropout", "Dense", "Dense",
                                                         "Dense"]
    y = net(_f32(rng, 3, 4))
    assert isinstance(y, Tensor) and y.shape == (3, 2) and net.built
    assert [w.shape for w in net.weights] == [(4, 6), (6,), (6, 5), (5,), (5, 4), (4,),
                                              (4, 2), (2,)]
    assert net.weights[0].path == f"net/{net.hidden.name}/kernel"  # Keras's path
    assert net.get_layer(index=4) is net.out and net.get_layer(net.drop.name) is net.drop


def test_build_with_an_input_shape_creates_the_weights():
    net = Net()
    net.build((None, 7))
    assert net.built and net.weights[0].shape == (7, 6)
    two = TwoInTwoOut()
    two.build([(None, 4), (None, 2)])
    assert [w.shape for w in two.weights[:4]] == [(4, 3), (3,), (2, 3), (3,)]
    lines: list[str] = []
    two.summary(print_fn=lines.append)
    assert lines[0].startswith('Model: "two_in_two_out')
    rows = [line for line in lines if "(Dense)" in line]
    assert len(rows) == 4 and all(row.split()[2] == "?" for row in rows)


def test_the_training_flag_reaches_the_layers(rng):
    net = Net()
    x = _f32(rng, 8, 4)
    inference = net(x).numpy()
    np.testing.assert_array_equal(net(x, training=False).numpy(), inference)
    assert not np.allclose(net(x, training=True).numpy(), inference)  # dropout is on


def test_compile_fit_evaluate_predict_build_an_unbuilt_model(rng):
    x, y = _f32(rng, 32, 4), _f32(rng, 32, 2)
    net = Net()
    net.compile(numba_gn.optimizers.Adam(0.01), "mse")
    history = net.fit(x, y, batch_size=8, epochs=5, seed=0, verbose=0)
    assert net.built and history.history["loss"][-1] < history.history["loss"][0]
    loss = net.evaluate(x, y, verbose=0)
    pred = net.predict(x, batch_size=5)
    assert loss == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    fresh = Net()
    fresh.compile("sgd", "mse")
    assert np.isfinite(fresh.evaluate(x, y, verbose=0)) and fresh.built
    other = Net()
    assert other.predict(x).shape == (32, 2) and other.built


def test_several_inputs_and_outputs(rng):
    model = TwoInTwoOut()
    xs = [_f32(rng, 20, 4), _f32(rng, 20, 2)]
    ys = [_f32(rng, 20, 2), _f32(rng, 20, 1)]
    model.compile("sgd", loss=["mse", "mse"], loss_weights=[1.0, 3.0])
    history = model.fit(xs, ys, batch_size=4, epochs=3, verbose=0, seed=0)
    assert list(history.history) == ["loss", "output_0_loss", "output_1_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    logs = model.evaluate(xs, ys, verbose=0, return_dict=True)
    p, q = model.predict(xs)
    assert logs["output_0_loss"] == pytest.approx(float(np.mean((p - ys[0]) ** 2)), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["output_0_loss"] + 3 * logs["output_1_loss"],
                                         rel=1e-5)
    with pytest.raises(ValueError, match="must be a list of 2"):
        model.evaluate(xs, ys[0], verbose=0)


def test_dict_inputs_reach_call_as_a_dict(rng):
    class Keyed(Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(1)

        def call(self, inputs):
            assert set(inputs) == {"a", "b"}
            return self.dense(inputs["a"] * inputs["b"])

    model = Keyed()
    x = {"a": _f32(rng, 6, 3), "b": _f32(rng, 6, 3)}
    model.compile("sgd", "mse")
    model.fit(x, _f32(rng, 6, 1), verbose=0)
    k, b = model.get_weights()
    np.testing.assert_allclose(model.predict(x), (x["a"] * x["b"]) @ k + b, rtol=1e-5, atol=1e-6)


def test_a_subclassed_model_nests_in_sequential_and_functional_models(rng):
    net = Net()
    seq = Sequential([numba_gn.Input((4,)), net, layers.Dense(1)])
    assert seq.built and seq.output_shape == (None, 1)
    a = numba_gn.Input((4,))
    fun = Model(a, layers.Dense(1)(net(a)))
    x = _f32(rng, 3, 4)
    inner = net.predict(x)
    k, b = fun.layers[-1].get_weights()
    np.testing.assert_allclose(fun.predict(x), inner @ k + b, rtol=1e-5, atol=1e-6)


def test_configs_of_subclassed_models():
    net = Net(name="cfg_net")
    config = net.get_config()
    assert config["name"] == "cfg_net" and config["trainable"] is True
    payload = json.loads(net.to_json())
    assert (payload["module"], payload["class_name"], payload["registered_name"]) == (
        None, "Net", "Net")
    with pytest.raises(ValueError, match="unknown model class 'Net'"):
        model_from_json(net.to_json())
    rebuilt = Net.from_config({"name": "again", "units": 3})
    assert type(rebuilt) is Net and rebuilt.name == "again" and rebuilt.hidden.units == 3
    with pytest.raises(TypeError, match="Unable to revive model Net"):
        Net.from_config({"nonsense": 1})


def test_weights_follow_keras_for_the_same_subclass(rng):
    keras = pytest.importorskip("keras")

    class KNet(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(6, activation="relu")
            self.drop = keras.layers.Dropout(0.5, seed=3)
            self.blocks = [keras.layers.Dense(5), keras.layers.Dense(4)]
            self.out = keras.layers.Dense(2)

        def call(self, x, training=False):
            h = self.drop(self.hidden(x), training=training)
            for block in self.blocks:
                h = block(h)
            return self.out(h)

    x = _f32(rng, 5, 4)
    theirs = KNet(name="knet")
    expected = keras.ops.convert_to_numpy(theirs(x))
    ours = Net(name="knet")
    ours.build((None, 4))
    # Layer names count per process (dense_12, ...): the order and kinds are what must agree.
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [
        (w.name, tuple(w.shape)) for w in theirs.weights
    ]
    assert all(w.path.startswith("knet/") for w in ours.weights)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x), expected, rtol=1e-5, atol=1e-5)
