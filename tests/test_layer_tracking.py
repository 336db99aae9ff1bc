"""Layers and Variables held in a custom layer's attributes are tracked as Keras tracks them.

The same block is written once and built twice, as a ``keras.layers.Layer`` and as a
``numba_gn.layers.Layer``: weight paths, shapes and order, trainable flags, regularization losses
and outputs (after copying Keras's weights in) must agree. The rest checks what Keras does not
share with us or what needs no Keras: reassigning and deleting attributes, changes to tracked
lists and dicts, the ``training`` call context (per thread), custom layers without ``build`` or
``compute_output_shape`` inside ``Sequential``, copies, and concurrent first builds.
"""

from __future__ import annotations

import copy
import pickle
import threading
import types
import warnings

import numpy as np
import pytest

from numba_gn import Variable
from numba_gn import autograd as ag
from numba_gn import layers as ng_layers
from numba_gn.layers import (
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling1D,
    GroupNormalization,
    Input,
    Layer,
)
from numba_gn.layers._tracking import TrackedDict, TrackedList
from numba_gn.models import Sequential
from numba_gn.training import optimizers

OURS_OPS = types.SimpleNamespace(mean=ag.mean, concatenate=ag.concatenate)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def make_block_class(base, layers, variable, ops, name="Block"):
    """One block definition for both libraries: sublayers in attributes, lists, a tuple,
    dicts and nested containers, an own weight, a bare non-trainable Variable, and a layer
    appended to a list after another attribute was set (tracked when appended)."""

    class Block(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = layers.Conv2D(4, 3, padding="same", name="conv")
            self.norm = layers.GroupNormalization(groups=2, name="norm")
            self.blocks = [layers.Dense(4, name="b0"),
                           layers.Dense(4, name="b1", kernel_regularizer="l2")]
            self.heads = {"a": layers.Dense(1, name="head_a"), "b": layers.Dense(2, name="head_b")}
            self.pair = (layers.Dense(3, name="t0"), [layers.Dense(3, name="t1")])
            self.nested = {"x": [layers.Dense(2, name="n0"), {"y": layers.Dense(2, name="n1")}]}
            self.scale = self.add_weight(
                name="scale", shape=(4,), initializer="ones", regularizer="l2"
            )
            self.bare = variable(np.zeros(3, np.float32), name="bare", trainable=False)
            self.late = []
            self.tail = layers.Dense(2, name="tail")
            self.late.append(layers.Dense(2, name="late"))

        def call(self, x):
            h = self.norm(self.conv(x))
            h = ops.mean(h, axis=(1, 2)) * self.scale
            for block in self.blocks:
                h = block(h)
            t = self.pair[1][0](self.pair[0](h))
            n = self.nested["x"][1]["y"](self.nested["x"][0](h))
            parts = [self.heads["a"](h), self.heads["b"](h), t, n, self.late[0](self.tail(h))]
            return ops.concatenate(parts, axis=-1)

    Block.__name__ = Block.__qualname__ = name
    return Block


# At module level, so that pickle finds it by name.
OursBlock = make_block_class(Layer, ng_layers, Variable, OURS_OPS, name="OursBlock")


@pytest.fixture(scope="module")
def blocks(keras):
    theirs = make_block_class(keras.layers.Layer, keras.layers, keras.Variable, keras.ops)
    return theirs, OursBlock


def _paths(weights):
    return [(w.path, tuple(w.shape)) for w in weights]


def _x(seed=0, shape=(3, 6, 6, 2)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- parity with Keras -----------------------------------------------------------------------------


def test_nested_weights_match_keras_in_names_shapes_and_order(keras, blocks):
    theirs, ours = (cls(name="block") for cls in blocks)
    # Before the first call: only the weights made in __init__ (own weight, bare Variable).
    assert _paths(ours.weights) == _paths(theirs.weights) == [("block/scale", (4,)),
                                                               ("bare", (3,))]
    x = _x()
    ref = keras.ops.convert_to_numpy(theirs(x))
    ours(x)
    assert _paths(ours.weights) == _paths(theirs.weights)
    assert _paths(ours.trainable_weights) == _paths(theirs.trainable_weights)
    assert _paths(ours.non_trainable_weights) == _paths(theirs.non_trainable_weights) == [
        ("bare", (3,))]
    assert ours.count_params() == theirs.count_params() == 205
    # Own weights first, then the sublayers in the order they were first assigned (the
    # Dense appended to `late` after `tail` was set comes after it).
    names = [p for p, _ in _paths(ours.weights)]
    assert names[:4] == ["block/scale", "bare", "block/conv/kernel", "block/conv/bias"]
    assert names[-4:] == ["block/tail/kernel", "block/tail/bias", "block/late/kernel",
                          "block/late/bias"]
    # Same order means Keras's weights drop straight in: same outputs.
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))


