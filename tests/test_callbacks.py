"""Keras 3's callbacks (`numba_gn.training.callbacks`), driven as `fit` drives them.

Each callback is run over the same sequence of epoch (and batch) logs as Keras's own callback,
each with its own fake model, and the decisions are compared: the epoch that stops training,
the weights restored, the files saved and their names, the learning rates, the CSV bytes.
`BackupAndRestore` is checked with a small fit loop that follows the protocol documented in
the module: an interrupted and resumed run must end exactly as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest

from numba_gn.training import callbacks as cbm
from numba_gn.training import metrics as metrics_mod
from numba_gn.training import optimizers as opt_mod

keras = pytest.importorskip("keras")


# -- fakes ----------------------------------------------------------------------------------------


class FakeOptimizer:
    """An optimizer with a plain, settable learning rate."""

    def __init__(self, learning_rate: float = 0.1) -> None:
        self.learning_rate = learning_rate


class FakeModel:
    """What the callbacks use: stop_training, weights, an optimizer, save calls recorded."""

    def __init__(self, optimizer=None) -> None:
        self.stop_training = False
        self._weights = [np.zeros(2), np.zeros(3)]
        self.optimizer = optimizer if optimizer is not None else FakeOptimizer()
        self.saved: list[tuple[str, str]] = []

    def get_weights(self):
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        self._weights = [np.array(w, copy=True) for w in weights]

    def train_epoch(self, epoch: int) -> None:
        """Stands for an epoch of training: the weights then identify the epoch."""
        self._weights = [np.full(2, float(epoch)), np.full(3, -float(epoch))]

    def save(self, filepath, **kwargs):
        self.saved.append(("save", os.path.basename(filepath)))

    def save_weights(self, filepath, **kwargs):
        self.saved.append(("save_weights", os.path.basename(filepath)))


def drive(cb, model, epoch_logs, batch_logs=None, params=None):
    """Drive one callback through a fit: returns the epochs run and each epoch's logs."""
    cb.set_model(model)
    cb.set_params(params or {"verbose": 0, "epochs": len(epoch_logs), "steps": 1})
    model.stop_training = False
    cb.on_train_begin()
    seen, last = [], {}
    for epoch, logs in enumerate(epoch_logs):
        cb.on_epoch_begin(epoch)
        model.train_epoch(epoch)
        for batch, blogs in enumerate(batch_logs[epoch] if batch_logs else []):
            cb.on_train_batch_begin(batch)
            cb.on_train_batch_end(batch, dict(blogs))
            if model.stop_training:
                break
        logs = dict(logs)
        cb.on_epoch_end(epoch, logs)
        seen.append(logs)
        last = logs
        if model.stop_training:
            break
    cb.on_train_end(last)
    return seen


def sequence(rng, n=12, key="val_loss"):
    """A noisy, partly flat metric sequence (rounded, so ties and near-ties happen)."""
    values = np.round(1.0 - 0.05 * np.arange(n) + rng.normal(0, 0.08, n), 1)
    return [{"loss": float(v) + 0.1, key: float(v)} for v in values]


# -- CallbackList ---------------------------------------------------------------------------------


def _recorder(base):
    class Recorder(base):
        def __init__(self):
            super().__init__()
            self.calls = []

    for hook in cbm.HOOKS:
        if hook in ("on_batch_begin", "on_batch_end"):
            continue  # keep the aliases' default chaining

        def method(self, *args, _hook=hook, **kwargs):
            logs = kwargs.get("logs", args[-1] if args else None)
            self.calls.append((_hook, args[:-1] if "logs" not in kwargs else args,
                               dict(logs) if logs is not None else None))

        setattr(Recorder, hook, method)
    return Recorder


def _fit_protocol(cbs, model, epochs=3, steps=2, val=True):
    """The documented loop, without training."""
    model.stop_training = False
    cbs.on_train_begin()
    training_logs = {}
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            cbs.on_train_batch_end(step, {"loss": np.float32(1.0 / (step + 1)), "acc": 0.5})
        logs = {"loss": 0.5 - 0.1 * epoch, "acc": np.float64(0.25 * epoch)}
        if val:
            cbs.on_test_begin()
            cbs.on_test_batch_begin(0)
            cbs.on_test_batch_end(0, {"loss": 0.7})
            cbs.on_test_end({"loss": 0.7, "acc": 0.1})
            logs.update({"val_loss": 0.7 - 0.2 * epoch, "val_acc": 0.1})
        cbs.on_epoch_end(epoch, logs)
        training_logs = logs
    cbs.on_train_end(training_logs)


def test_callback_list_dispatch_matches_keras():
    ours_rec, keras_rec = _recorder(cbm.Callback)(), _recorder(keras.callbacks.Callback)()
    params = {"verbose": 0, "epochs": 3, "steps": 2}
    m1, m2 = FakeModel(), FakeModel()
    ours = cbm.CallbackList([ours_rec], add_history=True, model=m1, **params)
    theirs = keras.callbacks.CallbackList([keras_rec], add_history=True, model=m2, **params)
    _fit_protocol(ours, m1)
    _fit_protocol(theirs, m2)
    assert ours_rec.calls == keras_rec.calls
    assert ours_rec.params == keras_rec.params == params
    assert m1.history is ours.callbacks[-1] and isinstance(m1.history, cbm.History)
    assert m1.history.history == m2.history.history
    assert m1.history.epoch == m2.history.epoch == [0, 1, 2]
    assert m1.history.params == params
    # Keys sorted, values plain floats (pythonify_logs), as Keras.
    assert list(m1.history.history) == ["acc", "loss", "val_acc", "val_loss"]
    assert all(type(v) is float for vs in m1.history.history.values() for v in vs)


