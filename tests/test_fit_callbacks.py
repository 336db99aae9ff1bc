"""`fit`/`evaluate`/`predict` driving Keras 3's callbacks (`numba_gn.callbacks`) on real models.

The callbacks themselves are checked against Keras's in test_callbacks.py; here the loop is:
the hooks' order and logs, what each callback does to a real model (stopping, restoring the
best weights, checkpoint files, learning rates, CSV rows), sample and class weights against
hand-computed weighted losses, validation logs, History keys against Keras's, reproducible
per-epoch shuffling and an interrupted run resumed by `BackupAndRestore`, and the progress
lines.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re

import numpy as np
import pytest

import numba_gn
from numba_gn import callbacks, layers
from numba_gn.models import Model, Sequential
from numba_gn.training import optimizers
from numba_gn.training.progbar import Progbar, _eta, _fmt, _per_unit

N = 20


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _dense_model(seed=0, units=1, optimizer=None, loss="mse", metrics=None, inputs=4):
    init = numba_gn.initializers.GlorotUniform
    model = Sequential([numba_gn.Input((inputs,)),
                        layers.Dense(6, activation="tanh", kernel_initializer=init(seed)),
                        layers.Dense(units, kernel_initializer=init(seed + 1))])
    model.compile(optimizer if optimizer is not None else optimizers.SGD(0.1), loss,
                  metrics=metrics)
    return model


@pytest.fixture
def data(rng):
    return _f32(rng, N, 4), _f32(rng, N, 1)


def _assert_same_weights(a, b):
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


# -- the namespace --------------------------------------------------------------------------------


def test_callbacks_module_is_importable_under_its_keras_name():
    import numba_gn.callbacks as cb_module
    from numba_gn.callbacks import EarlyStopping

    assert cb_module is numba_gn.callbacks is numba_gn.training.callbacks
    assert "callbacks" in numba_gn.__all__
    assert EarlyStopping is numba_gn.training.callbacks.EarlyStopping
    # One name per thing: the History is the callbacks' one, no other.
    assert not hasattr(numba_gn.training, "History")


# -- hook order -----------------------------------------------------------------------------------

HOOKS = ["on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end"]


def _recorder():
    calls = []

    def hook(name):
        def record(*args, **kwargs):
            logs = kwargs.get("logs", args[-1] if args else None)
            ints = [a for a in args if isinstance(a, int)]
            calls.append((name, *ints, sorted(logs) if isinstance(logs, dict) else None))

        return record

    return calls, callbacks.LambdaCallback(**{h: hook(h) for h in HOOKS})


def _epoch(e):
    return [("on_epoch_begin", e, []),
            ("on_train_batch_begin", 0, []), ("on_train_batch_end", 0, ["loss"]),
            ("on_train_batch_begin", 1, []), ("on_train_batch_end", 1, ["loss"]),
            ("on_test_begin", []), ("on_test_batch_begin", 0, []),
            ("on_test_batch_end", 0, ["loss"]), ("on_test_end", ["loss"]),
            ("on_epoch_end", e, ["loss", "val_loss"])]


# The calls Keras 3 makes (recorded the same way) for this fit, evaluate and predict.
KERAS_FIT_CALLS = [("on_train_begin", []), *_epoch(0), *_epoch(1),
                   ("on_train_end", ["loss", "val_loss"])]
KERAS_EVALUATE_CALLS = [("on_test_begin", []), ("on_test_batch_begin", 0, []),
                        ("on_test_batch_end", 0, ["loss"]), ("on_test_batch_begin", 1, []),
                        ("on_test_batch_end", 1, ["loss"]), ("on_test_end", ["loss"])]
KERAS_PREDICT_CALLS = [("on_predict_begin", []), ("on_predict_batch_begin", 0, []),
                       ("on_predict_batch_end", 0, ["outputs"]),
                       ("on_predict_batch_begin", 1, []),
                       ("on_predict_batch_end", 1, ["outputs"]), ("on_predict_end", [])]


def test_hooks_are_called_in_keras_order(rng):
    x, y = _f32(rng, 16, 4), _f32(rng, 16, 1)
    model = _dense_model()
    calls, cb = _recorder()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x[:8], y[:8]),
              callbacks=[cb])
    assert calls == KERAS_FIT_CALLS
    calls.clear()
    model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[cb])
    assert calls == KERAS_EVALUATE_CALLS
    calls.clear()
    outputs = []
    cb.on_predict_batch_end = lambda batch, logs: outputs.append(logs["outputs"])
    pred = model.predict(x, batch_size=8, callbacks=cb)
    assert [c[0] for c in calls] == [c[0] for c in KERAS_PREDICT_CALLS if c[0] !=
                                     "on_predict_batch_end"]
    np.testing.assert_array_equal(np.concatenate(outputs), pred)


def test_batch_logs_are_running_means_and_epoch_logs_the_epochs(rng):
    x, y = _f32(rng, N, 4), _f32(rng, N, 1)
    model = _dense_model(optimizer=optimizers.SGD(0.0))  # weights fixed: losses known
    batch_logs = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batch_logs.append(logs))
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
    per_sample = np.mean((model.predict(x) - y) ** 2, axis=-1).astype(np.float64)
    expected = [per_sample[:8].mean(), per_sample[:16].mean(), per_sample.mean()]
    np.testing.assert_allclose([b["loss"] for b in batch_logs], expected, rtol=1e-5)
    assert history.history["loss"] == [batch_logs[-1]["loss"]]


def test_callbacks_argument_is_checked_before_anything(data):
    x, y = data
    model = _dense_model()
    before = model.get_weights()
    for bad in (5, [callbacks.History(), "early"], [[object()]]):
        with pytest.raises(TypeError, match=r"callbacks\[\d\]"):
            model.fit(x, y, verbose=0, callbacks=bad)
        with pytest.raises(TypeError, match=r"callbacks\[\d\]"):
            model.evaluate(x, y, verbose=0, callbacks=bad)
    _assert_same_weights(model.get_weights(), before)
    assert model.optimizer.iterations == 0 and model.history is None


def test_a_callback_list_is_used_as_given(data):
    x, y = data
    model = _dense_model()
    history = callbacks.History()
    cbs = callbacks.CallbackList([history], model=model, verbose=0, epochs=2, steps=1)
    assert model.fit(x, y, epochs=2, verbose=0, callbacks=cbs) is history
    assert len(history.history["loss"]) == 2 and cbs._progbar is None


# -- EarlyStopping, ModelCheckpoint ---------------------------------------------------------------


def test_early_stopping_restores_the_best_weights(data):
    x, y = data
    model = _dense_model(optimizer=optimizers.SGD(0.2))
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        (logs["val_loss"], model.get_weights())))
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    # Validating against the opposite targets: the better the fit, the worse val_loss.
    history = model.fit(x, y, batch_size=5, epochs=30, seed=0, verbose=0,
                        validation_data=(x, -y), callbacks=[record, stop])
    ran = len(history.history["loss"])
    assert ran < 30 and stop.stopped_epoch == ran - 1
    val = history.history["val_loss"]
    assert val == [v for v, _ in seen]
    best = int(np.argmin(val))
    assert stop.best_epoch == best and ran - 1 - best >= 2
    _assert_same_weights(model.get_weights(), seen[best][1])
    assert model.stop_training is True


def test_model_checkpoint_writes_the_weights_of_each_epoch(data, tmp_path):
    x, y = data
    model = _dense_model()
    saved = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: saved.append(
        model.get_weights()))
    pattern = str(tmp_path / "ckpt" / "w-{epoch:02d}-{loss:.3f}.npz")
    history = model.fit(x, y, batch_size=5, epochs=3, seed=0, verbose=0, callbacks=[
        record, callbacks.ModelCheckpoint(pattern, monitor="loss", save_weights_only=True)])
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == [f"w-{e + 1:02d}-{loss:.3f}.npz"
                     for e, loss in enumerate(history.history["loss"])]
    for name, weights in zip(names, saved, strict=True):
        fresh = _dense_model(seed=50)
        fresh.load_weights(str(tmp_path / "ckpt" / name))
        _assert_same_weights(fresh.get_weights(), weights)


# -- learning rates -------------------------------------------------------------------------------


def test_reduce_lr_on_plateau_changes_the_rate_used_and_logs_it(data):
    x, y = data
    model = _dense_model(optimizer=optimizers.SGD(0.1))
    # min_delta larger than any change: no epoch after the first is an improvement.
    plateau = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                          min_delta=1e9)
    history = model.fit(x, y, batch_size=5, epochs=4, seed=1, verbose=0, callbacks=[plateau])
    # The rate of each epoch, logged at its end before that epoch's reduction.
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == 0.0125
    assert list(history.history) == ["loss", "learning_rate"]
    # The same rates set by a schedule train to the same weights: the reductions took effect.
    twin = _dense_model(optimizer=optimizers.SGD(0.1))
    rates = [0.1, 0.1, 0.05, 0.025]
    twin_history = twin.fit(x, y, batch_size=5, epochs=4, seed=1, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch: rates[epoch])])
    assert twin_history.history == history.history
    _assert_same_weights(twin.get_weights(), model.get_weights())


def test_learning_rate_scheduler_sets_each_epochs_rate(data):
    x, y = data
    model = _dense_model(optimizer=optimizers.SGD(0.2))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.LearningRateScheduler(
        lambda epoch, lr: lr if epoch == 0 else lr / 4)])
    assert history.history["learning_rate"] == [0.2, 0.05, 0.0125]
    assert model.optimizer.learning_rate == 0.0125


# -- CSVLogger, TerminateOnNaN --------------------------------------------------------------------


def test_csv_logger_writes_a_row_per_epoch(data, tmp_path):
    x, y = data
    model = _dense_model()
    path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], history.history["loss"])
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], history.history["val_loss"])


def test_terminate_on_nan_stops_after_the_bad_batch(data, capsys):
    x, y = data
    x = x.copy()
    x[7] = np.nan  # in the second batch of 5
    model = _dense_model()
    history = model.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert model.optimizer.iterations == 2  # stopped right after batch 1
    assert len(history.history["loss"]) == 1 and math.isnan(history.history["loss"][0])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out


# -- sample and class weights ---------------------------------------------------------------------


def _per_sample_mse(model, x, y):
    return np.mean((model.predict(x).astype(np.float64) - y) ** 2, axis=-1)


def test_sample_weight_gives_keras_weighted_loss(rng):
    x, y = _f32(rng, N, 4), _f32(rng, N, 2)
    sw = rng.uniform(0.0, 2.0, N).astype(np.float32)
    model = _dense_model(units=2, optimizer=optimizers.SGD(0.0))
    per_sample = _per_sample_mse(model, x, y)
    # Keras: each batch's loss is sum(l * w) / batch size, and the epoch's the mean of the
    # batches weighted by their sizes: sum(l * w) / N overall (not divided by sum(w)).
    expected = float(np.sum(per_sample * sw) / N)
    xv, yv, swv = x[:6], y[:6], sw[6:12]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, sample_weight=sw,
                        validation_data=(xv, yv, swv))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert history.history["val_loss"][0] == pytest.approx(
        float(np.sum(per_sample[:6] * swv) / 6), rel=1e-5)
    assert model.evaluate(x, y, sample_weight=sw, verbose=0) == pytest.approx(expected, rel=1e-5)
    # (samples, 1) weights are the same; the split keeps each sample's weight.
    history = model.fit(x, y, epochs=1, verbose=0, sample_weight=sw[:, None],
                        validation_split=0.25)
    assert history.history["loss"][0] == pytest.approx(
        float(np.sum(per_sample[:15] * sw[:15]) / 15), rel=1e-5)
    assert history.history["val_loss"][0] == pytest.approx(
        float(np.sum(per_sample[15:] * sw[15:]) / 5), rel=1e-5)


def test_sample_weight_changes_the_gradient_as_a_weighted_loss(rng):
    # Weights of 0 and 2: the same step as training on the weighted samples' duplicates.
    x, y = _f32(rng, 8, 4), _f32(rng, 8, 1)
    sw = np.array([0, 2, 1, 1, 0, 2, 1, 1], dtype=np.float32)
    weighted = _dense_model(optimizer=optimizers.SGD(0.1))
    weighted.fit(x, y, batch_size=8, epochs=1, verbose=0, sample_weight=sw)
    keep = np.repeat(np.arange(8), sw.astype(int))
    duplicated = _dense_model(optimizer=optimizers.SGD(0.1))
    duplicated.fit(x[keep], y[keep], batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(weighted.get_weights(), duplicated.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _log_softmax(z):
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("one_hot", [False, True])
def test_class_weight_weighs_each_sample_by_its_class(rng, one_hot):
    x = _f32(rng, N, 4)
    labels = rng.integers(0, 3, N)
    y = np.eye(3, dtype=np.float32)[labels] if one_hot else labels
    loss = ("categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy")
    model = _dense_model(units=3, optimizer=optimizers.SGD(0.0),
                         loss=numba_gn.losses.get({"class_name": {
                             "categorical_crossentropy": "CategoricalCrossentropy",
                             "sparse_categorical_crossentropy":
                                 "SparseCategoricalCrossentropy"}[loss],
                             "config": {"from_logits": True}}),
                         metrics=["accuracy"])
    per_sample = -_log_softmax(model.predict(x))[np.arange(N), labels]
    class_weight = {0: 0.5, 2: 3.0}  # class 1 is missing: weight 1
    w = np.array([class_weight.get(c, 1.0) for c in labels])
    history = model.fit(x, y, batch_size=6, epochs=1, verbose=0, class_weight=class_weight,
                        validation_data=(x, y))
    assert history.history["loss"][0] == pytest.approx(float(np.sum(per_sample * w) / N),
                                                       rel=1e-5)
    # Validation is not class-weighted, and metrics are not weighted (Keras's `metrics`).
    assert history.history["val_loss"][0] == pytest.approx(float(per_sample.mean()), rel=1e-5)
    assert history.history["accuracy"] == history.history["val_accuracy"]


def test_sample_weights_of_several_outputs(rng):
    a = numba_gn.Input((4,), name="a")
    h = layers.Dense(5, name="h")(a)
    model = Model(a, [layers.Dense(2, name="p")(h), layers.Dense(1, name="q")(h)])
    model.compile(optimizers.SGD(0.0), loss=["mse", "mse"], loss_weights=[1.0, 0.5])
    x, ys = _f32(rng, N, 4), [_f32(rng, N, 2), _f32(rng, N, 1)]
    wp, wq = rng.uniform(0, 2, N), rng.uniform(0, 2, N)
    p, q = model.predict(x)
    lp = np.mean((p.astype(np.float64) - ys[0]) ** 2, axis=-1)
    lq = np.mean((q.astype(np.float64) - ys[1]) ** 2, axis=-1)
    for sw in ([wp, wq], {"p": wp, "q": wq}):
        logs = model.fit(x, ys, batch_size=7, epochs=1, verbose=0, sample_weight=sw).history
        assert logs["p_loss"][0] == pytest.approx(float(np.sum(lp * wp) / N), rel=1e-5)
        assert logs["q_loss"][0] == pytest.approx(float(np.sum(lq * wq) / N), rel=1e-5)
        assert logs["loss"][0] == pytest.approx(logs["p_loss"][0] + 0.5 * logs["q_loss"][0],
                                                rel=1e-5)
    # One array of one weight per sample is used for every output (Keras).
    logs = model.evaluate(x, ys, sample_weight=wp, verbose=0, return_dict=True)
    assert logs["q_loss"] == pytest.approx(float(np.sum(lq * wp) / N), rel=1e-5)
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(x, ys, verbose=0, class_weight={0: 1.0})
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, ys, verbose=0, sample_weight=np.ones((N, 2)))
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, ys, verbose=0, sample_weight=[wp])
    assert model.optimizer.iterations == 2 * 3  # two fits of 3 steps; the rest refused


@pytest.mark.parametrize(("kwargs", "exc", "name"), [
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(N)}, ValueError, "class_weight"),
    ({"class_weight": [1.0, 2.0]}, TypeError, "class_weight"),
    ({"class_weight": {0.5: 1.0}}, TypeError, "class_weight"),
    ({"class_weight": {True: 1.0}}, TypeError, "class_weight"),
    ({"class_weight": {0: math.nan}}, ValueError, "class_weight"),
    ({"class_weight": {0: "1"}}, TypeError, "class_weight"),
    ({"sample_weight": np.ones(N - 1)}, ValueError, "sample_weight"),
    ({"sample_weight": np.ones((N, 3))}, ValueError, "sample_weight"),
    ({"sample_weight": np.array(["a"] * N)}, TypeError, "sample_weight"),
    ({"sample_weight": np.full(N, np.inf)}, ValueError, "sample_weight"),
    ({"validation_freq": 0}, ValueError, "validation_freq"),
    ({"validation_freq": 1.0}, TypeError, "validation_freq"),
    ({"validation_freq": [1, 0]}, ValueError, "validation_freq"),
    ({"validation_batch_size": 0}, ValueError, "validation_batch_size"),
    ({"validation_batch_size": 2.0}, TypeError, "validation_batch_size"),
])
def test_bad_weight_and_validation_arguments_change_nothing(data, kwargs, exc, name):
    x, y = data
    model = _dense_model()
    before = model.get_weights()
    calls, cb = _recorder()
    with pytest.raises(exc, match=name):
        model.fit(x, y, verbose=0, callbacks=[cb], **kwargs)
    assert calls == [] and model.optimizer.iterations == 0
    _assert_same_weights(model.get_weights(), before)


def test_class_weight_needs_labels_of_rank_one_or_two(rng):
    model = _dense_model(units=3)
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(_f32(rng, N, 4), np.zeros((N, 3, 1), np.float32), verbose=0,
                  class_weight={0: 2.0})


# -- validation -----------------------------------------------------------------------------------


def test_validation_logs_are_the_evaluation_after_the_epoch(rng):
    x, y = _f32(rng, N, 4), _f32(rng, N, 1)
    xv, yv = _f32(rng, 9, 4), _f32(rng, 9, 1)
    model = _dense_model(metrics=None)
    history = model.fit(x, y, batch_size=4, epochs=4, seed=0, verbose=0,
                        validation_data=(xv, yv), validation_freq=2, validation_batch_size=2)
    assert list(history.history) == ["loss", "val_loss"]
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv, yv, verbose=0), rel=1e-6)
    history = model.fit(x, y, epochs=5, verbose=0, validation_data=(xv, yv),
                        validation_freq=[2, 5])
    assert len(history.history["val_loss"]) == 2


# -- History keys ---------------------------------------------------------------------------------

# What Keras 3's fit returns in `history.history` for the same compile and callbacks (keys in
# Keras's order: the logs' keys sorted, then "learning_rate" added by the callback).
KERAS_KEYS_ONE_OUTPUT = ["accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"]
KERAS_KEYS_TWO_OUTPUTS = ["loss", "p_accuracy", "p_loss", "q_loss", "val_loss",
                          "val_p_accuracy", "val_p_loss", "val_q_loss"]


def test_history_keys_are_keras_keys(rng):
    x, labels = _f32(rng, N, 4), rng.integers(0, 3, N)
    model = _dense_model(units=3, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                         optimizer="sgd")
    history = model.fit(x, labels, epochs=2, verbose=0, validation_split=0.25,
                        callbacks=[callbacks.ReduceLROnPlateau(patience=1)])
    assert list(history.history) == KERAS_KEYS_ONE_OUTPUT
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 1}
    assert model.history is history and history.epoch == [0, 1]
    a, b = numba_gn.Input((4,), name="a"), numba_gn.Input((4,), name="b")
    p = layers.Dense(3, name="p")(a)
    q = layers.Dense(1, name="q")(layers.Concatenate()([a, b]))
    two = Model([a, b], [p, q])
    two.compile("sgd", ["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], []])
    targets = [labels, x[:, :1]]
    history = two.fit([x, x], targets, epochs=1, verbose=0, validation_data=([x, x], targets))
    assert list(history.history) == KERAS_KEYS_TWO_OUTPUTS


# -- reproducible shuffling and resuming ----------------------------------------------------------


def _adam_model(seed=7):
    return _dense_model(seed=seed, optimizer=optimizers.Adam(0.01), units=2)


def _xy(rng):
    return _f32(rng, 23, 4), _f32(rng, 23, 2)


def test_each_epochs_order_depends_only_on_seed_and_epoch(rng):
    x, y = _xy(rng)
    reference = _adam_model()
    full = reference.fit(x, y, batch_size=4, epochs=6, seed=3, verbose=0)
    # The same model object, trained 3 epochs, then resumed at epoch 3 (optimizer state kept).
    model = _adam_model()
    first = model.fit(x, y, batch_size=4, epochs=3, seed=3, verbose=0)
    rest = model.fit(x, y, batch_size=4, epochs=6, initial_epoch=3, seed=3, verbose=0)
    assert first.history["loss"] + rest.history["loss"] == full.history["loss"]
    assert rest.epoch == [3, 4, 5]
    _assert_same_weights(model.get_weights(), reference.get_weights())
    # Another seed, another order.
    other = _adam_model()
    assert other.fit(x, y, batch_size=4, epochs=6, seed=4, verbose=0).history != full.history


class InterruptError(Exception):
    pass


def _interrupt_at(epoch):
    def on_epoch_begin(e, logs):
        if e == epoch:
            raise InterruptError

    return callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin)


@pytest.mark.parametrize("seed", [5, None])
def test_backup_and_restore_resumes_bit_for_bit(rng, tmp_path, seed):
    x, y = _xy(rng)
    backup = tmp_path / "backup"
    kwargs = {"batch_size": 4, "epochs": 6, "verbose": 0, "validation_split": 0.2}
    interrupted = _adam_model()
    with pytest.raises(InterruptError):
        interrupted.fit(x, y, seed=seed, callbacks=[callbacks.BackupAndRestore(backup),
                                                    _interrupt_at(3)], **kwargs)
    assert os.listdir(backup) == ["latest.state.zip"]  # kept: on_train_end did not run
    assert interrupted.history.epoch == [0, 1, 2]
    # A new model (as in a new process) with other initial weights and a fresh optimizer.
    resumed = _adam_model(seed=99)
    begun = []
    history = resumed.fit(x, y, seed=None if seed is None else 1234, callbacks=[
        callbacks.BackupAndRestore(backup),
        callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))], **kwargs)
    assert begun == [3, 4, 5] and history.epoch == [3, 4, 5]
    assert not backup.exists()  # deleted when training completed
    # The shuffling seed came back with the backup (a different `seed` was passed).
    assert resumed._shuffler.seed == interrupted._shuffler.seed
    steps = 5  # 18 training samples in batches of 4
    assert resumed.optimizer.iterations == interrupted.optimizer.iterations + 3 * steps
    if seed is None:
        return
    reference = _adam_model()
    full = reference.fit(x, y, seed=seed, **kwargs)
    for key, values in full.history.items():
        assert interrupted.history.history[key] + history.history[key] == values, key
    _assert_same_weights(resumed.get_weights(), reference.get_weights())


def test_backup_state_round_trip_and_mismatch(rng, tmp_path):
    x, y = _xy(rng)
    model = _adam_model()
    model.fit(x, y, epochs=2, seed=0, verbose=0)
    state = model._backup_state()
    assert set(state) == {"weights", "optimizer", "rng", "shuffle_seed"}
    assert state["optimizer"]["iterations"] == model.optimizer.iterations
    assert state["optimizer"]["learning_rate"] == 0.01
    assert all(len(s) == 2 for s in state["optimizer"]["slots"])  # Adam's m and v
    assert state["rng"] == np.random.default_rng([0, 2]).bit_generator.state
    other = _adam_model(seed=50)
    other.fit(x, y, epochs=1, verbose=0)  # build the optimizer's slots on other values
    other._shuffler = None
    other._restore_state({**state, "epoch": 2, "batch": 0})
    _assert_same_weights(other.get_weights(), model.get_weights())
    assert other.optimizer.iterations == model.optimizer.iterations and other._initial_epoch == 2
    mine = {id(v): s for v, s in model.optimizer.variables_state().items()}
    for v, w in zip(other.weights, model.weights, strict=True):
        for a, b in zip(other.optimizer.variables_state()[v], mine[id(w)], strict=True):
            np.testing.assert_array_equal(a, b)
    # Another architecture, or another optimizer: refused, nothing changed.
    wider = _dense_model(units=3, optimizer=optimizers.Adam(0.01))
    sgd = _dense_model(seed=7, units=2, optimizer=optimizers.SGD(0.1, momentum=0.9))
    for target in (wider, sgd):
        before = target.get_weights()
        with pytest.raises(ValueError, match="does not fit"):
            target._restore_state({**state, "epoch": 2, "batch": 0})
        _assert_same_weights(target.get_weights(), before)
        assert target.optimizer.iterations == 0 and target._initial_epoch is None


# -- progress output ------------------------------------------------------------------------------

VALUE = r"-?\d+\.\d{4}(e[+-]\d+)?"
TIME = r"\d+(s|ms|us)/step"


def test_progress_bar_off_a_terminal_is_one_line_per_epoch(data):
    x, y = data
    model = _dense_model(metrics=None)
    out = io.StringIO()
    model.fit(x, y, batch_size=4, epochs=2, verbose=1, validation_data=(x, y), stream=out)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    for line in (lines[1], lines[3]):
        assert re.fullmatch(rf"5/5 ━{{20}} \d+s {TIME} - loss: {VALUE} - val_loss: {VALUE}",
                            line), line
    out = io.StringIO()
    model.evaluate(x, y, batch_size=4, verbose="auto", stream=out)
    assert re.fullmatch(rf"5/5 ━{{20}} \d+s {TIME} - loss: {VALUE}\n", out.getvalue())


def test_verbose_2_prints_keras_epoch_lines(rng):
    x, labels = _f32(rng, N, 4), rng.integers(0, 3, N)
    model = _dense_model(units=3, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out = io.StringIO()
    model.fit(x, labels, batch_size=8, epochs=2, verbose=2, validation_split=0.2, stream=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and len(lines) == 4
    assert re.fullmatch(rf"2/2 - \d+s - {TIME} - accuracy: {VALUE} - loss: {VALUE} - "
                        rf"val_accuracy: {VALUE} - val_loss: {VALUE}", lines[1]), lines[1]
    out = io.StringIO()
    model.predict(x, batch_size=8, verbose=2, stream=out)
    assert re.fullmatch(rf"3/3 - \d+s - {TIME}\n", out.getvalue())
    out = io.StringIO()
    model.fit(x, labels, epochs=1, verbose=0, stream=out)
    assert out.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_redraws_in_place(data):
    x, y = data
    model = _dense_model(metrics=None)
    out = _Terminal()
    model.fit(x, y, batch_size=10, epochs=1, verbose=1, stream=out)
    text = out.getvalue()
    assert "Epoch" not in text  # one epoch: no header (Keras)
    draws = text.split("\r")[1:]
    assert len(draws) >= 2 and text.endswith("\n") and text.count("\n") == 1
    plain = [re.sub(r"\x1b\[\d+m", "", d) for d in draws]
    # Every draw shows the steps, the time (left, then taken) and the loss.
    assert re.match(rf"1/2 ━{{10}}━{{10}} \d+s {TIME} - loss: {VALUE}", plain[0]), plain[0]
    assert re.match(rf"2/2 ━{{20}} \d+s {TIME} - loss: {VALUE}", plain[-1]), plain[-1]
    assert "\x1b[32m" in draws[-1]  # Keras's green for the part done


def test_progbar_formats_follow_keras():
    assert _eta(5.9) == "5s" and _eta(75) == "1:15" and _eta(3725) == "1:02:05"
    assert _per_unit(0.0123, "step") == " 12ms/step" and _per_unit(2.4, "step") == " 2s/step"
    assert _per_unit(0.000123, "step") == " 123us/step" and _per_unit(0, "step") == " 0s/step"
    assert _fmt(0.5) == "0.5000" and _fmt(0.0005) == "5.0000e-04" and _fmt(-2.0) == "-2.0000"
    assert _fmt(12345.678) == "12345.6780" and _fmt(0.0) == "0.0000e+00"

    class Ascii(io.StringIO):
        encoding = "ascii"

    out = Ascii()
    bar = Progbar(4, stream=out)
    bar.finish({"loss": 1.0})
    assert re.fullmatch(rf"4/4 ={{20}} \d+s {TIME} - loss: 1\.0000\n", out.getvalue())


def test_a_batch_level_backup_restarts_its_epoch(rng, tmp_path):
    x, y = _xy(rng)
    backup = tmp_path / "backup"
    model = _adam_model()

    def stop(batch, logs):
        if model.optimizer.iterations == 2 * 6 + 4:  # epoch 2, after its batch 3
            raise InterruptError

    with pytest.raises(InterruptError):
        model.fit(x, y, batch_size=4, epochs=4, seed=2, verbose=0, callbacks=[
            callbacks.BackupAndRestore(backup, save_freq=3),
            callbacks.LambdaCallback(on_train_batch_end=stop)])
    resumed = _adam_model(seed=31)
    begun = []
    history = resumed.fit(x, y, batch_size=4, epochs=4, seed=2, verbose=0, callbacks=[
        callbacks.BackupAndRestore(backup, save_freq=3),
        callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))])
    # The backup after batch 2 of epoch 2 (the 15th step): epoch 2 runs again, whole (Keras),
    # from the weights and optimizer state of that backup.
    assert begun == [2, 3] and history.epoch == [2, 3]
    assert resumed.optimizer.iterations == 15 + 2 * 6
