"""Keras 3's ``.weights.h5`` files, both ways, and Keras's ``.keras`` files.

A model built in Keras and the same model built in numba_gn exchange weight files: Keras's
``save_weights("x.weights.h5")`` loads into ours (predictions within 1e-5), ours loads into
Keras's. The layouts cover a Sequential model, a functional graph with a nested Sequential and
BatchNormalization (non-trainable variables), and a subclassed model (Keras addresses its
layers by attribute name). Damaged and mismatched files are refused with a ``ValueError``
naming the file and the dataset; without h5py, writing a ``.weights.h5`` file is an
``ImportError`` naming h5py and writes nothing.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import numba_gn
from numba_gn import layers as nl
from numba_gn.models import Model, Sequential, load_model
from tests._subprocess import check_python, last_json_line

h5py = pytest.importorskip("h5py")
keras = pytest.importorskip("keras")
kl = keras.layers


def _randomize_keras(model, rng):
    for v in model.weights:
        if "variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, size=v.shape).astype("float32"))
        else:
            v.assign(rng.normal(size=v.shape).astype("float32"))


def _pair_sequential():
    theirs = keras.Sequential([
        keras.Input((8, 8, 3)), kl.Conv2D(4, 3), kl.GroupNormalization(2), kl.Dropout(0.2),
        kl.Flatten(), kl.Dense(2),
    ])
    ours = Sequential([
        nl.Input((8, 8, 3)), nl.Conv2D(4, 3), nl.GroupNormalization(2), nl.Dropout(0.2),
        nl.Flatten(), nl.Dense(2),
    ])
    return theirs, ours, (8, 8, 3)


def _functional(lib, sequential):
    x = lib.Input((6,), name="a")
    h = lib.layers.Dense(5)(x)
    h2 = lib.layers.Dense(5)(h)
    h = lib.layers.Add()([h, h2])
    h = lib.layers.BatchNormalization()(h)
    inner = sequential([lib.layers.Dense(4), lib.layers.Dense(3)])
    return lib.Model(x, inner(h))


def _pair_functional():
    return _functional(keras, keras.Sequential), _functional(numba_gn, Sequential), (6,)


class KerasTower(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = kl.Dense(5)
        self.head = kl.Dense(2)
        self.blocks = [kl.Dense(5), kl.BatchNormalization()]

    def call(self, x, training=False):
        x = self.hidden(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(x)


class Tower(Model):
    def __init__(self):
        super().__init__()
        self.hidden = nl.Dense(5)
        self.head = nl.Dense(2)
        self.blocks = [nl.Dense(5), nl.BatchNormalization()]

    def call(self, x, training=False):
        x = self.hidden(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(x)


def _pair_subclassed():
    theirs, ours = KerasTower(), Tower()
    theirs(np.zeros((1, 4), "float32"))
    ours(np.zeros((1, 4), "float32"))
    return theirs, ours, (4,)


PAIRS = {"sequential": _pair_sequential, "functional": _pair_functional,
         "subclassed": _pair_subclassed}


@pytest.mark.parametrize("kind", list(PAIRS))
def test_keras_weights_load_into_numba_gn_and_back(kind, tmp_path, rng):
    theirs, ours, shape = PAIRS[kind]()
    _randomize_keras(theirs, rng)
    x = rng.normal(size=(3, *shape)).astype("float32")
    expected = np.asarray(theirs.predict(x, verbose=0))
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x), expected, rtol=1e-5, atol=1e-5)
    # Same values in the same places: our weights are Keras's, in Keras's order.
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # And back: ours, written in Keras's layout, loads into a fresh Keras model.
    ours.save_weights(tmp_path / "ours.weights.h5")
    fresh = PAIRS[kind]()[0]
    fresh.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(np.asarray(fresh.predict(x, verbose=0)), expected,
                               rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["keras.weights.h5", "ours.weights.h5"]


def test_layout_matches_keras(tmp_path):
    theirs, ours, _ = _pair_functional()
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.save_weights(tmp_path / "o.weights.h5")

    def layout(path):
        found = []
        with h5py.File(path) as f:
            f.visititems(lambda name, obj: found.append(
                (name, getattr(obj, "shape", None), type(obj).__name__)))
        return found

    assert layout(tmp_path / "o.weights.h5") == layout(tmp_path / "k.weights.h5")
    with h5py.File(tmp_path / "o.weights.h5") as f:
        assert f["layers/dense/vars"].attrs["name"] == ours.layers[1].name
        assert f["vars"].attrs["name"] == ours.name


def test_keras_keras_file_loads(tmp_path, rng):
    theirs, _, shape = _pair_sequential()
    _randomize_keras(theirs, rng)
    theirs.compile(optimizer=keras.optimizers.Adam(0.003), loss="mse", metrics=["accuracy"])
    theirs.save(tmp_path / "keras.keras")
    x = rng.normal(size=(2, *shape)).astype("float32")
    ours = load_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    assert type(ours.optimizer).__name__ == "Adam"
    assert ours.optimizer.learning_rate == pytest.approx(0.003)
    assert ours.optimizer.iterations == 0  # Keras's optimizer state is not read
    assert load_model(tmp_path / "keras.keras", compile=False).optimizer is None


# -- refusals ----------------------------------------------------------------------------------


@pytest.fixture
def keras_file(tmp_path, rng):
    theirs, _, _ = _pair_sequential()
    _randomize_keras(theirs, rng)
    path = tmp_path / "k.weights.h5"
    theirs.save_weights(path)
    return path


def _refused(model, path, *needles):
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError) as info:
        model.load_weights(path)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    return message


def test_wrong_shape_missing_and_unexpected(keras_file):
    wider = Sequential([nl.Input((8, 8, 3)), nl.Conv2D(5, 3), nl.GroupNormalization(5),
                        nl.Flatten(), nl.Dense(2)])
    _refused(wider, keras_file, "layers/conv2d/vars/0", "wrong shape (3, 3, 3, 4)")
    longer = Sequential([nl.Input((8, 8, 3)), nl.Conv2D(4, 3), nl.GroupNormalization(2),
                         nl.Flatten(), nl.Dense(2), nl.Dense(2)])
    _refused(longer, keras_file, "missing", "layers/dense_1/vars")
    shorter = Sequential([nl.Input((8, 8, 3)), nl.Conv2D(4, 3), nl.Flatten(), nl.Dense(2)])
    _refused(shorter, keras_file, "unexpected", "layers/group_normalization/vars")


def test_damaged_files(keras_file, tmp_path):
    _, ours, _ = _pair_sequential()
    data = keras_file.read_bytes()
    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(data[: len(data) // 2])
    _refused(ours, cut, "HDF5")
    text = tmp_path / "text.weights.h5"
    text.write_bytes(b"not hdf5 at all")
    _refused(ours, text, "not an HDF5 file")
    with h5py.File(keras_file, "a") as f:
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = np.zeros((2, 2), np.float32)
    _refused(ours, keras_file, "layers/dense/vars/1", "wrong shape (2, 2)")
    with h5py.File(keras_file, "a") as f:
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = np.zeros((2,), np.int32)
    _refused(ours, keras_file, "wrong dtype int32")
    with h5py.File(keras_file, "a") as f:
        del f["layers/dense/vars/1"]
    _refused(ours, keras_file, "layers/dense/vars", "wrong number of weights")


@pytest.mark.parametrize("link", ["soft", "external"])
def test_links_are_refused(keras_file, tmp_path, link):
    _, ours, _ = _pair_sequential()
    with h5py.File(keras_file, "a") as f:
        del f["layers/dense/vars/1"]
        if link == "soft":
            f["layers/dense/vars/1"] = h5py.SoftLink("/layers/conv2d/vars/1")
        else:
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["bias"] = np.ones(2, np.float32)
            f["layers/dense/vars/1"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "bias")
    _refused(ours, keras_file, "not allowed")


def test_save_names(tmp_path):
    model = Sequential([nl.Input((3,)), nl.Dense(2)])
    for name in ("w.h5", "w.hdf5", "w.keras"):
        with pytest.raises(ValueError, match=r"\.weights\.h5"):
            model.save_weights(tmp_path / name)
    assert os.listdir(tmp_path) == []
    model.save_weights(tmp_path / "w.weights.h5")
    with open(tmp_path / "w.weights.h5", "rb") as fh:
        assert fh.read(8) == b"\x89HDF\r\n\x1a\n"


def test_without_h5py_saving_is_a_clear_error(tmp_path, monkeypatch):
    model = Sequential([nl.Input((3,)), nl.Dense(2)])
    model.save_weights(tmp_path / "ok.weights.h5")
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` now fails
    with pytest.raises(ImportError, match="h5py"):
        model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ImportError, match="h5py"):
        model.load_weights(tmp_path / "ok.weights.h5")
    assert os.listdir(tmp_path) == ["ok.weights.h5"]
    model.save_weights(tmp_path / "w.npz")  # .npz needs nothing


def test_import_does_not_load_h5py():
    res = check_python(
        """
        import json, sys
        import numba_gn, numba_gn.saving
        from numba_gn.layers import Dense, Input
        m = numba_gn.Sequential([Input((2,)), Dense(1)])
        print(json.dumps({"h5py": "h5py" in sys.modules}))
        """
    )
    assert last_json_line(res.stdout) == {"h5py": False}