def test_callback_list_defaults_and_flattening():
    h = cbm.History()
    extra = cbm.Callback()
    cbs = cbm.CallbackList([[h], (extra,)], add_history=True, add_progbar=True,
                           model=FakeModel(), verbose=1, epochs=2, steps=3)
    # An existing History is used, not doubled; the ProgbarLogger comes last.
    assert cbs.callbacks[:2] == [h, extra]
    assert isinstance(cbs.callbacks[2], cbm.ProgbarLogger) and len(cbs.callbacks) == 3
    assert cbs._history is h and cbs._progbar is cbs.callbacks[2]
    assert cbm.CallbackList(extra).callbacks == [extra]
    assert cbm.CallbackList().callbacks == []


def test_callback_list_bad_arguments():
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        cbm.CallbackList([cbm.Callback(), "early_stopping"])
    with pytest.raises(TypeError, match="add_history"):
        cbm.CallbackList([], add_history=1)
    cbs = cbm.CallbackList([])
    with pytest.raises(ValueError, match="without corresponding"):
        cbs.on_train_end()
    with pytest.raises(ValueError, match="without corresponding"):
        keras.callbacks.CallbackList([]).on_train_end()


def test_callback_list_accepts_keras_callbacks():
    """Anything with the hooks can be listed (a Keras callback too)."""
    m = FakeModel()
    cbs = cbm.CallbackList([keras.callbacks.EarlyStopping(monitor="loss")], model=m)
    _fit_protocol(cbs, m, val=False)
    assert m.stop_training is False


def test_logs_are_one_new_dict_shared_along_the_list():
    """A callback's additions reach the callbacks after it; the loop's dict is untouched."""
    m = FakeModel(opt_mod.SGD(0.1))
    sched = cbm.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    cbs = cbm.CallbackList([sched], add_history=True, model=m, verbose=0, epochs=2, steps=1)
    cbs.on_train_begin()
    loop_logs = {"loss": 1.0}
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, loop_logs)
    cbs.on_train_end(loop_logs)
    assert loop_logs == {"loss": 1.0}
    assert m.history.history == {"learning_rate": [0.05, 0.025], "loss": [1.0, 1.0]}


def test_pythonify_logs_matches_keras():
    from keras.src.utils.python_utils import pythonify_logs as keras_pythonify

    logs = {
        "b": np.float32(0.25),
        "a": 3,
        "nested": {"z": np.float64(1.5), "y": True},
        "vec": np.arange(3.0),
        "one": np.array([2.0]),
        "zero_d": np.array(4.0),
    }
    ours, theirs = cbm.pythonify_logs(logs), keras_pythonify(logs)
    assert list(ours) == list(theirs)
    for k in ours:
        if isinstance(ours[k], np.ndarray):
            np.testing.assert_array_equal(ours[k], theirs[k])
        else:
            assert ours[k] == theirs[k] and type(ours[k]) is type(theirs[k])
    assert cbm.pythonify_logs({"note": "1.5"}) == {"note": "1.5"}  # text stays text here


def test_callback_defaults_and_batch_aliases():
    calls = []

    class Old(cbm.Callback):
        def on_batch_begin(self, batch, logs=None):
            calls.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            calls.append(("end", batch, logs))

    cb = Old()
    assert cb.params is None and cb.model is None
    cbs = cbm.CallbackList([cb])
    cbs.on_train_batch_begin(0)
    cbs.on_train_batch_end(0, {"loss": 1})
    assert calls == [("begin", 0), ("end", 0, {"loss": 1.0})]


# -- History and ProgbarLogger --------------------------------------------------------------------


def test_history_matches_keras_and_keeps_history_across_fits():
    ours, theirs = cbm.History(), keras.callbacks.History()
    for cb in (ours, theirs):
        m = FakeModel()
        drive(cb, m, [{"loss": 1.0}, {"loss": 0.5}])
        drive(cb, m, [{"loss": 0.25}])
        assert m.history is cb
    assert ours.history == theirs.history == {"loss": [1.0, 0.5, 0.25]}
    assert ours.epoch == theirs.epoch == [0]