def test_regularization_losses_of_nested_layers_match_keras(keras, blocks):
    theirs, ours = (cls(name="block") for cls in blocks)
    x = _x(1)
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    expected = [float(keras.ops.convert_to_numpy(v)) for v in theirs.losses]
    assert len(expected) == 2  # the block's own `scale`, then b1's kernel
    np.testing.assert_allclose([float(v.numpy()) for v in ours.losses], expected, rtol=1e-6)
    np.testing.assert_allclose(
        float(ours.losses[1].numpy()), 0.01 * np.sum(ours.blocks[1].kernel.numpy() ** 2),
        rtol=1e-6,
    )
    # Losses are of trainable weights only: a frozen block contributes none.
    ours.trainable = False
    assert ours.losses == []


def test_block_inside_sequential_matches_keras_paths(keras, blocks):
    theirs_cls, ours_cls = blocks
    theirs = keras.Sequential([theirs_cls(name="blk"), keras.layers.Dense(3, name="out")],
                              name="model")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # Keras builds on uninitialised placeholder data
        theirs.build((None, 6, 6, 2))
    ours = Sequential([ours_cls(name="blk"), Dense(3, name="out")], name="model")
    ours.build((None, 6, 6, 2))
    assert _paths(ours.weights) == _paths(theirs.weights)
    assert [p for p, _ in _paths(ours.weights)][2] == "model/blk/conv/kernel"
    assert ours.count_params() == theirs.count_params()
    assert ours.output_shape == (None, 3)


def test_trainable_false_freezes_everything_below_like_keras(keras, blocks):
    results = []
    for block in (cls(name="block") for cls in blocks):
        block(_x())
        block.blocks[0].trainable = False  # one sublayer frozen on its own first
        states = [[w.trainable for w in block.weights], len(block.trainable_weights)]
        block.trainable = False
        states += [[w.trainable for w in block.weights], len(block.trainable_weights),
                   len(block.non_trainable_weights), block.conv.trainable,
                   block.nested["x"][1]["y"].trainable]
        block.trainable = True  # unfreezes everything again, the sublayer frozen alone too
        states += [[w.trainable for w in block.weights], len(block.trainable_weights),
                   block.blocks[0].trainable]
        results.append(states)
    assert results[1] == results[0]
    ours = results[1]
    assert ours[1] == 23 and ours[3] == 0 and ours[4] == 26 and ours[5:7] == [False, False]
    assert ours[8] == 25 and ours[9] is True
    assert ours[7][1] is False  # `bare` was created non-trainable and stays so


# -- frozen layers in training ---------------------------------------------------------------------


