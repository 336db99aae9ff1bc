"""The package's names: Keras-shaped, light to import, layered, and documented once each.

* Keras code runs with ``keras`` replaced by ``numba_gn`` (the quick-start model, verbatim);
* the names shared with Keras are the same kind of object, and importable as Keras imports them
  (``from numba_gn.optimizers import Adam``);
* ``import numba_gn`` pulls in no optional package, and each level of the package imports only
  the levels below it (kernels, functional, autograd, params, layers, training, models);
* every ``:::`` entry of ``docs/api.md`` names an existing object, and no object twice.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
from _subprocess import check_python, last_json_line

import numba_gn

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "numba_gn"

KERAS_QUICKSTART = """
import keras
from keras import layers

model = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)])
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs=2, batch_size=8, verbose=0)
pred = model.predict(x)
"""


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def test_keras_quickstart_runs_with_keras_replaced_by_numba_gn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.standard_normal((32, 2)).astype(np.float32)
    namespace = {"x": x, "y": y}
    exec(KERAS_QUICKSTART.replace("keras", "numba_gn"), namespace)  # noqa: S102
    model, pred = namespace["model"], namespace["pred"]
    assert isinstance(model, numba_gn.Sequential)
    assert pred.shape == (32, 2) and np.isfinite(pred).all()
    assert model.optimizer.iterations == 2 * 4  # 2 epochs of 32 / 8 steps
    assert isinstance(model.optimizer, numba_gn.optimizers.Adam)
    assert isinstance(model.loss, numba_gn.losses.MeanSquaredError)


def test_keras_names_are_reachable_as_attributes_and_as_modules():
    assert numba_gn.Sequential is numba_gn.models.Sequential
    assert numba_gn.Model is numba_gn.models.Model
    assert not hasattr(numba_gn.layers, "Sequential")  # one name per thing, as in Keras
    assert numba_gn.Input is numba_gn.layers.Input
    assert numba_gn.Layer is numba_gn.layers.Layer
    assert numba_gn.optimizers is numba_gn.training.optimizers
    assert numba_gn.losses is numba_gn.training.losses
    assert numba_gn.metrics is numba_gn.training.metrics
    assert numba_gn.activations is numba_gn.layers.activations
    assert numba_gn.initializers is numba_gn.params.initializers
    # Imported as modules, the way Keras code imports them: the same module objects.
    for name in ("activations", "constraints", "initializers", "losses", "metrics",
                 "models", "optimizers", "regularizers"):
        assert importlib.import_module(f"numba_gn.{name}") is getattr(numba_gn, name)
    from numba_gn.models import Model, Sequential, model_from_json

    assert (Model, Sequential) == (numba_gn.Model, numba_gn.Sequential)
    assert callable(model_from_json)
    from numba_gn.initializers import GlorotUniform
    from numba_gn.losses import MeanSquaredError
    from numba_gn.metrics import Accuracy
    from numba_gn.optimizers import Adam

    assert Adam is numba_gn.training.optimizers.Adam
    assert MeanSquaredError is numba_gn.training.losses.MeanSquaredError
    assert Accuracy is numba_gn.training.metrics.Accuracy
    assert GlorotUniform is numba_gn.params.initializers.GlorotUniform


def _kind(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "class"
    return "callable" if callable(obj) else type(obj).__name__


def test_names_shared_with_keras_are_the_same_kind(keras):
    shared = [n for n in numba_gn.__all__ if hasattr(keras, n) and not n.startswith("_")]
    assert {"Model", "Sequential", "Input", "KerasTensor", "Layer", "Variable", "layers",
            "models", "optimizers", "losses", "metrics", "activations", "initializers",
            "regularizers", "constraints"} <= set(shared)
    kinds = {n: (_kind(getattr(numba_gn, n)), _kind(getattr(keras, n))) for n in shared}
    assert {n: k for n, k in kinds.items() if k[0] != k[1]} == {}
    # Input returns a symbolic tensor in both.
    assert isinstance(numba_gn.Input((3,)), numba_gn.KerasTensor)
    assert isinstance(keras.Input((3,)), keras.KerasTensor)


# The names Keras code most often reaches for, in each Keras-named module.
COMMON = {
    "layers": ["Layer", "Dense", "Conv1D", "Conv2D", "Dropout", "Flatten", "Activation",
               "GroupNormalization", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
               "Input", "InputLayer", "InputSpec"],
    "optimizers": ["Optimizer", "SGD", "Adam", "AdamW", "get", "serialize", "deserialize"],
    "losses": ["Loss", "MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy",
               "SparseCategoricalCrossentropy", "get"],
    "metrics": ["Metric", "Mean", "Accuracy", "get"],
    "activations": ["relu", "silu", "gelu", "tanh", "sigmoid", "softmax", "linear", "get"],
    "initializers": ["GlorotUniform", "HeNormal", "Zeros", "Ones", "get"],
    "regularizers": ["L1", "L2", "L1L2", "get"],
    "constraints": ["NonNeg", "MaxNorm", "get"],
    "models": ["Model", "Sequential", "model_from_json"],
}


@pytest.mark.parametrize("module", sorted(COMMON))
def test_common_keras_names_exist_under_the_keras_module_names(keras, module):
    ours, theirs = getattr(numba_gn, module), getattr(keras, module)
    missing = [n for n in COMMON[module] if not hasattr(ours, n)]
    assert missing == []
    assert [n for n in COMMON[module] if not hasattr(theirs, n)] == []  # spelled as Keras does


def test_every_public_name_exists():
    for name in numba_gn.__all__:
        assert hasattr(numba_gn, name), name


# -- importing -------------------------------------------------------------------------------------

OPTIONAL = ("keras", "tensorflow", "torch", "jax", "matplotlib", "sklearn", "pandas", "h5py",
            "xarray", "dask", "distributed", "zarr", "ml_dtypes")


def test_import_is_light_and_each_entry_point_imports_alone():
    # Fresh interpreters: the package must not pull in any optional package, and importing a
    # deep module first (as a test or a user may) must not run into an import cycle.
    res = check_python(
        f"""
        import json, sys
        import numba_gn
        loaded = sorted(m for m in {OPTIONAL!r} if m in sys.modules)
        print(json.dumps({{"optional": loaded}}))
        """
    )
    assert last_json_line(res.stdout) == {"optional": []}
    for module in ("numba_gn.models.sequential", "numba_gn.models.functional",
                   "numba_gn.models", "numba_gn.layers.input_layer", "numba_gn.training.model",
                   "numba_gn.layers.base", "numba_gn.params.variable"):
        res = check_python(f"import {module}, json; print(json.dumps({{'ok': True}}))")
        assert json.loads(res.stdout.strip().splitlines()[-1]) == {"ok": True}, module


def test_import_leaves_the_model_half_for_first_use():
    # `import numba_gn` + `group_norm` is a pipeline's start-up: layers, models, training and
    # autograd are imported when first touched, through an attribute or a Keras module name,
    # and the module then keeps its own spec.
    res = check_python(
        """
        import importlib, json, sys
        import numpy as np
        import numba_gn
        numba_gn.group_norm(np.ones((2, 4, 8), np.float32), 2)
        heavy = ("numba_gn.layers", "numba_gn.models", "numba_gn.training", "numba_gn.autograd")
        before = sorted(m for m in heavy if m in sys.modules)
        from numba_gn.optimizers import Adam
        import numba_gn.losses as losses
        import numba_gn.training.optimizers as real
        out = {
            "before": before,
            "same": [Adam is real.Adam, losses is numba_gn.losses,
                     losses is sys.modules["numba_gn.training.losses"]],
            "spec": [real.__spec__.name, losses.__spec__.name],
            "dir": all(n in dir(numba_gn) for n in numba_gn.__all__),
            "Sequential": numba_gn.Sequential.__module__,
        }
        print(json.dumps(out))
        """
    )
    assert last_json_line(res.stdout) == {
        "before": [],
        "same": [True, True, True],
        "spec": ["numba_gn.training.optimizers", "numba_gn.training.losses"],
        "dir": True,
        "Sequential": "numba_gn.models.sequential",
    }
    with pytest.raises(AttributeError, match="no attribute 'Dense'"):
        numba_gn.Dense  # noqa: B018 (not a top-level name in Keras either)


# The levels, lowest first: a module may import its own level and those below, never above.
# Models sit on top: they are layers with the training loop mixed in, so they import both;
# layers import neither models nor training, and training imports no model.
LEVELS = ["kernels", "functional", "autograd", "params", "layers", "training", "models"]
# Upward imports accepted as exceptions, as (file, level) pairs: none.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _level(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "numba_gn" or len(parts) < 2:
        return None
    name = parts[1]
    if name in ("functional", "functional_masked", "numpy_reference", "_engine"):
        name = "functional"
    return LEVELS.index(name) if name in LEVELS else None


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported by the module's own statements (not in functions, not type-only)."""
    tree = ast.parse(path.read_text("utf-8"))
    out: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append(node.module)
                out.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return out