def test_progbar_logger_lines():
    out = io.StringIO()
    bar = cbm.ProgbarLogger(stream=out)
    cbs = cbm.CallbackList([bar], add_history=True, model=FakeModel(), verbose=2, epochs=2,
                           steps=2)
    _fit_protocol(cbs, cbs.model, epochs=2, steps=2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    # The validation inside fit is silent; the epoch line has every value.
    assert lines[1].startswith("2/2 - ") and "val_loss: 0.7000" in lines[1]
    assert "loss: 0.5000" in lines[1] and "acc: 0.0000" in lines[1]
    assert "loss: 0.4000" in lines[3]


def test_progbar_logger_single_epoch_and_evaluate(capsys):
    bar = cbm.ProgbarLogger()  # stdout
    cbs = cbm.CallbackList([bar], model=FakeModel(), verbose="auto", epochs=1, steps=3)
    assert bar.verbose == 1
    cbs.on_test_begin()
    for i in range(3):
        cbs.on_test_batch_begin(i)
        cbs.on_test_batch_end(i, {"loss": 0.5})
    cbs.on_test_end({"loss": 0.5})
    out = capsys.readouterr().out
    assert "Epoch" not in out and out.startswith("3/3 ━") and "loss: 0.5000" in out
    silent = cbm.ProgbarLogger(stream=io.StringIO())
    cbs = cbm.CallbackList([silent], model=FakeModel(), verbose=0, epochs=2, steps=3)
    _fit_protocol(cbs, cbs.model, epochs=2)
    assert silent.stream.getvalue() == ""
    with pytest.raises(TypeError, match="stream"):
        cbm.ProgbarLogger(stream=3)


# -- EarlyStopping --------------------------------------------------------------------------------

EARLY_CONFIGS = [
    {},
    {"patience": 2},
    {"patience": 3, "min_delta": 0.05},
    {"patience": 1, "mode": "max"},
    {"patience": 2, "mode": "min", "baseline": 0.6},
    {"patience": 2, "baseline": 0.2, "restore_best_weights": True},
    {"patience": 2, "restore_best_weights": True},
    {"patience": 1, "restore_best_weights": True, "start_from_epoch": 3},
    {"patience": 0, "min_delta": -0.1, "restore_best_weights": True},
    {"monitor": "loss", "patience": 4, "restore_best_weights": True},
]


@pytest.mark.parametrize("config", EARLY_CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_early_stopping_matches_keras(config, seed):
    logs = sequence(np.random.default_rng(seed))
    ours, theirs = cbm.EarlyStopping(**config), keras.callbacks.EarlyStopping(**config)
    m1, m2 = FakeModel(), FakeModel()
    run1, run2 = drive(ours, m1, logs), drive(theirs, m2, logs)
    assert len(run1) == len(run2)
    assert m1.stop_training == m2.stop_training
    for attr in ("stopped_epoch", "best_epoch", "wait", "best"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_known_decisions(capsys):
    """A hand-checked case: best at epoch 1, patience 2 stops at epoch 3, restores epoch 1."""
    logs = [{"val_loss": v} for v in (1.0, 0.5, 0.6, 0.7, 0.1)]
    cb = cbm.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    m = FakeModel()
    assert len(drive(cb, m, logs)) == 4 and cb.stopped_epoch == 3
    np.testing.assert_array_equal(m.get_weights()[0], [1.0, 1.0])
    assert capsys.readouterr().out == (
        "Epoch 4: early stopping\nRestoring model weights from the end of the best epoch: 2.\n"
    )


def test_early_stopping_reused_and_missing_monitor():
    cb = cbm.EarlyStopping(patience=0)
    m = FakeModel()
    drive(cb, m, [{"val_loss": 1.0}, {"val_loss": 2.0}, {"val_loss": 0.1}])
    assert cb.stopped_epoch == 1
    drive(cb, m, [{"val_loss": 1.0}, {"val_loss": 0.5}])  # state reset by on_train_begin
    assert cb.stopped_epoch == 0 and not m.stop_training
    for es in (cbm.EarlyStopping(), keras.callbacks.EarlyStopping()):
        with pytest.warns(UserWarning, match="Early stopping conditioned on metric `val_loss` "
                          "which is not available. Available metrics are: loss,acc"):
            drive(es, FakeModel(), [{"loss": 1.0, "acc": 0.5}])


def test_monitor_direction_in_auto_mode():
    class Compiled(FakeModel):
        compiled_metrics = [metrics_mod.get("accuracy"),
                            metrics_mod.get("sparse_categorical_accuracy")]

    for name in ("val_accuracy", "sparse_categorical_accuracy"):
        cb = cbm.EarlyStopping(monitor=name, patience=0)
        drive(cb, Compiled(), [{name: v} for v in (0.5, 0.7, 0.6, 0.9)])
        assert cb.monitor_op is np.greater and cb.stopped_epoch == 2
    message = ("EarlyStopping callback received monitor=val_mae, but Keras isn't able to "
               "automatically determine")
    for es in (cbm.EarlyStopping(monitor="val_mae"), keras.callbacks.EarlyStopping("val_mae")):
        with pytest.raises(ValueError, match=message):
            drive(es, FakeModel(), [{"val_mae": 1.0}])


@pytest.mark.parametrize("cls", ["EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"])
def test_unknown_mode_warns_like_keras(cls, tmp_path):
    args = (str(tmp_path / "m.keras"),) if cls == "ModelCheckpoint" else ()
    messages = []
    for module in (cbm, keras.callbacks):
        with pytest.warns(UserWarning) as record:
            cb = getattr(module, cls)(*args, mode="maximum")
        messages.append(str(record[0].message))
        assert cb.mode == "auto"
    assert messages[0] == messages[1] == f"{cls} mode 'maximum' is unknown, fallback to auto mode."


def test_early_stopping_bad_arguments():
    with pytest.raises(TypeError, match="patience"):
        cbm.EarlyStopping(patience=1.5)
    with pytest.raises(ValueError, match="patience"):
        cbm.EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="monitor"):
        cbm.EarlyStopping(monitor=None)
    with pytest.raises(ValueError, match="min_delta"):
        cbm.EarlyStopping(min_delta=math.nan)
    with pytest.raises(TypeError, match="baseline"):
        cbm.EarlyStopping(baseline="0.5")
    with pytest.raises(TypeError, match="restore_best_weights"):
        cbm.EarlyStopping(restore_best_weights=1)
    with pytest.raises(ValueError, match="start_from_epoch"):
        cbm.EarlyStopping(start_from_epoch=-2)
    with pytest.raises(TypeError, match="verbose"):
        cbm.EarlyStopping(verbose="1")


# -- ModelCheckpoint ------------------------------------------------------------------------------

CHECKPOINT_CONFIGS = [
    ("{epoch:02d}-{val_loss:.3f}.weights.h5", {"save_weights_only": True}),
    ("best.weights.h5", {"save_weights_only": True, "save_best_only": True}),
    ("e{epoch}.keras", {"save_best_only": True, "mode": "max", "monitor": "loss"}),
    ("e{epoch}-{val_loss:.2f}.keras", {"save_best_only": True, "initial_value_threshold": 0.9}),
    ("sub/e{epoch:03d}.weights.h5", {"save_weights_only": True, "save_best_only": True,
                                     "monitor": "val_loss", "mode": "min"}),
]


@pytest.mark.parametrize("pattern,config", CHECKPOINT_CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_model_checkpoint_matches_keras(pattern, config, seed, tmp_path):
    logs = sequence(np.random.default_rng(seed), n=8)
    runs = []
    for i, module in enumerate((cbm, keras.callbacks)):
        folder = tmp_path / str(i)
        folder.mkdir()
        cb = module.ModelCheckpoint(str(folder / pattern), **config)
        m = FakeModel()
        drive(cb, m, logs)
        runs.append((m.saved, cb.best))
    assert runs[0] == runs[1]
    assert runs[0][0]  # something was saved


def test_model_checkpoint_batch_frequency_matches_keras(tmp_path, rng):
    epochs, steps = 3, 5
    logs = [{"loss": 1.0 - 0.1 * e} for e in range(epochs)]
    batch_logs = [[{"loss": float(v)} for v in np.round(rng.uniform(0, 1, steps), 2)]
                  for _ in range(epochs)]
    saved = []
    for module in (cbm, keras.callbacks):
        cb = module.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.weights.h5"),
                                    monitor="loss", save_weights_only=True, save_freq=2)
        m = FakeModel()
        drive(cb, m, logs, batch_logs)
        saved.append(m.saved)
    assert saved[0] == saved[1]
    # Every 2nd batch, counted across epochs; no save at the epoch ends.
    assert [name for _, name in saved[0]] == [
        "e1-b2.weights.h5", "e1-b4.weights.h5", "e2-b1.weights.h5", "e2-b3.weights.h5",
        "e2-b5.weights.h5", "e3-b2.weights.h5", "e3-b4.weights.h5"]


def test_model_checkpoint_best_of_batches(tmp_path):
    """save_best_only at batch level (Keras fails there in the first epoch: no monitor_op)."""
    losses = [[0.9, 0.8, 0.85, 0.5], [0.6, 0.4, 0.45, 0.3]]
    cb = cbm.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.weights.h5"), monitor="loss",
                             save_weights_only=True, save_best_only=True, save_freq=1)
    m = FakeModel()
    drive(cb, m, [{"loss": 0.5}, {"loss": 0.3}], [[{"loss": v} for v in e] for e in losses])
    assert [name for _, name in m.saved] == [
        "e1-b1.weights.h5", "e1-b2.weights.h5", "e1-b4.weights.h5", "e2-b2.weights.h5",
        "e2-b4.weights.h5"]


def test_model_checkpoint_missing_monitor_saves_with_warning(tmp_path):
    for module in (cbm, keras.callbacks):
        cb = module.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
        m = FakeModel()
        with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
            drive(cb, m, [{"loss": 1.0}])
        assert m.saved == [("save", "m.keras")]


def test_model_checkpoint_messages(capsys, tmp_path):
    outs = []
    for i, module in enumerate((cbm, keras.callbacks)):
        cb = module.ModelCheckpoint(str(tmp_path / f"{i}.keras"), save_best_only=True, verbose=1)
        drive(cb, FakeModel(), [{"val_loss": v} for v in (0.5, 0.6, 0.25)])
        outs.append(capsys.readouterr().out.replace(f"{i}.keras", "X"))
    assert outs[0] == outs[1] and "val_loss improved from 0.50000 to 0.25000" in outs[0]


def test_model_checkpoint_with_a_real_model(tmp_path, rng):
    """Weight files written through Sequential.save_weights, named per epoch, load back."""
    import numba_gn

    model = numba_gn.Sequential([numba_gn.layers.Dense(2)])
    model.build((None, 3))
    cb = cbm.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}-{val_loss:.2f}.npz"),
                             save_weights_only=True, save_best_only=True)
    snapshots = {}

    cb.set_model(model)
    cb.on_train_begin()
    for epoch, val_loss in enumerate((0.9, 0.4, 0.6)):
        model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
        snapshots[epoch] = model.get_weights()
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"val_loss": val_loss})
    cb.on_train_end()
    assert sorted(os.listdir(tmp_path)) == ["w-01-0.90.npz", "w-02-0.40.npz"]
    clone = numba_gn.Sequential([numba_gn.layers.Dense(2)])
    clone.build((None, 3))
    clone.load_weights(str(tmp_path / "w-02-0.40.npz"))
    for a, b in zip(clone.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_bad_arguments(tmp_path):
    message = "Unrecognized save_freq: batch. Expected save_freq are 'epoch' or integer values"
    for module in (cbm, keras.callbacks):
        with pytest.raises(ValueError, match=message):
            module.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        cbm.ModelCheckpoint("m.keras", save_freq=0)
    with pytest.raises(ValueError, match="save_freq"):
        cbm.ModelCheckpoint("m.keras", save_freq=True)
    with pytest.raises(TypeError, match="filepath"):
        cbm.ModelCheckpoint(3)
    with pytest.raises(TypeError, match="save_best_only"):
        cbm.ModelCheckpoint("m.keras", save_best_only="yes")
    with pytest.raises(TypeError, match="initial_value_threshold"):
        cbm.ModelCheckpoint("m.keras", initial_value_threshold=[1.0])


def test_model_checkpoint_refuses_before_training(tmp_path):
    class NoSave(FakeModel):
        save = None

    cb = cbm.ModelCheckpoint(str(tmp_path / "m.keras"))
    cb.set_model(NoSave())
    with pytest.raises(TypeError, match="save_weights_only=True"):
        cb.on_train_begin()
    (tmp_path / "dir.keras").mkdir()
    cb = cbm.ModelCheckpoint(str(tmp_path / "dir.keras"))
    with pytest.raises(OSError, match="non-directory filepath"):
        drive(cb, FakeModel(), [{"val_loss": 1.0}])
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        drive(cbm.ModelCheckpoint(str(tmp_path / "{acc}.keras")), FakeModel(), [{"loss": 1.0}])


# -- ReduceLROnPlateau and LearningRateScheduler --------------------------------------------------

PLATEAU_CONFIGS = [
    {},
    {"patience": 1},
    {"patience": 2, "factor": 0.5, "cooldown": 2},
    {"patience": 1, "factor": 0.2, "min_lr": 0.005},
    {"patience": 2, "mode": "max", "min_delta": 0.0},
    {"patience": 0, "factor": 0.5, "min_delta": 0.05},
    {"monitor": "loss", "patience": 1, "factor": 0.3, "cooldown": 1, "min_lr": 1e-3},
]


@pytest.mark.parametrize("config", PLATEAU_CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reduce_lr_on_plateau_matches_keras(config, seed):
    logs = sequence(np.random.default_rng(seed), n=15)
    results = []
    for module in (cbm, keras.callbacks):
        cb = module.ReduceLROnPlateau(**config)
        m = FakeModel(opt_mod.SGD(learning_rate=0.1))
        lrs = []

        m.train_epoch = lambda epoch, m=m, lrs=lrs: lrs.append(m.optimizer.learning_rate)
        seen = drive(cb, m, logs)
        results.append((lrs, [s["learning_rate"] for s in seen], cb.wait, cb.cooldown_counter,
                        cb.best))
    assert results[0] == results[1]


def test_reduce_lr_on_plateau_decisions(capsys):
    cb = cbm.ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.02, verbose=1)
    m = FakeModel(opt_mod.SGD(learning_rate=0.1))
    seen = drive(cb, m, [{"val_loss": v} for v in (1.0, 1.0, 1.0, 1.0, 1.0)])
    assert [s["learning_rate"] for s in seen] == [0.1, 0.1, 0.05, 0.025, 0.02]
    assert m.optimizer.learning_rate == 0.02
    assert capsys.readouterr().out == (
        "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.05.\n"
        "\nEpoch 3: ReduceLROnPlateau reducing learning rate to 0.025.\n"
        "\nEpoch 4: ReduceLROnPlateau reducing learning rate to 0.02.\n"
    )


def test_reduce_lr_on_plateau_refuses_a_schedule():
    sched = opt_mod.CosineDecay(0.1, decay_steps=10)
    m = FakeModel(opt_mod.SGD(learning_rate=sched))
    cb = cbm.ReduceLROnPlateau(patience=0)
    with pytest.raises(TypeError, match="learning rate is not settable"):
        drive(cb, m, [{"val_loss": 1.0}, {"val_loss": 1.0}])
    assert m.optimizer._learning_rate is sched


def test_reduce_lr_on_plateau_bad_arguments():
    message = "ReduceLROnPlateau does not support a factor >= 1.0. Received factor=1.0"
    for module in (cbm, keras.callbacks):
        with pytest.raises(ValueError, match=message):
            module.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="factor"):
        cbm.ReduceLROnPlateau(factor=-0.5)
    with pytest.raises(ValueError, match="min_lr"):
        cbm.ReduceLROnPlateau(min_lr=-1)
    with pytest.raises(TypeError, match="cooldown"):
        cbm.ReduceLROnPlateau(cooldown=0.5)
    with pytest.raises(TypeError):
        cbm.ReduceLROnPlateau(epsilon=1e-4)  # unknown keyword: Keras ignores it silently
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric"):
        drive(cbm.ReduceLROnPlateau(), FakeModel(opt_mod.SGD()), [{"loss": 1.0}])


