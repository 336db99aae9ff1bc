"""Import the model-building half of numba_gn when it is first used, not with the package.

`import numba_gn` followed by one `group_norm` call is what a pipeline, a Dask worker or a
script that only normalises pays at start-up. The layers, models, training loop and autograd
modules are not needed for that call, and importing them took about as long as importing Numba
itself. `numba_gn/__init__.py` therefore names them in a table; `lazy_attribute` imports one on
first access, and `AliasFinder` makes Keras's module names (`numba_gn.optimizers`, ...)
importable without importing them in advance.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any


def lazy_attribute(package: str, table: dict[str, tuple[str, str | None]], name: str) -> Any:
    """The attribute `name` of `package`, imported from where `table` says it lives.

    `table[name]` is `(module, attribute)`, or `(module, None)` for the module itself. The
    result is stored on the package, so later accesses are ordinary attribute lookups.
    """
    try:
        module_name, attribute = table[name]
    except KeyError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    value: Any = importlib.import_module(module_name)
    if attribute is not None:
        value = getattr(value, attribute)
    setattr(sys.modules[package], name, value)
    return value


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of `alias` names give the module they stand for: the same object, not a copy.

    `import numba_gn.optimizers` imports `numba_gn.training.optimizers` and registers it under
    both names, as Keras code expects (`from keras.optimizers import Adam`).
    """

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.aliases:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.aliases[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just given the module the alias's `__spec__`; it keeps its own
        # (it is the real module, registered under its own name as well).
        module.__spec__ = self._own_specs[module.__name__]