def test_frozen_nested_block_is_not_trained():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)

    class Stack(Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = [Dense(4), {"d": Dense(4)}]

        def call(self, x):
            return self.inner[1]["d"](self.inner[0](x))

    frozen = Stack()
    model = Sequential([Input((4,)), frozen, Dense(1)])
    frozen.trainable = False
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    before = [w.numpy() for w in frozen.weights]
    head = model.layers[-1].kernel.numpy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for a, w in zip(before, frozen.weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())
    assert not np.array_equal(head, model.layers[-1].kernel.numpy())
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 4


# -- the training flag -----------------------------------------------------------------------------


class Recorder(Layer):
    """Records the ``training`` value each call receives (None: the call's default)."""

    def __init__(self, log, **kwargs):
        super().__init__(**kwargs)
        # The bound method, not the list: a list attribute would be replaced by a tracked copy
        # (as in Keras), and the caller's list would stay empty.
        self.record = log.append

    def call(self, x, training=None):
        self.record((threading.current_thread().name, training))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


class Outer(Layer):
    """Calls a Recorder without passing ``training``; its own call takes no ``training``."""

    def __init__(self, log, **kwargs):
        super().__init__(**kwargs)
        self.parts = {"rec": Recorder(log)}

    def call(self, x):
        return self.parts["rec"](x)


def test_training_reaches_nested_layers_through_the_call_context():
    log: list = []
    outer = Outer(log)
    x = np.ones((2, 3), np.float32)
    outer(x, training=True)
    outer(x, training=False)
    outer(x)  # nothing given anywhere: the recorder's own default
    assert [t for _, t in log] == [True, False, None]
    # Outside any call the context is empty again.
    outer.parts["rec"](x)
    assert log[-1][1] is None


def test_training_propagation_matches_keras(keras):
    def run(base, layers):
        log = []

        class Rec(base):
            def call(self, x, training=None):
                log.append(training)
                return x

        class Mid(base):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.rec = Rec()

            def call(self, x):
                return self.rec(x)

        class Top(base):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.mids = [Mid()]

            def call(self, x, training=None):
                return self.mids[0](x)

        top = Top()
        x = np.ones((2, 3), np.float32)
        top(x)  # builds (Keras also traces call() then, with training None)
        del log[:]
        for kwargs in ({"training": True}, {}, {"training": False}, {"training": None}):
            top(x, **kwargs)
        top.mids[0](x, training=True)
        return log

    assert run(Layer, ng_layers) == run(keras.layers.Layer, keras.layers) == [
        True, None, False, None, True]


def test_explicit_training_applies_to_its_own_subtree_only():
    log: list = []

    class Tree(Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = Outer(log)
            self.second = Recorder(log)

        def call(self, x, training=None):
            x = self.first(x, training=False)  # its recorder sees False ...
            return self.second(x)  # ... the sibling still sees the outer True

    Tree()(np.ones((1, 2)), training=True)
    assert [t for _, t in log] == [False, True]


def test_context_is_restored_after_an_exception():
    log: list = []

    class Failing(Layer):
        def call(self, x, training=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Failing()(np.ones((1, 2)), training=True)
    Recorder(log)(np.ones((1, 2)))
    assert log == [("MainThread", None)]


def test_training_context_is_per_thread():
    # Thread A is held inside a training call while the main thread runs an inference call:
    # neither may see the other's flag.
    log: list = []
    started, resume = threading.Event(), threading.Event()

    class Slow(Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.rec = Recorder(log)

        def call(self, x):
            x = self.rec(x)
            if threading.current_thread().name == "A":
                started.set()
                assert resume.wait(10)
            return self.rec(x)

    layer = Slow()
    x = np.ones((1, 2), np.float32)
    thread = threading.Thread(target=lambda: layer(x, training=True), name="A")
    thread.start()
    assert started.wait(10)
    layer(x, training=False)
    resume.set()
    thread.join(10)
    assert sorted(log) == [("A", True), ("A", True), ("MainThread", False),
                           ("MainThread", False)]


def test_dropout_in_a_custom_block_follows_the_outer_flag():
    class Noisy(Layer):  # no `training` argument of its own
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = Dropout(0.5, seed=0)

        def call(self, x):
            return self.drop(x)

    block = Noisy()
    x = np.ones((4, 64), np.float32)
    np.testing.assert_array_equal(block(x).numpy(), x)
    dropped = block(x, training=True).numpy()
    assert set(np.unique(dropped)) == {0.0, 2.0}


def test_fit_trains_and_predict_infers_through_custom_blocks():
    log: list = []
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    model = Sequential([Outer(log), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((8, 1), np.float32), epochs=1, batch_size=4, verbose=0)
    # The first step builds the model; the block's output shape is found by one run in
    # inference mode, then both steps train.
    assert [t for _, t in log] == [False, True, True]
    del log[:]
    model.predict(x, batch_size=4)
    model.evaluate(x, np.zeros((8, 1), np.float32), batch_size=8, verbose=0)
    assert [t for _, t in log] == [False, False, False]


# -- reassigning, deleting, changing containers ----------------------------------------------------


def _built(units, name):
    layer = Dense(units, name=name)
    layer.build((None, 2))
    return layer


def _layer_names(layer):
    """The sublayers, by name, in the order their weights are listed."""
    names = []
    for w in layer.weights:
        name = w.path.split("/")[0]
        if name not in names:
            names.append(name)
    return names


def test_reassigning_replaces_in_place_and_del_untracks():
    host = Layer(name="host")
    host.a, host.b, host.c = _built(2, "a"), _built(2, "b"), _built(2, "c")
    assert _layer_names(host) == ["a", "b", "c"]
    host.a = _built(2, "a2")  # the new layer takes the old one's place
    assert _layer_names(host) == ["a2", "b", "c"]
    del host.b
    assert _layer_names(host) == ["a2", "c"]
    host.alias = host.c  # held twice: deleting one attribute keeps it tracked, listed once
    del host.c
    assert _layer_names(host) == ["a2", "c"]
    host.alias = None
    assert _layer_names(host) == ["a2"]
    assert host.count_params() == 6


def test_variables_in_attributes_are_tracked_and_untracked():
    host = Layer(name="host")
    host.w = host.add_weight(name="w", shape=(2,))
    host.v = Variable(np.ones(3), name="v")
    host.frozen = Variable(np.ones(1), name="frozen", trainable=False)
    assert [w.name for w in host.weights] == ["w", "v", "frozen"]
    assert [w.name for w in host.trainable_weights] == ["w", "v"]
    host.v = Variable(np.zeros(3), name="v2")  # replaced in place
    assert [w.name for w in host.weights] == ["w", "v2", "frozen"]
    host.w = None  # an add_weight weight leaves with its attribute
    del host.frozen
    assert [w.name for w in host.weights] == ["v2"]
    host.trainable = False
    host.late = Variable(np.ones(2), name="late")  # tracked by a frozen layer: frozen too
    assert host.trainable_weights == [] and not host.late.trainable
    host.trainable = True
    assert [w.name for w in host.trainable_weights] == ["v2", "late"]


def test_tracked_lists_follow_their_changes():
    host = Layer(name="host")
    host.items = [_built(2, "i0")]
    assert isinstance(host.items, TrackedList) and isinstance(host.items, list)
    host.items.append(_built(2, "i1"))
    host.items.extend([_built(2, "i2")])
    host.items += [_built(2, "i3")]
    host.items.insert(0, _built(2, "i_first"))
    assert _layer_names(host) == ["i0", "i1", "i2", "i3", "i_first"]  # order of tracking
    host.items[1] = _built(2, "i0b")  # replaces i0 in place
    assert _layer_names(host) == ["i0b", "i1", "i2", "i3", "i_first"]
    host.items.pop()  # i3
    host.items.remove(host.items[0])  # i_first
    del host.items[0]  # i0b
    assert _layer_names(host) == ["i1", "i2"]
    host.items.append([_built(2, "deep")])  # a nested list is wrapped and tracked too
    assert isinstance(host.items[-1], TrackedList)
    host.items[-1].append(_built(2, "deeper"))
    assert _layer_names(host) == ["i1", "i2", "deep", "deeper"]
    host.items.clear()
    assert host.weights == []


def test_tracked_dicts_and_tuples():
    host = Layer(name="host")
    host.heads = {"a": _built(1, "a")}
    assert isinstance(host.heads, TrackedDict)
    host.heads["b"] = _built(1, "b")
    host.heads.update(c=_built(1, "c"))
    host.heads.setdefault("d", [_built(1, "d")])
    assert _layer_names(host) == ["a", "b", "c", "d"]
    host.heads["a"] = _built(1, "a2")
    host.heads.pop("b")
    del host.heads["c"]
    assert _layer_names(host) == ["a2", "d"]
    host.heads.popitem()
    assert _layer_names(host) == ["a2"]
    host.pair = (_built(1, "t0"), {"k": _built(1, "t1")})
    assert type(host.pair) is tuple and isinstance(host.pair[1], TrackedDict)
    assert _layer_names(host) == ["a2", "t0", "t1"]
    del host.pair
    host.heads.clear()
    assert host.weights == []


def test_layer_held_in_a_list_and_an_attribute_stays_until_both_let_go():
    host = Layer(name="host")
    shared = _built(2, "shared")
    host.one = shared
    host.many = [shared, _built(2, "other")]
    assert _layer_names(host) == ["shared", "other"]
    host.many.pop(0)
    assert _layer_names(host) == ["shared", "other"]
    del host.one
    assert _layer_names(host) == ["other"]


def test_assigning_before_super_init_is_kept():
    class Early(Layer):
        def __init__(self):
            self.first = _built(2, "early")
            super().__init__(name="early_host", trainable=False)

    layer = Early()
    assert _layer_names(layer) == ["early"] and layer.trainable_weights == []


# -- get/set_weights -------------------------------------------------------------------------------


def test_get_set_weights_round_trip_and_failed_set_changes_nothing(blocks):
    block = blocks[1](name="block")
    block(_x())
    values = block.get_weights()
    assert len(values) == len(block.weights) == 26
    assert sum(v.size for v in values) == block.count_params()
    rng = np.random.default_rng(4)
    new = [rng.standard_normal(v.shape).astype(v.dtype) for v in values]
    block.set_weights(new)
    for a, b in zip(block.get_weights(), new, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expecting 26 weights"):
        block.set_weights(new[:-1])
    # Every value but the last is fine; the last has the wrong shape: nothing may change.
    with pytest.raises(ValueError, match="shape"):
        block.set_weights([np.zeros_like(v) for v in new[:-1]] + [np.zeros(5)])
    for a, b in zip(block.get_weights(), new, strict=True):
        np.testing.assert_array_equal(a, b)


def test_weight_paths_of_a_custom_block_save_and_load(tmp_path, blocks):
    block = blocks[1](name="block")
    block(_x())
    paths = [p for p, _ in block.weight_paths()]
    assert [w for _, w in block.weight_paths()] == block.weights
    assert paths[:4] == ["scale", "bare", "conv2d/kernel", "conv2d/bias"]
    assert "dense_1/kernel" in paths and len(set(paths)) == len(paths)
    model = Sequential([Input((6, 6, 2)), blocks[1](name="b2")])
    model.save_weights(tmp_path / "w.npz")
    clone = Sequential([Input((6, 6, 2)), blocks[1](name="b3")])
    clone.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(clone.predict(_x()), model.predict(_x()))


# -- custom layers inside Sequential ---------------------------------------------------------------


class Residual(Layer):
    """A block with neither ``build`` nor ``compute_output_shape``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = Dense(units, kernel_initializer="zeros")
        self.norm = GroupNormalization(groups=2)
        self.drop = Dropout(0.1, seed=0)

    def call(self, x):
        return x + self.drop(self.norm(self.dense(x)))


def test_custom_block_without_output_shape_trains_in_sequential():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x @ rng.standard_normal((8, 1)) + 0.5).astype(np.float32)
    model = Sequential([Input((8,)), Residual(8), Dense(1)])
    # Built at once from the Input: the block's sublayers ran once on zeros and have weights.
    assert model.output_shape == (None, 1)
    assert len(model.weights) == 6 and model.count_params() == 8 * 8 + 8 + 8 + 8 + 8 + 1
    model.compile(optimizer=optimizers.Adam(0.02), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=0)
    losses = history.history["loss"]
    assert losses[1] < losses[0] and model.evaluate(x, y, verbose=0) < 0.8 * before


def test_output_shapes_are_inferred_for_downsampling_and_free_dimensions(capsys):
    class Down(Layer):  # stride 2 halves the image
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = Conv2D(8, 3, strides=2, padding="same")
            self.norm = GroupNormalization(groups=4)

        def call(self, x):
            return self.norm(self.conv(x))

    model = Sequential([Input((8, 8, 3)), Down(name="down"), Flatten(), Dense(2)])
    assert model.output_shape == (None, 2)
    model.summary()
    assert "(None, 4, 4, 8)" in capsys.readouterr().out

    class Seq1D(Layer):  # the time axis is free: it stays None, the channels are known
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = Conv1D(5, 3, strides=2)

        def call(self, x):
            return self.conv(x)

    model = Sequential([Input((None, 3)), Seq1D(), GlobalAveragePooling1D(), Dense(2)])
    assert model.compute_output_shape((None, None, 3)) == (None, 2)
    assert model.layers[0]._output_shape((None, None, 3)) == (None, None, 5)
    assert model.predict(np.zeros((2, 11, 3), np.float32)).shape == (2, 2)


def test_inference_run_neither_records_nor_draws_random_numbers():
    log: list = []
    block = Residual(4)
    model = Sequential([Outer(log), block])
    with ag.GradientTape() as tape:
        model.build((None, 4))
    assert [t for _, t in log] == [False]  # the shape run is in inference mode, untaped ...
    assert len(model.weights) == 4 and tape.watched_variables() == ()
    # ... so the block's Dropout generator has not moved: it gives a fresh layer's first mask.
    ones = np.ones((8, 32), np.float32)
    np.testing.assert_array_equal(block.drop(ones, training=True).numpy(),
                                  Dropout(0.1, seed=0)(ones, training=True).numpy())


def test_a_layer_that_cannot_run_on_zeros_is_refused_with_a_clear_message():
    class Picky(Layer):
        def call(self, x):
            if not np.any(x.numpy()):
                raise ArithmeticError("no zeros, please")
            return x

    model = Sequential([Input((3,))])
    with pytest.raises(ValueError, match=r"output shape of layer .*Picky.*compute_output_shape"):
        model.add(Picky())
    assert model.layers == []


def test_custom_build_runs_on_the_first_call_and_sublayers_on_theirs():
    shapes: list = []

    class Lazy(Layer):
        def build(self, input_shape):
            shapes.append(input_shape)
            self.gate = self.add_weight(name="gate", shape=(input_shape[-1],),
                                        initializer="ones")
            self.inner = Dense(3, name="inner")  # created in build, built by its first call

        def call(self, x):
            return self.inner(x * self.gate)

    layer = Lazy(name="lazy")
    assert layer.weights == [] and not layer.built
    y = layer(np.ones((2, 5), np.float32))
    assert y.shape == (2, 3) and shapes == [(2, 5)]
    assert [w.path for w in layer.weights] == ["lazy/gate", "lazy/inner/kernel",
                                               "lazy/inner/bias"]
    layer(np.ones((4, 5), np.float32))
    assert shapes == [(2, 5)]


def test_direct_build_of_a_block_without_build_builds_its_sublayers():
    block = Residual(6)
    block.build((None, 6))
    assert block.built and block.dense.built and block.norm.built
    assert [w.shape for w in block.weights] == [(6, 6), (6,), (6,), (6,)]


def test_stateless_call_reaches_nested_weights():
    block = Residual(4)
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    expected = block(x).numpy()
    zeros = [np.zeros(w.shape, np.float32) for w in block.trainable_weights]
    y, _ = block.stateless_call(zeros, [], x)
    np.testing.assert_array_equal(y.numpy(), x)  # dense output 0, gamma 0, beta 0: identity
    np.testing.assert_array_equal(block(x).numpy(), expected)  # weights untouched


# -- copies and threads ----------------------------------------------------------------------------


def test_copies_and_pickles_keep_tracking_their_own_layers(blocks):
    block = blocks[1](name="block")
    x = _x()
    y = block(x).numpy()
    for clone in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        np.testing.assert_array_equal(clone(x).numpy(), y)
        assert [w.path for w in clone.weights] == [w.path for w in block.weights]
        assert not {id(w) for w in clone.weights} & {id(w) for w in block.weights}
        assert isinstance(clone.blocks, TrackedList) and clone.blocks._owner is clone
        clone.blocks.append(_built(4, "extra"))
        assert len(clone.weights) == 28 and len(block.weights) == 26


def test_concurrent_first_calls_build_a_custom_block_once():
    x = np.random.default_rng(7).standard_normal((2, 16)).astype(np.float32)
    for _ in range(10):
        block = Residual(16)
        barrier = threading.Barrier(2)
        results: list = [None, None]
        errors: list = []

        def work(i, block=block, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait()
                results[i] = (block(x).numpy(), [id(w) for w in block.weights])
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert not errors
        assert len(block.weights) == 4
        assert results[0][1] == results[1][1] == [id(w) for w in block.weights]
        np.testing.assert_array_equal(results[0][0], results[1][0])