@pytest.mark.parametrize("schedule", [
    lambda epoch, lr: lr if epoch < 2 else lr * 0.5,
    lambda epoch: 0.1 / (epoch + 1),
    lambda epoch, lr: np.float32(lr * 0.9),
])
def test_learning_rate_scheduler_matches_keras(schedule):
    results = []
    for module in (cbm, keras.callbacks):
        m = FakeModel(opt_mod.SGD(learning_rate=0.2))
        lrs = []
        m.train_epoch = lambda epoch, m=m, lrs=lrs: lrs.append(m.optimizer.learning_rate)
        seen = drive(module.LearningRateScheduler(schedule), m, [{"loss": 1.0}] * 5)
        results.append((lrs, [s["learning_rate"] for s in seen]))
    assert results[0] == results[1]


def test_learning_rate_scheduler_errors(capsys):
    message = "The output of the `schedule` function should be a float. Got: 1"
    for module in (cbm, keras.callbacks):
        with pytest.raises(ValueError, match=message):
            drive(module.LearningRateScheduler(lambda epoch: 1), FakeModel(), [{"loss": 1.0}])
    with pytest.raises(ValueError, match="finite learning rate"):
        drive(cbm.LearningRateScheduler(lambda e: math.nan), FakeModel(), [{"loss": 1.0}])
    with pytest.raises(TypeError, match="not settable"):
        drive(cbm.LearningRateScheduler(lambda e, lr: lr),
              FakeModel(opt_mod.Adam(opt_mod.CosineDecay(0.1, 10))), [{"loss": 1.0}])
    with pytest.raises(TypeError, match="schedule"):
        cbm.LearningRateScheduler(0.1)
    # A TypeError inside a two-argument schedule is not retried with one argument.
    with pytest.raises(TypeError, match="inside"):
        drive(cbm.LearningRateScheduler(lambda e, lr: (_ for _ in ()).throw(TypeError("inside"))),
              FakeModel(), [{"loss": 1.0}])
    drive(cbm.LearningRateScheduler(lambda e, lr: 0.5, verbose=1), FakeModel(), [{"loss": 1.0}])
    assert capsys.readouterr().out == (
        "\nEpoch 1: LearningRateScheduler setting learning rate to 0.5.\n")


