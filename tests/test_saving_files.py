"""Model and weight files on disk: damaged and tampered files, atomic writes, and kills.

Every damaged ``.keras`` file (truncated, not a zip, wrong or missing weights, a config naming
an unknown class or a Python path, bad JSON, a bad optimizer or RNG state) must be refused
with a ``ValueError`` naming the file and what is wrong, without unpickling or importing
anything. Every file the library writes goes through one atomic writer: a failed save leaves
the old file and no temporary behind, and a writer killed with SIGKILL, many times, in the
middle of writing multi-megabyte checkpoints, always leaves a complete checkpoint behind.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

from numba_gn import _atomic
from numba_gn import layers as nl
from numba_gn.models import Sequential, load_model
from numba_gn.training import callbacks, optimizers
from numba_gn.training import saving as weights_io
from tests._subprocess import check_python, last_json_line


@pytest.fixture
def saved(tmp_path, rng):
    """A trained, saved model (Adam, Dropout): ``(model, path)``."""
    model = Sequential([nl.Input((4,)), nl.Dense(3), nl.Dropout(0.5, seed=2), nl.Dense(2)])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    model.fit(rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32"),
              batch_size=4, epochs=1, seed=0, verbose=0)
    path = tmp_path / "net.keras"
    model.save(path)
    return model, path


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=True)
            zf.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


def _weights_of(members) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(members["model.weights.npz"]), allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def _refused(path, *needles, **kwargs):
    with pytest.raises(ValueError) as info:
        load_model(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(autouse=True)
def nothing_unpickled_or_run(monkeypatch):
    """Loading never unpickles and never runs a shell."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a loader unpickled or ran something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(os, "system", forbidden)


# -- damaged files --------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_keras_file(saved, fraction):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    _refused(path, "zip")


@pytest.mark.parametrize(
    ("content", "word"),
    [(b"", "not a .keras file"), (b"just some text", "not a .keras file"),
     (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "HDF5"), (b"\x93NUMPY\x01\x00", "not a .keras file")],
    ids=["empty", "text", "hdf5", "npy"],
)
def test_not_a_zip(tmp_path, content, word):
    path = tmp_path / "x.keras"
    path.write_bytes(content)
    _refused(path, word)


def test_missing_paths_and_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.keras")
    with pytest.raises(ValueError, match="directory"):
        load_model(tmp_path)
    with pytest.raises(TypeError, match="filepath"):
        load_model(3)


