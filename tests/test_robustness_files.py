"""Untrusted files and configs: crafted ``.npz`` weight archives, atomic saving, and configs
naming foreign modules.

Weight archives are built by hand with ``zipfile`` and ``numpy.lib.format`` so that each one
breaks exactly one rule (a header claiming petabytes, a member that is not NPY data, ...). Every
refusal must be a ``ValueError`` naming the file, the member and what is wrong, read no array
data it has not checked, and leave the model's weights as they were.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile

import numpy as np
import pytest

from numba_gn.layers import Dense, Input, activations, dtype_policy
from numba_gn.models import Sequential
from numba_gn.params import Variable
from numba_gn.training import losses, metrics, optimizers, saving

KERNEL, BIAS = "dense/kernel", "dense/bias"


@pytest.fixture
def model():
    """A built model with two float32 weights: ``dense/kernel`` (3, 2) and ``dense/bias`` (2,)."""
    m = Sequential([Input((3,)), Dense(2)])
    m.set_weights([np.arange(6, dtype=np.float32).reshape(3, 2), np.array([7, 8], np.float32)])
    return m


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=True)
    return buf.getvalue()


def _header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """An NPY 1.0 header alone (magic included): what a crafted member starts with."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": fortran, "shape": shape}
    )
    return buf.getvalue()