def test_learning_rate_needs_an_optimizer():
    m = FakeModel()
    m.optimizer = None
    with pytest.raises(ValueError, match="model.optimizer is None"):
        drive(cbm.LearningRateScheduler(lambda e, lr: lr), m, [{"loss": 1.0}])


# -- CSVLogger ------------------------------------------------------------------------------------

CSV_RUNS = [
    [{"loss": 0.5, "acc": 0.25}, {"loss": 0.125, "acc": 0.75}],
    [{"val_loss": math.nan, "loss": 1.0}, {"loss": 0.5, "val_loss": 0.25, "extra": 3.0}],
    [{"loss": 0.5, "val_loss": 1.5, "vec": np.array([1.0, 2.0])}, {"loss": 0.25}],
    [{"loss": math.inf, "note": "text", "val_x": 1e-12}],
]


@pytest.mark.parametrize("logs", CSV_RUNS)
@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_csv_logger_bytes_match_keras(logs, separator, tmp_path):
    paths = [tmp_path / "ours.csv", tmp_path / "keras.csv"]
    for path, module in zip(paths, (cbm, keras.callbacks), strict=True):
        drive(module.CSVLogger(str(path), separator=separator), FakeModel(), logs)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes().count(b"\r\n") == len(logs) + 1


def test_csv_logger_content(tmp_path):
    path = tmp_path / "log.csv"
    drive(cbm.CSVLogger(path), FakeModel(),
          [{"loss": 0.5, "acc": 0.25}, {"loss": math.nan, "acc": 1.0}])
    assert path.read_bytes().decode() == (
        "epoch,acc,loss,val_acc,val_loss\r\n0,0.25,0.5,NA,NA\r\n1,1.0,nan,NA,NA\r\n"
    )


