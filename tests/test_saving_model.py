"""Whole models in ``.keras`` files: ``model.save`` / ``numba_gn.models.load_model``.

The main check: training N epochs straight gives exactly (bit for bit: losses and final
weights) what training k epochs, saving, loading in a *new process* and training on with
``fit(..., initial_epoch=k)`` gives, for a Sequential model with Dropout, a functional
ResNet-like graph (GroupNormalization, Add) and a registered subclassed model. Then: what the
file holds, the compile arguments and optimizer state coming back, the registry and
``custom_objects``, and a round trip of every layer type numba_gn exports.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import zipfile

import numpy as np
import pytest

import numba_gn
from numba_gn import layers
from numba_gn.models import Model, Sequential, load_model
from numba_gn.saving import get_registered_name, get_registered_object, register_serializable
from numba_gn.training import losses, metrics, optimizers
from tests._subprocess import check_python

# -- resuming in a new process is bit-exact --------------------------------------------------------

# The models, importable by every child process (the subclass registers itself on import).
MODELS_MODULE = '''
import numpy as np
import numba_gn
from numba_gn import layers as L
from numba_gn.training import losses, optimizers


@numba_gn.saving.register_serializable(package="ResumeTest")
class Tower(numba_gn.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = L.Dense(units, activation="relu")
        self.norm = L.GroupNormalization(groups=2)
        self.drop = L.Dropout(0.25, seed=5)
        self.head = L.Dense(2)

    def call(self, x, training=False):
        x = self.norm(self.hidden(x))
        return self.head(self.drop(x, training=training))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def sequential():
    model = numba_gn.Sequential([
        L.Input((10,)), L.Dense(16, activation="relu"), L.Dropout(0.3, seed=1), L.Dense(2),
    ])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


def resnet():
    x = L.Input((6, 6, 3))
    h = L.Conv2D(4, 3, padding="same")(x)
    h = L.GroupNormalization(groups=2)(h)
    h = L.Activation("relu")(h)
    h = L.Conv2D(4, 3, padding="same")(h)
    h = L.GroupNormalization(groups=2)(h)
    skip = L.Conv2D(4, 1)(x)
    h = L.Add()([h, skip])
    h = L.Activation("relu")(h)
    out = L.Dense(3)(L.GlobalAveragePooling2D()(h))
    model = numba_gn.Model(x, out)
    model.compile(optimizer=optimizers.AdamW(learning_rate=0.01),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def tower():
    model = Tower(units=8)
    model.build((None, 10))
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05, momentum=0.9), loss="mse",
                  loss_weights=0.5)
    return model


BUILDERS = {"sequential": sequential, "resnet": resnet, "tower": tower}


def data(kind):
    rng = np.random.default_rng(7)
    if kind == "resnet":
        return (rng.normal(size=(20, 6, 6, 3)).astype("float32"),
                rng.integers(0, 3, size=(20,)))
    return rng.normal(size=(20, 10)).astype("float32"), rng.normal(size=(20, 2)).astype("float32")
'''

FIRST = '''
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
import resume_models as rm

out = {}
for kind, build in rm.BUILDERS.items():
    x, y = rm.data(kind)
    straight, resumed = build(), build()
    resumed.set_weights(straight.get_weights())
    full = straight.fit(x, y, batch_size=8, epochs=4, seed=0, verbose=0).history
    first = resumed.fit(x, y, batch_size=8, epochs=2, seed=0, verbose=0).history
    resumed.save(f"{sys.argv[1]}/{kind}.keras")
    np.savez(f"{sys.argv[1]}/{kind}-straight.npz", *straight.get_weights())
    out[kind] = {"full": full, "first": first}
print(json.dumps(out))
'''

SECOND = '''
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
import resume_models as rm
import numba_gn

out = {}
for kind in rm.BUILDERS:
    x, y = rm.data(kind)
    model = numba_gn.models.load_model(f"{sys.argv[1]}/{kind}.keras")
    rest = model.fit(x, y, batch_size=8, initial_epoch=2, epochs=4, seed=0, verbose=0).history
    np.savez(f"{sys.argv[1]}/{kind}-resumed.npz", *model.get_weights())
    out[kind] = {"rest": rest, "class": type(model).__name__,
                 "iterations": model.optimizer.iterations}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory):
    """Run both processes once: straight + first half and save; then load and finish."""
    folder = tmp_path_factory.mktemp("resume")
    (folder / "resume_models.py").write_text(textwrap.dedent(MODELS_MODULE))
    first = json.loads(check_python(FIRST, args=(str(folder),), timeout=300).stdout
                       .strip().splitlines()[-1])
    second = json.loads(check_python(SECOND, args=(str(folder),), timeout=300).stdout
                        .strip().splitlines()[-1])
    return folder, first, second


@pytest.mark.parametrize("kind", ["sequential", "resnet", "tower"])
def test_resuming_in_a_new_process_is_bit_exact(resumed_runs, kind):
    folder, first, second = resumed_runs
    full, half, rest = first[kind]["full"], first[kind]["first"], second[kind]["rest"]
    assert set(full) == set(half) == set(rest)
    for key in full:
        # Floats through JSON round-trip exactly: equal lists mean bit-equal losses.
        assert half[key] + rest[key] == full[key], key
    assert len(full["loss"]) == 4
    with np.load(folder / f"{kind}-straight.npz") as a, \
            np.load(folder / f"{kind}-resumed.npz") as b:
        assert a.files == b.files
        for name in a.files:
            assert a[name].dtype == b[name].dtype
            np.testing.assert_array_equal(a[name], b[name])
    assert second[kind]["class"] == {"sequential": "Sequential", "resnet": "Functional",
                                     "tower": "Tower"}[kind]
    assert second[kind]["iterations"] == 4 * 3  # 20 samples in batches of 8, 4 epochs


# -- what the file holds ---------------------------------------------------------------------------


def _small_model(seed: int = 1) -> Sequential:
    model = Sequential([layers.Input((5,)), layers.Dense(4, activation="relu"),
                        layers.Dropout(0.5, seed=seed), layers.Dense(3)])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.02, amsgrad=True),
                  loss=losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                  metrics=["accuracy", metrics.Accuracy(name="acc2")])
    return model


def _train(model, rng, epochs=1):
    x = rng.normal(size=(12, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=12)]
    model.fit(x, y, batch_size=4, epochs=epochs, seed=3, verbose=0)
    return x, y


def test_archive_layout(tmp_path, rng):
    model = _small_model()
    _train(model, rng)
    path = tmp_path / "net.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.npz",
                                 "optimizer.npz", "rng_states.json"]
        metadata = json.loads(zf.read("metadata.json"))
        config = json.loads(zf.read("config.json"))
        rng_states = json.loads(zf.read("rng_states.json"))
    assert metadata["numba_gn_version"] == numba_gn.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", metadata["date_saved"])
    assert config["class_name"] == "Sequential" and config["module"] == "keras"
    assert set(config) == {"module", "class_name", "config", "registered_name", "build_config",
                           "compile_config"}
    compile_config = config["compile_config"]
    assert set(compile_config) == {"optimizer", "loss", "loss_weights", "metrics",
                                   "weighted_metrics", "run_eagerly", "steps_per_execution",
                                   "jit_compile"}
    assert compile_config["optimizer"]["class_name"] == "Adam"
    assert compile_config["optimizer"]["config"]["amsgrad"] is True
    assert compile_config["loss"]["class_name"] == "CategoricalCrossentropy"
    assert compile_config["metrics"][0] == "accuracy"
    assert list(rng_states) == ["layers/dropout"]
    assert rng_states["layers/dropout"]["_rng"]["bit_generator"] == "PCG64"
    # The weights: an .npz keyed by Keras's weight paths, which np.load reads unpickled.
    with zipfile.ZipFile(path) as zf, zf.open("model.weights.npz") as member, \
            np.load(member, allow_pickle=False) as inner:
        assert inner.files == ["layers/dense/vars/0", "layers/dense/vars/1",
                               "layers/dense_1/vars/0", "layers/dense_1/vars/1"]
        for name, w in zip(inner.files, model.weights, strict=True):
            np.testing.assert_array_equal(inner[name], w.numpy())
    # load_weights reads the weights of a .keras file too.
    clone = _small_model()
    clone.load_weights(path)
    for a, b in zip(clone.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model.save_weights(tmp_path / "w.npz")
    assert sorted(os.listdir(tmp_path)) == ["net.keras", "w.npz"]  # no temporary left


def test_keras_reads_the_architecture(tmp_path):
    keras = pytest.importorskip("keras")
    model = _small_model()
    model.save(tmp_path / "net.keras")
    with zipfile.ZipFile(tmp_path / "net.keras") as zf:
        config = json.loads(zf.read("config.json"))
    config.pop("compile_config")
    theirs = keras.models.model_from_json(json.dumps(config))
    assert [type(layer).__name__ for layer in theirs.layers] == ["Dense", "Dropout", "Dense"]
    assert [w.shape for w in theirs.weights] == [w.shape for w in model.weights]


def test_load_restores_compile_arguments_and_optimizer_state(tmp_path, rng):
    model = _small_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=0.02, amsgrad=True),
                  loss=losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                  loss_weights=2.0, metrics=["accuracy", metrics.Accuracy(name="acc2")])
    x, _ = _train(model, rng, epochs=2)
    model.save(tmp_path / "net.keras")
    loaded = load_model(tmp_path / "net.keras")
    assert type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer is not model.optimizer
    assert type(loaded.loss) is losses.CategoricalCrossentropy
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.loss_weights == 2.0
    assert [m.name for m in loaded.compiled_metrics] == ["accuracy", "acc2"]
    assert isinstance(loaded.compiled_metrics[1], metrics.Accuracy)
    paths = [w for _, w in model.weight_paths()]
    ours = model.optimizer.get_state(paths)
    theirs = loaded.optimizer.get_state([w for _, w in loaded.weight_paths()])
    assert theirs["iterations"] == ours["iterations"] == 6
    for a, b in zip(ours["slots"], theirs["slots"], strict=True):
        assert len(a) == len(b) == 3  # amsgrad: m, v, v_hat
        for sa, sb in zip(a, b, strict=True):
            np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))


def test_compile_false_and_uncompiled_models(tmp_path, rng):
    model = _small_model()
    _train(model, rng)
    model.save(tmp_path / "net.keras")
    loaded = load_model(tmp_path / "net.keras", compile=False)
    assert loaded.optimizer is None
    x = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    plain = Sequential([layers.Input((5,)), layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.npz"]
        assert json.loads(zf.read("config.json"))["compile_config"] == {}
    assert load_model(tmp_path / "plain.keras").optimizer is None


def test_dropout_continues_its_mask_sequence(tmp_path):
    def net():
        return Sequential([layers.Input((64,)), layers.Dropout(0.5, seed=11)])

    x = np.ones((2, 64), np.float32)
    model = net()
    model(x, training=True)  # one mask drawn
    model.save(tmp_path / "d.keras")
    loaded = load_model(tmp_path / "d.keras")
    fresh = net()
    first, second = fresh(x, training=True).data, fresh(x, training=True).data
    # The loaded layer draws the saved model's *next* mask, not its seed's first one.
    got = loaded(x, training=True).data
    np.testing.assert_array_equal(got, second)
    assert not np.array_equal(got, first)
    np.testing.assert_array_equal(model(x, training=True).data, got)
    for _ in range(3):
        np.testing.assert_array_equal(model(x, training=True).data,
                                      loaded(x, training=True).data)


def test_save_arguments(tmp_path):
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"\.keras"):
        model.save(tmp_path / "net.h5")
    with pytest.raises(ValueError, match="directory"):
        (tmp_path / "d.keras").mkdir()
        model.save(tmp_path / "d.keras")
    model.save(tmp_path / "net.keras")
    with pytest.raises(FileExistsError, match="net.keras"):
        model.save(tmp_path / "net.keras", overwrite=False)
    with pytest.raises(TypeError, match="filepath"):
        model.save(3)
    with pytest.raises(ValueError, match="not built"):
        Sequential([layers.Dense(2)]).save(tmp_path / "unbuilt.keras")
    with pytest.raises(TypeError, match="custom_objects"):
        load_model(tmp_path / "net.keras", custom_objects=["Dense"])
    with pytest.raises(TypeError, match="compile"):
        load_model(tmp_path / "net.keras", compile="yes")
    assert sorted(os.listdir(tmp_path)) == ["d.keras", "net.keras"]


def test_save_model_and_load_model_in_the_saving_namespace(tmp_path, rng):
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    numba_gn.saving.save_model(model, tmp_path / "n.keras")
    loaded = numba_gn.saving.load_model(str(tmp_path / "n.keras"))
    x = rng.normal(size=(2, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert numba_gn.models.save_model is numba_gn.saving.save_model


# -- the registry and custom_objects ---------------------------------------------------------------


class Scale(layers.Layer):
    """A custom layer (not registered): one trainable scale."""

    def __init__(self, init=2.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "init": self.init}


def test_register_serializable_names_like_keras():
    @register_serializable(package="MyPkg")
    class Thing(layers.Layer):
        pass

    @register_serializable("MyPkg", name="renamed")
    def my_loss(y_true, y_pred):
        return y_pred

    assert get_registered_name(Thing) == "MyPkg>Thing"
    assert get_registered_object("MyPkg>Thing") is Thing
    assert get_registered_object("MyPkg>renamed") is my_loss
    assert get_registered_name(my_loss) == "MyPkg>renamed"
    assert get_registered_object("nope>Thing") is None
    assert get_registered_object("x", custom_objects={"x": Thing}) is Thing
    assert get_registered_name(Scale) == "Scale"

    class NoConfig:
        pass

    with pytest.raises(ValueError, match="get_config"):
        register_serializable()(NoConfig)
    with pytest.raises(TypeError, match="package"):
        register_serializable(package=3)


def test_custom_layer_needs_custom_objects_unless_registered(tmp_path, rng):
    x = layers.Input((4,))
    out = layers.Dense(2)(Scale(name="scale")(x))
    model = Model(x, out)
    model.get_layer("scale").scale.assign(np.array([1, 2, 3, 4], np.float32))
    model.save(tmp_path / "c.keras")
    with pytest.raises(ValueError, match=r"c\.keras") as info:
        load_model(tmp_path / "c.keras")
    assert "Scale" in str(info.value)
    loaded = load_model(tmp_path / "c.keras", custom_objects={"Scale": Scale})
    data = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_array_equal(model.predict(data), loaded.predict(data))
    assert type(loaded.get_layer("scale")) is Scale


def test_registered_layer_loads_without_custom_objects_and_shadows_nothing(tmp_path, rng):
    # A registered class called "Dense": the built-in Dense must still be the built-in one.
    @register_serializable(package="Shadow")
    class Dense(Scale):
        pass

    x = layers.Input((4,))
    out = layers.Dense(3)(Dense(name="mine")(x))
    model = Model(x, out)
    model.save(tmp_path / "r.keras")
    with zipfile.ZipFile(tmp_path / "r.keras") as zf:
        entries = json.loads(zf.read("config.json"))["config"]["layers"]
    assert [e["registered_name"] for e in entries] == [None, "Shadow>Dense", None]
    loaded = load_model(tmp_path / "r.keras")
    assert type(loaded.get_layer("mine")) is Dense
    assert type(loaded.layers[-1]) is layers.Dense
    data = rng.normal(size=(2, 4)).astype("float32")
    np.testing.assert_array_equal(model.predict(data), loaded.predict(data))


def test_custom_loss_function(tmp_path, rng):
    def halved_mse(y_true, y_pred):
        return losses.MeanSquaredError()(y_true, y_pred) * 0.5

    model = Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss=halved_mse)
    model.save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match=r"f\.keras.*halved_mse.*compile=False"):
        load_model(tmp_path / "f.keras")
    assert load_model(tmp_path / "f.keras", compile=False).optimizer is None
    loaded = load_model(tmp_path / "f.keras", custom_objects={"halved_mse": halved_mse})
    assert loaded.loss is halved_mse
    register_serializable(package="LossTest")(halved_mse)
    model.save(tmp_path / "g.keras")
    assert load_model(tmp_path / "g.keras").loss is halved_mse


def test_unregistered_subclass_needs_custom_objects(tmp_path, rng):
    class Net(Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(2)

        def call(self, x, training=False):
            return self.dense(x)

    model = Net()
    data = rng.normal(size=(2, 3)).astype("float32")
    model(data)
    model.save(tmp_path / "s.keras")
    with pytest.raises(ValueError, match=r"s\.keras.*'Net'"):
        load_model(tmp_path / "s.keras")
    loaded = load_model(tmp_path / "s.keras", custom_objects={"Net": Net})
    assert type(loaded) is Net
    np.testing.assert_array_equal(model.predict(data), loaded.predict(data))


# -- every layer type ------------------------------------------------------------------------------


def _every_layer_model():
    """One functional model holding one of each layer class numba_gn.layers exports."""
    img = layers.Input((8, 8, 4), name="img")
    seq = layers.Input((10, 4), name="seq")
    h = layers.Conv2D(4, 3, padding="same")(img)
    h = layers.GroupNormalization(groups=2)(h)
    h = layers.BatchNormalization()(h)
    h = layers.LayerNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.DepthwiseConv2D(3, padding="same")(h)
    h = layers.MaxPooling2D()(h)                      # 4x4
    h = layers.UpSampling2D()(h)                      # 8x8
    h = layers.ZeroPadding2D(1)(h)                    # 10x10
    h = layers.Cropping2D(1)(h)                       # 8x8
    h = layers.Conv2DTranspose(4, 3, padding="same")(h)
    h = layers.AveragePooling2D(2)(h)                 # 4x4
    a = layers.GlobalAveragePooling2D()(h)            # (4,)
    b = layers.Flatten()(h)                           # (64,)
    b = layers.Reshape((16, 4))(b)
    b = layers.GlobalAveragePooling1D()(b)            # (4,)
    s = layers.Conv1D(4, 3, padding="same")(seq)
    s = layers.MaxPooling1D()(s)                      # 5
    s = layers.UpSampling1D()(s)                      # 10
    s = layers.AveragePooling1D(2)(s)                  # 5
    s = layers.GlobalAveragePooling1D()(s)
    merged = layers.Concatenate()([
        layers.Add()([a, b]), layers.Subtract()([a, s]), layers.Multiply()([b, s]),
        layers.Average()([a, b, s]),
    ])
    merged = layers.Dropout(0.2, seed=3)(merged)
    out = layers.Dense(3)(merged)
    return Model({"img": img, "seq": seq}, out)


def test_every_exported_layer_survives_save_and_load(tmp_path, rng):
    model = _every_layer_model()
    used = {type(layer).__name__ for layer in model.layers}
    exported = {
        name for name in layers.__all__
        if isinstance(getattr(layers, name), type)
        and issubclass(getattr(layers, name), layers.Layer)
        and name != "Layer"
    }
    assert exported - used == set(), "add the new layer types to _every_layer_model"
    # Weights off their initial values (BatchNormalization's moving statistics too).
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) if "variance" not in p
                       else rng.uniform(0.5, 2.0, size=w.shape).astype(w.dtype)
                       for (p, _), w in zip(model.weight_paths(), model.weights, strict=True)])
    model.compile(optimizer="adam", loss="mse")
    x = {"img": rng.normal(size=(3, 8, 8, 4)).astype("float32"),
         "seq": rng.normal(size=(3, 10, 4)).astype("float32")}
    model.fit(x, rng.normal(size=(3, 3)).astype("float32"), epochs=1, verbose=0, seed=0)
    before = model.predict(x)
    model.save(tmp_path / "all.keras")
    loaded = load_model(tmp_path / "all.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), before)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# -- optimizer state get/set ----------------------------------------------------------------------


def _stepped(optimizer, rng, steps=2):
    from numba_gn.params import Variable

    variables = [Variable(rng.normal(size=(3, 2)).astype("float32")),
                 Variable(rng.normal(size=(2,)).astype("float32"))]
    for _ in range(steps):
        optimizer.apply([rng.normal(size=v.shape).astype("float32") for v in variables],
                        variables)
    return variables


@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(0.01), lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.SGD(0.1, momentum=0.9), lambda: optimizers.SGD(0.1),
    lambda: optimizers.AdamW(0.01),
], ids=["adam", "amsgrad", "momentum", "sgd", "adamw"])
def test_optimizer_state_round_trip_continues_exactly(make, rng):
    original = make()
    variables = _stepped(original, rng)
    state = original.get_state(variables)
    assert state["iterations"] == 2
    assert [len(s) for s in state["slots"]] == [original.slot_count(v) for v in variables]
    copies = [type(v)(v.numpy()) for v in variables]
    clone = make()
    clone.set_state(state, copies)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    original.apply(grads, variables)
    clone.apply(grads, copies)
    for a, b in zip(variables, copies, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert clone.iterations == original.iterations == 3
    # get_state gives copies: changing them changes nothing.
    for slots in clone.get_state(copies)["slots"]:
        for arr in slots:
            arr[...] = 99
    assert all(
        not np.any(arr == 99) for slots in clone.get_state(copies)["slots"] for arr in slots
    )


def test_optimizer_set_state_checks_everything_first(rng):
    optimizer = optimizers.Adam(0.01)
    variables = _stepped(optimizer, rng)
    before = optimizer.get_state(variables)
    bad_states = [
        ({"iterations": 1}, TypeError, "'iterations' and 'slots'"),
        ({"iterations": -1, "slots": [None, None]}, ValueError, "iterations"),
        ({"iterations": 1, "slots": [None]}, ValueError, "one entry per variable"),
        ({"iterations": 1, "slots": [None, (np.zeros(2, np.float32),)]}, ValueError,
         "takes 2 slot array"),
        ({"iterations": 1, "slots": [None, (np.zeros(3, np.float32),) * 2]}, ValueError,
         "shape"),
        ({"iterations": 1, "slots": [None, (np.zeros(2, np.int32),) * 2]}, TypeError,
         "float array"),
    ]
    for state, error, words in bad_states:
        with pytest.raises(error, match=words):
            optimizer.set_state(state, variables)
        after = optimizer.get_state(variables)
        assert after["iterations"] == before["iterations"]
        for a, b in zip(after["slots"], before["slots"], strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    # None: that variable starts afresh.
    optimizer.set_state({"iterations": 5, "slots": [None, None]}, variables)
    assert optimizer.get_state(variables) == {"iterations": 5, "slots": [None, None]}