def _archive(path, members, compression=zipfile.ZIP_STORED):
    """Write ``members`` (``[(member name, bytes)]``, duplicates allowed) as a zip at ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _good_members(kernel=None, bias=None):
    """A valid archive's members; ``kernel``/``bias`` replace a member's bytes."""
    k = _npy(np.full((3, 2), 0.5, np.float32)) if kernel is None else kernel
    b = _npy(np.full((2,), 0.25, np.float32)) if bias is None else bias
    return [(f"{KERNEL}.npy", k), (f"{BIAS}.npy", b)]


def _weights(m):
    return [w.copy() for w in m.get_weights()]


def _assert_same(m, before):
    for a, b in zip(m.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def _refused(m, path, *needles):
    """Load ``path``; expect a ValueError naming the file and ``needles``, weights unchanged."""
    before = _weights(m)
    with pytest.raises(ValueError) as info:
        m.load_weights(path)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    _assert_same(m, before)
    return message


@pytest.fixture
def no_data_read(monkeypatch):
    """Fail the test if any array data is read: refusals must come from headers and lengths."""

    def forbidden(*args, **kwargs):
        raise AssertionError("array data was read before the member was checked")

    monkeypatch.setattr(np.lib.format, "read_array", forbidden)


# -- crafted members ---------------------------------------------------------------------------

# (id, bytes of the dense/bias member, category word in the message)
CRAFTED = [
    # ~200 bytes claiming 7.11 PiB: refused from the header, nothing allocated
    ("petabytes", _header("<f8", (10**15,)) + b"\0" * 16, "truncated"),
    # ~16 GiB claimed, a few bytes present
    ("16-gib", _header("<f8", (2**31,)) + b"\0" * 64, "truncated"),
    ("hello", b"hello", "not NPY"),
    ("empty", b"", "not NPY"),
    ("magic-only", b"\x93NUMPY", "truncated"),
    ("header-cut", _header("<f4", (2,))[:30], "truncated"),
    ("data-cut", _header("<f4", (2,)) + b"\0" * 4, "truncated"),
    ("bad-header", b"\x93NUMPY\x01\x00\x10\x00" + b"not a dict at all\n"[:16], "not NPY"),
    ("version-9", b"\x93NUMPY\x09\x00" + _header("<f4", (2,))[8:] + b"\0" * 8, "not NPY"),
    ("negative-dim", _header("<f4", (-2,)), "not NPY"),
    ("object", _header("|O", (2,)) + b"\x80\x04N.", "would need pickle"),
    ("wrong-shape", _npy(np.zeros(3, np.float32)), "wrong shape"),
    ("wrong-rank", _npy(np.zeros((1, 2), np.float32)), "wrong shape"),
    ("int", _npy(np.zeros(2, np.int32)), "wrong dtype"),
    ("complex", _npy(np.zeros(2, np.complex64)), "wrong dtype"),
    ("bool", _npy(np.zeros(2, bool)), "wrong dtype"),
    ("string", _npy(np.array(["a", "b"])), "wrong dtype"),
    ("structured", _npy(np.zeros(2, [("a", "<f4")])), "wrong dtype"),
    ("trailing", _npy(np.zeros(2, np.float32)) + b"\0" * 64, "oversized"),
]


@pytest.mark.parametrize(("bias", "word"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_crafted_member_is_refused_before_reading_data(model, tmp_path, no_data_read, bias, word):
    path = _archive(tmp_path / "crafted.npz", _good_members(bias=bias))
    _refused(model, path, f"{BIAS}.npy", word)


def test_real_object_array_is_refused_without_unpickling(model, tmp_path):
    """An object member as np.savez writes it (a pickle inside) never runs."""

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    bias = _npy(np.array([Boom(), None], dtype=object))
    path = _archive(tmp_path / "objects.npz", _good_members(bias=bias))
    _refused(model, path, f"{BIAS}.npy", "would need pickle")
    assert not (tmp_path / "PWNED").exists()


def test_decompression_bomb_is_not_inflated(model, tmp_path, no_data_read):
    """A deflated member far larger than the weight needs is refused from its stated size."""
    bias = _npy(np.zeros(2, np.float32)) + bytes(4 << 20)  # compresses to a few KiB
    path = _archive(tmp_path / "bomb.npz", _good_members(bias=bias), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 64 << 10
    _refused(model, path, f"{BIAS}.npy", "oversized")


def test_bad_crc_is_reported_as_corrupt(model, tmp_path):
    path = _archive(tmp_path / "crc.npz", _good_members())
    raw = bytearray(path.read_bytes())
    marker = np.full((2,), 0.25, np.float32).tobytes()
    at = raw.index(marker)
    raw[at] ^= 0xFF  # the data changes, the stored CRC does not
    path.write_bytes(bytes(raw))
    _refused(model, path, f"{BIAS}.npy", "corrupt")


# -- archive-level problems --------------------------------------------------------------------


def test_missing_member(model, tmp_path):
    path = _archive(tmp_path / "missing.npz", _good_members()[:1])
    _refused(model, path, "missing", BIAS)


def test_extra_member(model, tmp_path):
    members = [*_good_members(), ("dense/extra.npy", _npy(np.zeros(2, np.float32)))]
    path = _archive(tmp_path / "extra.npz", members)
    _refused(model, path, "unexpected", "dense/extra")


def test_duplicate_member(model, tmp_path):
    members = [*_good_members(), (f"{BIAS}.npy", _npy(np.ones(2, np.float32)))]
    path = _archive(tmp_path / "dup.npz", members)
    _refused(model, path, "duplicate", f"{BIAS}.npy")


def test_member_name_with_and_without_npy_suffix_is_a_duplicate(model, tmp_path):
    members = [*_good_members(), (BIAS, _npy(np.ones(2, np.float32)))]
    path = _archive(tmp_path / "dup2.npz", members)
    _refused(model, path, "duplicate")


@pytest.mark.parametrize(
    ("content", "word"),
    [(b"", "not an .npz"), (b"PK\x03\x04 broken", "not an .npz"), (b"gamma = 1\n", "not an .npz"),
     (_npy(np.zeros(2, np.float32)), "single array")],
    ids=["empty", "broken-zip", "text", "npy"],
)
def test_not_an_archive(model, tmp_path, content, word):
    path = tmp_path / "weights.npz"
    path.write_bytes(content)
    _refused(model, path, word)


def test_directory_nonexistent_and_wrong_type_paths(model, tmp_path):
    before = _weights(model)
    with pytest.raises(ValueError, match="directory") as info:
        model.load_weights(tmp_path)
    assert str(tmp_path) in str(info.value)
    # A path that does not exist is the caller's mistake, reported as Python always does.
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "nope.npz")
    with pytest.raises(TypeError, match="`path`"):
        model.load_weights(3)
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ValueError, match="not a regular file"):
        model.load_weights(fifo)
    _assert_same(model, before)


# -- accepted variations -----------------------------------------------------------------------


def test_fortran_order_big_endian_and_other_float_precision_are_read(model, tmp_path):
    kernel = np.asfortranarray(np.arange(6, dtype=">f4").reshape(3, 2) / 4)
    assert kernel.flags.f_contiguous and not kernel.flags.c_contiguous
    bias = np.array([1.5, -2.5], np.float64)
    path = _archive(tmp_path / "variants.npz", _good_members(_npy(kernel), _npy(bias)))
    model.load_weights(path)
    got_kernel, got_bias = model.get_weights()
    np.testing.assert_array_equal(got_kernel, kernel.astype(np.float32))
    np.testing.assert_array_equal(got_bias, bias.astype(np.float32))
    assert got_kernel.dtype == np.float32 and got_kernel.dtype.isnative


def test_compressed_archive_is_read(model, tmp_path):
    path = _archive(tmp_path / "zipped.npz", _good_members(), zipfile.ZIP_DEFLATED)
    model.load_weights(path)
    np.testing.assert_array_equal(model.get_weights()[1], np.full(2, 0.25, np.float32))


# -- all or nothing ----------------------------------------------------------------------------


def test_failure_while_assigning_restores_every_weight(model, tmp_path, monkeypatch):
    path = _archive(tmp_path / "good.npz", _good_members())
    before = _weights(model)
    real_assign = Variable.assign
    calls = []

    def flaky_assign(self, value):
        calls.append(self.name)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real_assign(self, value)

    monkeypatch.setattr(Variable, "assign", flaky_assign)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.load_weights(path)
    monkeypatch.undo()
    assert len(calls) == 2  # the first weight had been assigned, and was put back
    _assert_same(model, before)


# -- atomic saving -----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
def test_failed_save_leaves_old_file_and_no_temporary(model, tmp_path, monkeypatch, error):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"previous contents")
    real_write = np.lib.format.write_array
    written = []

    def failing_write(fp, array, *args, **kwargs):
        if written:  # the first member is written, the second fails part way
            fp.write(b"\x93NUMPY partial")
            raise error
        written.append(array)
        return real_write(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(type(error)):
        model.save_weights(path)
    assert written
    assert path.read_bytes() == b"previous contents"
    assert sorted(os.listdir(tmp_path)) == ["weights.npz"]


def test_weight_that_cannot_become_an_array_creates_no_file(model, tmp_path, monkeypatch):
    class Unconvertible:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array for you")

    class Fake:
        data = Unconvertible()

    paths = model.weight_paths()
    monkeypatch.setattr(model, "weight_paths", lambda: [*paths, ("dense/fake", Fake())])
    path = tmp_path / "weights.npz"
    path.write_bytes(b"previous contents")
    with pytest.raises(RuntimeError, match="no array"):
        model.save_weights(path)
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["weights.npz"]


def test_save_replaces_atomically_and_np_load_reads_it(model, tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"previous contents")
    model.save_weights(path)
    assert os.listdir(tmp_path) == ["weights.npz"]
    with np.load(path, allow_pickle=False) as f:
        assert f.files == [KERNEL, BIAS]
        np.testing.assert_array_equal(f[BIAS], model.get_weights()[1])
    other = Sequential([Input((3,)), Dense(2)])
    other.load_weights(path)
    _assert_same(other, model.get_weights())


def test_save_to_a_directory_or_missing_folder(model, tmp_path):
    with pytest.raises(ValueError, match="directory"):
        model.save_weights(tmp_path)
    with pytest.raises(FileNotFoundError):
        model.save_weights(tmp_path / "no" / "such" / "weights.npz")
    assert os.listdir(tmp_path) == []


def test_save_through_a_symlink_updates_its_target(model, tmp_path):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    model.save_weights(link)
    assert link.is_symlink()
    with np.load(target, allow_pickle=False) as f:
        assert f.files == [KERNEL, BIAS]


def test_every_refusal_category_is_distinct():
    """The words the messages use, as documented in the module docstring."""
    for word in ("truncated", "not NPY", "wrong shape", "would need pickle", "wrong dtype",
                 "oversized", "corrupt", "duplicate", "missing", "unexpected"):
        assert word in saving.__doc__, word


# -- configs naming foreign modules ------------------------------------------------------------

FOREIGN = {"module": "os", "class_name": "Dense", "config": {"units": 2}}


def test_layer_entry_from_a_foreign_module_is_refused():
    config = {"name": "m", "layers": [FOREIGN]}
    with pytest.raises(ValueError) as info:
        Sequential.from_config(config)
    assert "'os'" in str(info.value) and "'Dense'" in str(info.value)


def test_layer_entry_with_an_unknown_key_is_refused():
    entry = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}, "eval": 1}
    with pytest.raises(ValueError, match="eval"):
        Sequential.from_config({"layers": [entry]})


def test_keras_layer_entries_are_still_read():
    inner = {
        "name": "inner",
        "layers": [{"module": "keras.layers", "class_name": "Dense", "config": {"units": 2},
                    "registered_name": None, "build_config": {"input_shape": [None, 3]}}],
    }
    config = {
        "name": "outer",
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                  "registered_name": None},
        "layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, 3], "name": "in"}, "registered_name": None},
            {"module": "keras", "class_name": "Sequential", "config": inner,
             "registered_name": None, "build_config": {"input_shape": [None, 3]},
             "compile_config": {}},
        ],
    }
    model = Sequential.from_config(config)
    assert model.built and model.layers[0].layers[0].units == 2


FOREIGN_READERS = [
    ("sequential-dtype", lambda c: Sequential.from_config({"dtype": c, "layers": []}),
     {"module": "os", "class_name": "DTypePolicy", "config": {"name": "float32"}}),
    ("dtype-policy", dtype_policy.get,
     {"module": "os", "class_name": "DTypePolicy", "config": {"name": "float32"}}),
    ("optimizer", optimizers.deserialize, {"module": "os", "class_name": "Adam", "config": {}}),
    ("optimizer-get", optimizers.get, {"module": "os", "class_name": "Adam", "config": {}}),
    ("lr-schedule", optimizers.deserialize,
     {"class_name": "Adam", "config": {"learning_rate": {
         "module": "os", "class_name": "CosineDecay",
         "config": {"initial_learning_rate": 0.1, "decay_steps": 10}}}}),
    ("loss", losses.deserialize,
     {"module": "os", "class_name": "MeanSquaredError", "config": {}}),
    ("loss-get", losses.get, {"module": "os", "class_name": "MeanSquaredError", "config": {}}),
    ("activation", activations.deserialize,
     {"module": "os", "class_name": "function", "config": "relu"}),
]


@pytest.mark.parametrize(("read", "config"), [r[1:] for r in FOREIGN_READERS],
                         ids=[r[0] for r in FOREIGN_READERS])
def test_every_config_reader_refuses_foreign_modules_and_unknown_keys(read, config):
    with pytest.raises(ValueError, match="'os'"):
        read(config)
    # the same config from Keras's own module, with one key too many
    with pytest.raises(ValueError, match="bogus"):
        read(_trusted_with_extra_key(config))


def _trusted_with_extra_key(config):
    """``config`` with the foreign dict's module set to Keras and a ``"bogus"`` key added."""
    out = {k: (_trusted_with_extra_key(v) if isinstance(v, dict) else v)
           for k, v in config.items()}
    if out.get("module") == "os":
        out.update(module="keras", bogus=1)
    return out


def test_trusted_modules_are_read_by_every_reader():
    adam = optimizers.deserialize(
        {"module": "keras.optimizers", "class_name": "Adam", "registered_name": None,
         "config": {"learning_rate": {"module": "keras.optimizers.schedules",
                                      "class_name": "CosineDecay", "registered_name": None,
                                      "config": {"initial_learning_rate": 0.1,
                                                 "decay_steps": 10}}}})
    assert isinstance(adam, optimizers.Adam)
    loss = losses.deserialize({"module": "keras.losses", "class_name": "MeanSquaredError",
                               "config": {}, "registered_name": None})
    assert isinstance(loss, losses.MeanSquaredError)
    relu = activations.deserialize({"module": "keras.activations", "class_name": "function",
                                    "config": "relu", "registered_name": "relu"})
    assert relu is activations.get("relu")


def test_metric_config_dicts_are_refused_by_name():
    with pytest.raises(ValueError, match="metric identifier"):
        metrics.get({"module": "os", "class_name": "Accuracy", "config": {}})