def test_csv_logger_append_matches_keras(tmp_path):
    paths = [tmp_path / "ours.csv", tmp_path / "keras.csv"]
    for path, module in zip(paths, (cbm, keras.callbacks), strict=True):
        drive(module.CSVLogger(str(path), append=True), FakeModel(), [{"loss": 1.0}])
        drive(module.CSVLogger(str(path), append=True), FakeModel(), [{"loss": 0.5}] * 2)
        path.with_suffix(".empty").write_bytes(b"")
        drive(module.CSVLogger(str(path.with_suffix(".empty")), append=True), FakeModel(),
              [{"loss": 0.25}])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes().decode() == (
        "epoch,loss,val_loss\r\n0,1.0,NA\r\n0,0.5,NA\r\n1,0.5,NA\r\n")
    assert (tmp_path / "ours.empty").read_bytes() == (tmp_path / "keras.empty").read_bytes()
    # Without append, a new fit starts a new file, from on_train_begin on.
    cb = cbm.CSVLogger(paths[0])
    cb.set_model(FakeModel())
    cb.on_train_begin()
    assert paths[0].read_bytes() == b""


def test_csv_logger_writes_atomically(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    cb = cbm.CSVLogger(path)
    cb.set_model(FakeModel())
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        cb.on_epoch_end(1, {"loss": 0.5})
    monkeypatch.undo()
    # The file still holds whole rows only, and no temporary file is left behind.
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["log.csv"]
    cb.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes().decode() == "epoch,loss,val_loss\r\n0,1.0,NA\r\n1,0.5,NA\r\n"


def test_csv_logger_bad_arguments():
    with pytest.raises(TypeError, match="filename"):
        cbm.CSVLogger(None)
    with pytest.raises(ValueError, match="separator"):
        cbm.CSVLogger("x.csv", separator=";;")
    with pytest.raises(TypeError, match="separator"):
        cbm.CSVLogger("x.csv", separator=1)
    with pytest.raises(TypeError, match="append"):
        cbm.CSVLogger("x.csv", append="yes")


# -- TerminateOnNaN and LambdaCallback ------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_terminate_on_nan_matches_keras(bad, capsys):
    batch_logs = [[{"loss": 1.0}, {"loss": bad}, {"loss": 0.5}], [{"loss": 0.1}]]
    outs, runs = [], []
    for module in (cbm, keras.callbacks):
        m = FakeModel()
        seen = drive(module.TerminateOnNaN(), m, [{"loss": 1.0}, {"loss": 0.5}], batch_logs)
        runs.append((len(seen), m.stop_training))
        outs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] == (1, True)
    assert outs[0] == outs[1] == "Batch 1: Invalid loss, terminating training\n"
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        drive(cbm.TerminateOnNaN(raise_error=True), FakeModel(), [{"loss": 1.0}], batch_logs)
    with pytest.raises(TypeError, match="raise_error"):
        cbm.TerminateOnNaN(raise_error="yes")


def test_lambda_callback():
    calls = []
    cb = cbm.LambdaCallback(
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch, logs)),
        on_train_end=lambda logs: calls.append(("train_end", logs)),
        on_test_end=lambda logs: calls.append(("test_end", logs)),
    )
    cbs = cbm.CallbackList([cb], model=FakeModel())
    _fit_protocol(cbs, cbs.model, epochs=1, steps=1)
    assert calls == [
        ("batch_end", 0, {"acc": 0.5, "loss": 1.0}),
        ("test_end", {"acc": 0.1, "loss": 0.7}),
        ("epoch_end", 0, {"acc": 0.0, "loss": 0.5, "val_acc": 0.1, "val_loss": 0.7}),
        ("train_end", {"acc": 0.0, "loss": 0.5, "val_acc": 0.1, "val_loss": 0.7}),
    ]
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_epoch_ended'"):
        cbm.LambdaCallback(on_epoch_ended=print)
    with pytest.raises(TypeError, match="on_epoch_begin"):
        cbm.LambdaCallback(on_epoch_begin=3)


# -- BackupAndRestore -----------------------------------------------------------------------------


