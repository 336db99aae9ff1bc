"""Sequential, compile/fit/evaluate/predict, weight files, and ``numba-gn demo``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from numba_gn import callbacks
from numba_gn.cli.demo import build_demo_model, compile_demo_model
from numba_gn.layers import Dense, Dropout, Flatten, GroupNormalization, Input
from numba_gn.models import Sequential
from numba_gn.training import losses, optimizers


def _digits_like(rng, n=192):
    """Separable 8x8 'images': the class is the brightest of ten fixed patterns."""
    patterns = rng.standard_normal((10, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    x = patterns[y] + 0.5 * rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    return x, y


@pytest.fixture
def data(rng):
    return _digits_like(rng)


def test_demo_model_training_lowers_the_loss(data):
    x, y = data
    model = build_demo_model(seed=0)
    compile_demo_model(model)
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0, seed=0)
    after = model.evaluate(x, y, verbose=0)
    assert isinstance(history, callbacks.History)
    assert set(history.history) == {"loss", "accuracy"}
    assert len(history.history["loss"]) == 8
    assert after[0] < 0.5 * before[0], (before, after)
    assert after[1] > 0.8
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_fit_is_reproducible_from_seeds(data):
    x, y = data
    runs = []
    for _ in range(2):
        model = build_demo_model(seed=3)
        compile_demo_model(model)
        h = model.fit(x, y, batch_size=64, epochs=2, verbose=0, seed=11)
        runs.append((h.history["loss"], model.predict(x[:5])))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_validation_history_keys_and_progress_output(data):
    x, y = data
    model = build_demo_model(seed=0)
    compile_demo_model(model)
    out = io.StringIO()
    h = model.fit(x, y, batch_size=64, epochs=2, validation_split=0.25, seed=0, stream=out)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    text = out.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    # Not a terminal: one line per epoch, Keras's format, no carriage returns.
    assert "\r" not in text and len(text.splitlines()) == 4
    assert "3/3 ━━━━" in text and "s/step" in text and "val_accuracy:" in text  # 144/64 -> 3
    silent = io.StringIO()
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x[:10], y[:10]), stream=silent)
    assert silent.getvalue() == ""


def test_evaluate_and_predict_in_batches(data):
    x, y = data
    model = build_demo_model(seed=0)
    compile_demo_model(model)
    full = model.predict(x, batch_size=1000)
    np.testing.assert_allclose(model.predict(x, batch_size=7), full, rtol=1e-5, atol=1e-6)
    assert full.shape == (len(x), 10)
    logs = model.evaluate(x, y, batch_size=50, verbose=0, return_dict=True)
    expected = losses.SparseCategoricalCrossentropy(from_logits=True)(y, full).numpy()
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], np.mean(full.argmax(-1) == y))


def test_regularization_losses_are_in_the_loss(rng):
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    model = Sequential([Input((4,)), Dense(2, kernel_regularizer="l2")])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse")
    plain = losses.MeanSquaredError()(y, model.predict(x)).numpy()
    penalty = 0.01 * np.sum(model.layers[0].kernel.numpy() ** 2)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), plain + penalty, rtol=1e-5)


def test_summary_shapes_and_counts(capsys):
    model = build_demo_model(seed=0)
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "digits_cnn"' in text
    assert "(None, 8, 8, 16)" in text and "(None, 4, 4, 32)" in text and "(None, 10)" in text
    assert "4,640" in text  # 3*3*16*32 + 32
    assert "Total params: 5,226" in text and "Non-trainable params: 0" in text
    assert model.count_params() == 5226


def test_config_round_trip_gives_identical_predictions(tmp_path, data):
    x, y = data
    model = Sequential([Input((8, 8, 1)), Flatten(), Dense(16, activation="relu"),
                        Dropout(0.2, seed=1), Dense(10)])
    model.compile(optimizers.Adam(), losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    config = json.loads(json.dumps(model.get_config()))  # JSON-able
    path = tmp_path / "w.npz"
    model.save_weights(path)
    clone = Sequential.from_config(config)
    clone.load_weights(path)
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))
    demo = build_demo_model(seed=0)
    demo_clone = Sequential.from_config(json.loads(json.dumps(demo.get_config())))
    demo_clone.set_weights(demo.get_weights())
    np.testing.assert_array_equal(demo_clone.predict(x[:4]), demo.predict(x[:4]))


def test_reads_a_keras_sequential_config():
    keras = pytest.importorskip("keras")
    ref = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"),
                            keras.layers.GroupNormalization(2), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
    ours = Sequential.from_config(ref.get_config())
    assert [type(la).__name__ for la in ours.layers] == ["Conv2D", "GroupNormalization",
                                                         "Flatten", "Dense"]
    ours.set_weights(ref.get_weights())
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(ours.predict(x), keras.ops.convert_to_numpy(ref(x)), rtol=1e-5,
                               atol=1e-5)


def test_unique_names_and_errors():
    model = Sequential([Dense(2, name="a")])
    with pytest.raises(ValueError, match="unique"):
        model.add(Dense(2, name="a"))
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 2)))


# -- models without an Input: built from the data --------------------------------------------------


def test_summary_of_an_unbuilt_model_says_so(capsys):
    # Keras lists the layers with "?" shapes and "0 (unbuilt)" parameters; so do we, and say
    # how to build the model instead of raising.
    model = Sequential([Dense(8, name="hidden"), Dense(2, name="out")])
    model.summary()
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if "(Dense)" in line]
    assert len(rows) == 2
    assert all("?" in row and row.rstrip().endswith("0 (unbuilt)") for row in rows)
    assert "Total params: 0" in text and "not built yet" in text
    model.build((None, 4))
    model.summary()
    text = capsys.readouterr().out
    assert "(None, 8)" in text and "(None, 2)" in text and "unbuilt" not in text
    assert "Total params: 58" in text


def _unbuilt_and_built(seed):
    """The same two-layer model twice: without an Input, and built up front."""
    def make(first):
        return Sequential([*first, Dense(8, activation="relu", kernel_initializer=init(1)),
                           Dense(2, kernel_initializer=init(2))])

    def init(k):
        from numba_gn.initializers import GlorotUniform

        return GlorotUniform(seed=seed + k)

    return make([]), make([Input((4,))])


def test_evaluate_and_predict_build_an_unbuilt_model_from_the_data(rng):
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = rng.standard_normal((20, 2)).astype(np.float32)
    lazy, eager = _unbuilt_and_built(seed=5)
    lazy.compile(optimizer="sgd", loss="mse")
    eager.compile(optimizer="sgd", loss="mse")
    assert not lazy.built and lazy.weights == []
    # evaluate builds it from the first batch's shape (the batch axis left free) ...
    loss = lazy.evaluate(x, y, batch_size=6, verbose=0)
    assert lazy.built and lazy.output_shape == (None, 2) and len(lazy.weights) == 4
    np.testing.assert_allclose(loss, eager.evaluate(x, y, batch_size=6, verbose=0), rtol=1e-6)
    # ... and so does predict, on another fresh model.
    lazy2, _ = _unbuilt_and_built(seed=5)
    pred = lazy2.predict(x, batch_size=7)
    assert lazy2.built and pred.shape == (20, 2)
    np.testing.assert_allclose(pred, eager.predict(x, batch_size=7), rtol=1e-6, atol=1e-7)


def test_fit_on_an_unbuilt_model_matches_a_built_one_from_the_first_step(rng):
    # Built during the first training step, the model must train on that step already: the
    # same updates as the model built up front, step for step.
    x = rng.standard_normal((24, 4)).astype(np.float32)
    y = rng.standard_normal((24, 2)).astype(np.float32)
    lazy, eager = _unbuilt_and_built(seed=9)
    for model in (lazy, eager):
        model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    h_lazy = lazy.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
    h_eager = eager.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
    assert lazy.optimizer.iterations == eager.optimizer.iterations == 6
    np.testing.assert_allclose(h_lazy.history["loss"], h_eager.history["loss"], rtol=1e-6)
    for a, b in zip(lazy.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- weight files ----------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model = build_demo_model(seed=0)
    path = tmp_path / "weights.npz"
    model.save_weights(path)
    return model, path


def test_saved_names_and_round_trip(saved):
    model, path = saved
    with np.load(path, allow_pickle=False) as f:
        assert list(f.files) == [n for n, _ in model.weight_paths()]
        assert f.files[:3] == ["conv2d/kernel", "conv2d/bias", "group_normalization/gamma"]
        assert "conv2d_1/kernel" in f.files and f.files[-1] == "dense/bias"
    other = build_demo_model(seed=5)
    other.load_weights(path)
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k.replace("__", "/"))
        else:
            arrays[k.replace("__", "/")] = v
    np.savez(path, **arrays)


def _assert_unchanged(model, before):
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_weight_files_are_refused_and_change_nothing(saved, tmp_path):
    model, path = saved
    target = build_demo_model(seed=9)
    before = target.get_weights()
    names = [n for n, _ in model.weight_paths()]
    last = names[-1]

    bad_shape = tmp_path / "shape.npz"
    bad_shape.write_bytes(path.read_bytes())
    _rewrite(bad_shape, **{last.replace("/", "__"): np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        target.load_weights(bad_shape)
    _assert_unchanged(target, before)

    missing = tmp_path / "missing.npz"
    missing.write_bytes(path.read_bytes())
    _rewrite(missing, **{last.replace("/", "__"): None, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="missing.*unexpected"):
        target.load_weights(missing)
    _assert_unchanged(target, before)

    objects = tmp_path / "objects.npz"
    objects.write_bytes(path.read_bytes())
    _rewrite(objects, **{last.replace("/", "__"): np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="pickle"):
        target.load_weights(objects)
    _assert_unchanged(target, before)

    strings = tmp_path / "strings.npz"
    strings.write_bytes(path.read_bytes())
    _rewrite(strings, **{last.replace("/", "__"): np.array(["x"] * 10)})
    with pytest.raises(ValueError, match="non-numeric|shape"):
        target.load_weights(strings)
    _assert_unchanged(target, before)

    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        target.load_weights(single)
    _assert_unchanged(target, before)


def test_unbuilt_model_cannot_save(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(2)]).save_weights(tmp_path / "w.npz")


def test_paths_do_not_depend_on_layer_names():
    a = Sequential([Input((3,)), Dense(2, name="first"), GroupNormalization(2), Dense(1)])
    b = Sequential([Input((3,)), Dense(2), GroupNormalization(2, name="gn"), Dense(1)])
    assert [p for p, _ in a.weight_paths()] == [p for p, _ in b.weight_paths()]
    assert [p for p, _ in a.weight_paths()][:2] == ["dense/kernel", "dense/bias"]


# -- the CLI ---------------------------------------------------------------------------------------


def test_demo_command_runs(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from numba_gn.cli import main

    plot = tmp_path / "curves.png"
    args = ["demo", "--epochs", "1", "--quiet"]
    if _has("matplotlib"):
        args += ["--plot", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Test accuracy:" in out and "297 held-out images" in out
    if _has("matplotlib"):
        assert plot.stat().st_size > 1000


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_float64_model_is_not_squeezed_through_float32(rng):
    x = rng.standard_normal((3, 5))
    model = Sequential([Input((5,)), Dense(2, dtype="float64")])
    kernel, bias = model.get_weights()
    expected = x @ kernel + bias
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-14)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize("missing,args", [("sklearn", []), ("matplotlib", ["--plot", "x.png"])])
def test_demo_explains_missing_extras(missing, args, monkeypatch, capsys):
    if missing == "matplotlib":
        pytest.importorskip("sklearn")
    from numba_gn.cli import main

    monkeypatch.setitem(__import__("sys").modules, missing, None)  # import now fails
    if missing == "sklearn":
        monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    assert main(["demo", "--epochs", "1", "--quiet", *args]) == 1
    err = capsys.readouterr().err
    assert missing.replace("sklearn", "scikit-learn") in err and ".[demo]" in err