def test_corrupted_member_data(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    # Flip bytes inside the weights member (found by its local header): the CRC check fails.
    start = data.index(b"model.weights.npz") + 200
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    _refused(path, "model.weights.npz")


def test_wrong_weight_shape(saved, tmp_path):
    _, path = saved
    members = _members(path)
    weights = _weights_of(members)
    weights["layers/dense/vars/0"] = np.zeros((4, 5), np.float32)
    members["model.weights.npz"] = _npz(weights)
    _refused(_write(path, members), "wrong shape (4, 5)", "layers/dense/vars/0")


def test_missing_and_unexpected_weights(saved):
    _, path = saved
    members = _members(path)
    weights = _weights_of(members)
    del weights["layers/dense_1/vars/1"]
    members["model.weights.npz"] = _npz(weights)
    _refused(_write(path, members), "missing ['layers/dense_1/vars/1']")
    weights["layers/dense_1/vars/1"] = np.zeros(2, np.float32)
    weights["layers/dense_2/vars/0"] = np.zeros(2, np.float32)
    members["model.weights.npz"] = _npz(weights)
    _refused(_write(path, members), "unexpected ['layers/dense_2/vars/0']")
    del members["model.weights.npz"]
    _refused(_write(path, members), "missing member 'model.weights.npz'")


def test_pickled_weights_are_refused_unread(saved):
    _, path = saved
    members = _members(path)
    weights: dict[str, np.ndarray] = _weights_of(members)
    weights["layers/dense/vars/1"] = np.array([object()] * 3, dtype=object)
    members["model.weights.npz"] = _npz(weights)
    _refused(_write(path, members), "would need pickle")


def _config_of(members) -> dict:
    return json.loads(members["config.json"])


def test_config_naming_an_unknown_class(saved):
    _, path = saved
    members = _members(path)
    good = members["config.json"]
    config = json.loads(good)
    config["config"]["layers"][1]["class_name"] = "NoSuchLayer"
    members["config.json"] = json.dumps(config).encode()
    _refused(_write(path, members), "NoSuchLayer")
    config = json.loads(good)
    config["class_name"] = "NoSuchModel"
    members["config.json"] = json.dumps(config).encode()
    _refused(_write(path, members), "unknown model class 'NoSuchModel'")


@pytest.mark.parametrize("where", ["model", "layer", "registered", "loss", "optimizer"])
def test_config_naming_a_python_path_is_refused(saved, where):
    _, path = saved
    members = _members(path)
    config = _config_of(members)
    evil = {"module": "os", "class_name": "system", "config": {"command": "touch pwned"},
            "registered_name": None}
    if where == "model":
        config.update(evil)
    elif where == "layer":
        config["config"]["layers"][1] = evil
    elif where == "registered":
        config["config"]["layers"][1] = {**evil, "registered_name": "os>system"}
    elif where == "loss":
        config["compile_config"]["loss"] = evil
    else:
        config["compile_config"]["optimizer"] = evil
    members["config.json"] = json.dumps(config).encode()
    message = _refused(_write(path, members), "system")
    assert "'os'" in message
    assert not os.path.exists("touch pwned") and not os.path.exists("pwned")


def test_bad_json(saved):
    _, path = saved
    members = _members(path)
    good = members["config.json"]
    members["config.json"] = good[:-10]
    _refused(_write(path, members), "'config.json' is not valid JSON")
    members["config.json"] = b"[1, 2]"
    _refused(_write(path, members), "serialized model")
    members["config.json"] = good
    members["metadata.json"] = b"{not json"
    _refused(_write(path, members), "'metadata.json' is not valid JSON")
    members["metadata.json"] = b'{"numba_gn_version": "0.1.0"}'
    members["rng_states.json"] = b'{"layers/dropout": {"_rng": {"bit_generator": "MT19937"}}}'
    _refused(_write(path, members), "rng_states.json", "layers/dropout")
    members["rng_states.json"] = b'{"layers/nothing": {}}'
    _refused(_write(path, members), "'layers/nothing'")


def test_bad_optimizer_state(saved):
    _, path = saved
    members = _members(path)
    with np.load(io.BytesIO(members["optimizer.npz"]), allow_pickle=False) as f:
        state = {name: f[name] for name in f.files}
    assert int(state["iterations"]) == 2
    broken = dict(state)
    broken["slots/layers/dense/vars/0/0"] = np.zeros((4, 4), np.float32)
    members["optimizer.npz"] = _npz(broken)
    _refused(_write(path, members), "optimizer.npz", "wrong shape")
    broken = dict(state)
    del broken["slots/layers/dense/vars/0/1"]
    members["optimizer.npz"] = _npz(broken)
    _refused(_write(path, members), "only some of the 2 slot arrays")
    members["optimizer.npz"] = _npz({**state, "iterations": np.array(-3)})
    _refused(_write(path, members), "negative step count")
    # compile=False reads no optimizer state at all.
    assert load_model(path, compile=False).optimizer is None


def test_duplicate_members(saved):
    _, path = saved
    members = list(_members(path).items())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr(*members[1])
    _refused(path, "duplicate members ['config.json']")


def test_refused_file_changes_nothing_in_an_existing_model(saved, tmp_path):
    model, path = saved
    before = model.get_weights()
    members = _members(path)
    weights = _weights_of(members)
    weights["layers/dense_1/vars/0"] = np.zeros((3, 7), np.float32)
    members["model.weights.npz"] = _npz(weights)
    _write(path, members)
    with pytest.raises(ValueError, match="wrong shape"):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


# -- atomic writes --------------------------------------------------------------------------------


def test_atomic_write_replaces_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    _atomic.atomic_write(path, lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"new"
    assert len(synced) == 2  # the file, then its folder
    assert os.listdir(tmp_path) == ["f.bin"]
    # The usual permissions (umask), not the owner-only ones of a mkstemp file.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask

    def failing(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic.atomic_write(path, failing)
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(FileNotFoundError):
        _atomic.atomic_write(tmp_path / "no" / "f.bin", lambda fh: None)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
def test_failed_model_save_leaves_the_old_file(saved, monkeypatch, error):
    model, path = saved
    before = path.read_bytes()
    real = weights_io.write_npz

    def failing(fh, arrays):
        real(fh, arrays[:1])
        raise error

    monkeypatch.setattr(weights_io, "write_npz", failing)
    with pytest.raises(type(error)):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["net.keras"]


def test_every_writer_uses_the_shared_helper(tmp_path, monkeypatch):
    calls = []
    real = _atomic.atomic_write

    def spy(path, write):
        calls.append(os.path.basename(os.fspath(path)))
        return real(path, write)

    import numba_gn.models.saving as model_saving

    monkeypatch.setattr(_atomic, "atomic_write", spy)
    monkeypatch.setattr(weights_io, "atomic_write", spy)
    monkeypatch.setattr(model_saving, "atomic_write", spy)
    monkeypatch.setattr(callbacks, "atomic_write", spy)
    model = Sequential([nl.Input((2,)), nl.Dense(1)])
    model.save_weights(tmp_path / "w.npz")
    model.save(tmp_path / "m.keras")
    callbacks._atomic_write(str(tmp_path / "log.csv"), lambda fh: fh.write(b"x"))
    assert calls == ["w.npz", "m.keras", "log.csv"]


# -- SIGKILL while writing ------------------------------------------------------------------------

KILL_LOOP = r"""
import json, os, random, signal, sys, time
import numpy as np
import numba_gn
from numba_gn import layers as nl

folder, kills = sys.argv[1], int(sys.argv[2])
model = numba_gn.Sequential([nl.Input((1000,)), nl.Dense(1000)])  # 4 MB of weights
model.compile(optimizer="sgd", loss="mse")
probe = numba_gn.Sequential([nl.Input((1000,)), nl.Dense(1000)])
kinds = ["npz", "keras"]
try:
    import h5py  # noqa: F401
    kinds.append("weights.h5")
except ImportError:
    pass


def writer(path, kind, fd):
    # Saves checkpoint k = 1, 2, ... (every weight equal to k) and reports each one done.
    k = 0
    while True:
        k += 1
        for w in model.weights:
            w.data[...] = k
        if kind == "keras":
            model.save(path)
        else:
            model.save_weights(path)
        os.write(fd, f"{k}\n".encode())


rng = random.Random(1234)
report = {"kills": 0, "mid_write": 0, "bad": [], "values": []}
for i in range(kills):
    kind = kinds[i % len(kinds)]
    path = os.path.join(folder, f"ckpt.{kind}")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: numpy and file writes only, no Numba kernel runs here
        os.close(r)
        try:
            writer(path, kind, w)
        finally:
            os._exit(1)
    os.close(w)
    reader = os.fdopen(r)
    done = int(reader.readline())          # a first complete checkpoint exists
    time.sleep(rng.uniform(0.0, 0.08))      # then kill it somewhere in the middle
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    rest = reader.read().split()
    reader.close()
    last = int(rest[-1]) if rest else done
    report["kills"] += 1
    leftovers = [n for n in os.listdir(folder) if n.endswith(".tmp")]
    report["mid_write"] += bool(leftovers)
    for n in leftovers:
        os.unlink(os.path.join(folder, n))
    try:
        if kind == "keras":
            loaded = numba_gn.models.load_model(path)
            values = [w.numpy() for w in loaded.weights]
        else:
            probe.load_weights(path)
            values = [w.numpy() for w in probe.weights]
        value = float(values[0].flat[0])
        complete = all(np.all(v == value) for v in values)
        if not complete or value not in (last, last + 1):
            report["bad"].append([kind, last, value, complete])
        report["values"].append([kind, last, value])
    except Exception as exc:
        report["bad"].append([kind, last, repr(exc)])
    os.unlink(path)
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers are forked")
def test_sigkill_while_writing_leaves_a_complete_checkpoint(tmp_path):
    kills = 24
    res = check_python(KILL_LOOP, args=(str(tmp_path), str(kills)), timeout=300)
    report = last_json_line(res.stdout)
    assert report["kills"] == kills
    assert report["bad"] == [], report["bad"]
    # Kills did land in the middle of writes (a killed writer leaves its temporary file):
    # the file on disk was then still the previous checkpoint.
    assert report["mid_write"] >= 1, report
    assert any(value == last for _, last, value in report["values"])