class InterruptError(Exception):
    pass


class Trainable:
    """A model following the documented protocol, with a deterministic 'training'.

    Each step moves the weights by a function of the shuffled batch, an optimizer 'momentum'
    slot and the step count, so any difference in weights, optimizer state or shuffling
    order after a resume shows in the final weights.
    """

    built = True

    def __init__(self, n=10, batch_size=3):
        self.x = np.linspace(-1.0, 1.0, n)
        self.batch_size = batch_size
        self.steps = -(-n // batch_size)
        self.w = np.zeros(2)
        self.momentum = np.zeros(2)
        self.iterations = 0
        self.stop_training = False
        self.optimizer = FakeOptimizer(0.1)
        self._initial_epoch = None
        self.history = None
        self.restored = None

    def get_weights(self):
        return [self.w.copy()]

    def set_weights(self, weights):
        self.w = np.array(weights[0], copy=True)

    def train_step(self, idx):
        g = np.array([self.x[idx].sum(), (self.x[idx] ** 2).sum()]) - 0.1 * self.w
        self.momentum = 0.9 * self.momentum + g
        self.iterations += 1
        self.w = self.w - 0.01 * self.momentum / math.sqrt(self.iterations)
        return float(np.abs(self.w).sum())

    def _backup_state(self):
        return {
            "weights": self.get_weights(),
            "optimizer": {"iterations": self.iterations, "slots": [(self.momentum.copy(),)]},
            "rng": self._rng_resume_state,
        }

    def _restore_state(self, state):
        self.restored = state
        if "extra" in state:  # test_backup_state_round_trip: not this model's state
            self._rng.bit_generator.state = state["rng"]
            self._initial_epoch = state["epoch"]
            return
        self.set_weights(state["weights"])
        self.iterations = state["optimizer"]["iterations"]
        (self.momentum,) = state["optimizer"]["slots"][0]
        self._rng.bit_generator.state = state["rng"]
        self._initial_epoch = state["epoch"]

    def fit(self, epochs, callbacks, seed=0, initial_epoch=0):
        """The documented loop (training part)."""
        cbs = cbm.CallbackList(callbacks, add_history=True, model=self, verbose=0,
                               epochs=epochs, steps=self.steps)
        self._rng = np.random.default_rng(seed)
        self._rng_resume_state = self._rng.bit_generator.state
        self.stop_training = False
        self._initial_epoch = None
        cbs.on_train_begin()
        if self._initial_epoch is not None:
            initial_epoch = self._initial_epoch
        self._initial_epoch = None
        training_logs = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            self._rng_resume_state = self._rng.bit_generator.state
            order = self._rng.permutation(len(self.x))
            total = 0.0
            for step in range(self.steps):
                cbs.on_train_batch_begin(step)
                total += self.train_step(order[step * self.batch_size:(step + 1) *
                                               self.batch_size])
                cbs.on_train_batch_end(step, {"loss": total / (step + 1)})
                if self.stop_training:
                    break
            epoch_logs = {"loss": total / self.steps}
            self._rng_resume_state = self._rng.bit_generator.state
            cbs.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if self.stop_training:
                break
        cbs.on_train_end(training_logs)
        return self.history


def _interrupt_at(epoch, batch=None):
    """A callback that raises at the start of `epoch`, or after its batch `batch`."""

    class At(cbm.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e
            if batch is None and e == epoch:
                raise InterruptError()

        def on_train_batch_end(self, b, logs=None):
            if batch is not None and self.epoch == epoch and b == batch:
                raise InterruptError()

    return At()


@pytest.mark.parametrize("save_freq,interrupt", [
    ("epoch", {"epoch": 3}),
    ("epoch", {"epoch": 1}),
    ("epoch", {"epoch": 2, "batch": 1}),
    (1, {"epoch": 2, "batch": 3}),
    (2, {"epoch": 3, "batch": 2}),
])
def test_backup_and_restore_resumes_exactly(save_freq, interrupt, tmp_path):
    epochs = 5
    reference = Trainable()
    ref_history = reference.fit(epochs, [])
    backup = tmp_path / "backup"
    model = Trainable()
    with pytest.raises(InterruptError):
        model.fit(epochs, [cbm.BackupAndRestore(backup, save_freq=save_freq),
                           _interrupt_at(**interrupt)])
    assert os.listdir(backup) == ["latest.state.zip"]
    resumed = Trainable()  # a new process: fresh objects
    history = resumed.fit(epochs, [cbm.BackupAndRestore(backup, save_freq=save_freq)])
    if save_freq == "epoch":
        # Epoch-level backups resume exactly: same weights, optimizer state and shuffles.
        resume_at = interrupt["epoch"]
        assert resumed.restored["epoch"] == resume_at and resumed.restored["batch"] == 0
        np.testing.assert_array_equal(resumed.w, reference.w)
        np.testing.assert_array_equal(resumed.momentum, reference.momentum)
        assert resumed.iterations == reference.iterations
        assert history.epoch == list(range(resume_at, epochs))
        assert history.history["loss"] == ref_history.history["loss"][resume_at:]
    else:
        # A batch-level backup restarts its epoch (Keras), from the mid-epoch state, with the
        # generator as it was before that epoch's shuffle.
        last_saved = interrupt["batch"] - (interrupt["batch"] + 1) % save_freq
        assert resumed.restored["epoch"] == interrupt["epoch"]
        assert resumed.restored["batch"] == last_saved
        assert resumed.restored["rng"] == model._rng_resume_state
        if last_saved == interrupt["batch"]:
            np.testing.assert_array_equal(resumed.restored["weights"][0], model.w)
            np.testing.assert_array_equal(resumed.restored["optimizer"]["slots"][0][0],
                                          model.momentum)
            assert resumed.restored["optimizer"]["iterations"] == model.iterations
        assert history.epoch == list(range(interrupt["epoch"], epochs))
        assert isinstance(resumed.restored["optimizer"]["slots"][0], tuple)
    assert not backup.exists()  # deleted once training completed


def test_backup_state_round_trip(tmp_path):
    model = Trainable()
    state = {
        "weights": [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False])],
        "optimizer": {"iterations": 7, "slots": [(np.ones(2), np.zeros(2))], "lr": math.nan},
        "rng": np.random.default_rng(3).bit_generator.state,
        "extra": [None, "text", np.int64(5), np.float32(0.5), (1, [2, {"k": ()}])],
    }
    model._backup_state = lambda: state
    cb = cbm.BackupAndRestore(tmp_path, delete_checkpoint=False)
    cb.set_model(model)
    model._rng = np.random.default_rng(0)
    cb.on_train_begin()
    cb.on_epoch_begin(4)
    cb.on_epoch_end(4)
    cb.on_train_end()
    assert os.listdir(tmp_path) == ["latest.state.zip"]  # kept: delete_checkpoint=False
    fresh = Trainable()
    fresh._rng = np.random.default_rng(0)
    cb2 = cbm.BackupAndRestore(tmp_path)
    cb2.set_model(fresh)
    cb2.on_train_begin()
    got = fresh.restored
    assert got["epoch"] == 5 and got["batch"] == 0 and fresh._initial_epoch == 5
    assert got["weights"][0].dtype == np.float32 and got["weights"][1].dtype == np.bool_
    np.testing.assert_array_equal(got["weights"][0], state["weights"][0])
    assert isinstance(got["optimizer"]["slots"][0], tuple) and math.isnan(got["optimizer"]["lr"])
    assert got["rng"] == state["rng"]
    assert got["extra"] == [None, "text", 5, 0.5, (1, [2, {"k": ()}])]
    # The generator itself was restored.
    expected = np.random.default_rng(3)
    assert fresh._rng.random() == expected.random()