def test_each_level_imports_only_the_levels_below_it():
    violations = []
    for level, name in enumerate(LEVELS):
        for path in sorted((PACKAGE / name).glob("*.py")) if (PACKAGE / name).is_dir() else []:
            rel = path.relative_to(PACKAGE).as_posix()
            for module in _module_level_imports(path):
                target = _level(module)
                if target is not None and target > level and (rel, LEVELS[target]) not in \
                        ALLOWED_UPWARD:
                    violations.append(f"{rel} imports {module}")
    assert violations == []


def test_the_levels_checked_include_models_above_layers_and_training():
    # The check above only means something if the packages are where the levels say.
    order = {name: i for i, name in enumerate(LEVELS)}
    assert order["layers"] < order["training"] < order["models"]
    assert (PACKAGE / "models").is_dir()
    imported = {m for p in (PACKAGE / "models").glob("*.py") for m in _module_level_imports(p)}
    assert {"numba_gn.training.model", "numba_gn.layers.base"} <= imported
    for path in (PACKAGE / "layers").glob("*.py"):
        assert not [m for m in _module_level_imports(path)
                    if m.startswith(("numba_gn.models", "numba_gn.training"))], path


# -- the API page ----------------------------------------------------------------------------------


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _api_entries() -> list[tuple[str, list[str]]]:
    """``(target, members)`` for every ``:::`` entry of docs/api.md."""
    lines = (ROOT / "docs" / "api.md").read_text("utf-8").splitlines()
    entries = []
    for i, line in enumerate(lines):
        m = re.match(r"^::: (\S+)\s*$", line)
        if not m:
            continue
        members: list[str] = []
        j = i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            inline = re.match(r"\s+members:\s*\[(.*)\]", lines[j])
            if inline:
                members += [s.strip() for s in inline.group(1).split(",") if s.strip()]
            item = re.match(r"\s+- (\w+)\s*$", lines[j])
            if item:
                members.append(item.group(1))
            if not lines[j].strip() and j + 1 < len(lines) and not lines[j + 1].startswith(" "):
                break
            j += 1
        entries.append((m.group(1), members))
    return entries


def test_every_api_page_entry_exists_and_documents_one_thing_once():
    entries = _api_entries()
    assert len(entries) > 30
    seen: dict[int, str] = {}
    for target, members in entries:
        obj = _resolve(target)
        for member in members:
            assert hasattr(obj, member), f"{target}.{member}"
        assert id(obj) not in seen, f"{target} documents the same object as {seen[id(obj)]}"
        seen[id(obj)] = target
    # The Keras-shaped names are documented under those names.
    documented = {t for t, _ in entries}
    assert {"numba_gn.Model", "numba_gn.Sequential", "numba_gn.Input", "numba_gn.Layer",
            "numba_gn.models.model_from_json", "numba_gn.optimizers",
            "numba_gn.losses", "numba_gn.metrics", "numba_gn.activations"} <= documented