def test_backup_writes_atomically_and_refuses_bad_states(tmp_path, monkeypatch):
    model = Trainable()
    model._rng = np.random.default_rng(0)
    model._rng_resume_state = model._rng.bit_generator.state
    cb = cbm.BackupAndRestore(tmp_path)
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_epoch_end(0)
    path = tmp_path / "latest.state.zip"
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    model.w = model.w + 1
    with pytest.raises(OSError, match="disk gone"):
        cb.on_epoch_end(1)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["latest.state.zip"]
    model._backup_state = lambda: {"weights": [object()], "optimizer": {}, "rng": None}
    with pytest.raises(TypeError, match="object"):
        cb.on_epoch_end(1)
    model._backup_state = lambda: {"weights": [], "optimizer": {}}
    with pytest.raises(ValueError, match="missing: \\['rng'\\]"):
        cb.on_epoch_end(1)
    model._backup_state = lambda: {"weights": [], "optimizer": {}, "rng": None, "epoch": 3}
    with pytest.raises(ValueError, match="reserved: \\['epoch'\\]"):
        cb.on_epoch_end(1)
    assert path.read_bytes() == before


def test_backup_double_checkpoint_falls_back(tmp_path):
    model = Trainable()
    model._rng = np.random.default_rng(0)
    model._rng_resume_state = model._rng.bit_generator.state
    cb = cbm.BackupAndRestore(tmp_path, double_checkpoint=True)
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_epoch_end(0)
    cb.on_epoch_end(1)
    assert sorted(os.listdir(tmp_path)) == ["latest.state.zip", "latest.state.zip.bkp"]
    (tmp_path / "latest.state.zip").write_bytes(b"garbage")
    fresh = Trainable()
    fresh._rng = np.random.default_rng(0)
    cb2 = cbm.BackupAndRestore(tmp_path, double_checkpoint=True)
    cb2.set_model(fresh)
    cb2.on_train_begin()
    assert fresh.restored["epoch"] == 1  # the previous backup
    (tmp_path / "other.txt").write_text("not ours")
    cb2.on_train_end()
    assert os.listdir(tmp_path) == ["other.txt"]  # only the backup files are deleted
    # Without a previous backup, a damaged one is an error.
    (tmp_path / "latest.state.zip").write_bytes(b"garbage")
    cb3 = cbm.BackupAndRestore(tmp_path)
    cb3.set_model(fresh)
    with pytest.raises(Exception, match="zip"):
        cb3.on_train_begin()


def test_backup_and_restore_bad_arguments(tmp_path):
    for module in (cbm, keras.callbacks):
        with pytest.raises(ValueError, match="Empty `backup_dir` argument passed"):
            module.BackupAndRestore("")
        with pytest.raises(ValueError, match="Invalid value for argument `save_freq`. "
                           "Received: save_freq=batch"):
            module.BackupAndRestore(str(tmp_path), save_freq="batch")
    with pytest.raises(TypeError, match="delete_checkpoint"):
        cbm.BackupAndRestore(tmp_path, delete_checkpoint=None)
    cb = cbm.BackupAndRestore(tmp_path)
    cb.set_model(FakeModel())
    with pytest.raises(TypeError, match="_backup_state"):
        cb.on_train_begin()


# -- model.stop_training through the list ---------------------------------------------------------


def test_stop_training_through_a_callback_list():
    m = FakeModel()
    cbs = cbm.CallbackList([cbm.EarlyStopping(monitor="loss", patience=1)], add_history=True,
                           model=m, verbose=0, epochs=10, steps=1)
    cbs.on_train_begin()
    for epoch in range(10):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, {"loss": 1.0})
        if m.stop_training:
            break
    cbs.on_train_end()
    assert m.history.epoch == [0, 1] and m.stop_training
