"""One `get`/`serialize`/`deserialize` implementation shared by all parameter families.

Initializers, regularizers and constraints each build a `Registry` from a fixed tuple of
their own classes. Names are resolved only through that table (or through `custom_objects`
given by the caller): nothing taken from a config is ever imported or evaluated, and the
`"module"` key of a Keras config is checked, never imported.

`check_config_envelope` applies the same checks (outer keys, trusted module) for every
other config reader: layer entries, dtype policies, optimizers, losses, activations.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Keys Keras 3 writes at the top level of a serialized object.
_OUTER_KEYS = frozenset({"module", "class_name", "config", "registered_name"})
# Modules whose built-in classes we stand in for; anything else must come via custom_objects.
_TRUSTED_MODULE_ROOTS = ("keras", "numba_gn")


def to_snake_case(name: str) -> str:
    """Convert a CamelCase class name to the snake_case alias Keras registers.

    `"GlorotUniform"` becomes `"glorot_uniform"`, `"L1L2"` becomes `"l1l2"`.
    """
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _init_keywords(cls: type) -> frozenset[str] | None:
    """Keyword names `cls(...)` accepts, or `None` when it takes `**kwargs`."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return None
    names = set()
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return frozenset(names)


def build_from_config(cls: type, config: Mapping[str, Any]) -> Any:
    """Instantiate `cls(**config)` after checking every key is a constructor argument.

    Raises
    ------
    TypeError
        If `config` is not a mapping with string keys, or names a key `cls` does not accept.
    """
    if not isinstance(config, Mapping):
        raise TypeError(
            f"The config of {cls.__name__} must be a dict, got {type(config).__name__}: {config!r}"
        )
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise TypeError(f"Config keys of {cls.__name__} must be strings, got {bad!r}")
    accepted = _init_keywords(cls)
    if accepted is not None:
        unknown = sorted(k for k in config if k not in accepted)
        if unknown:
            raise TypeError(
                f"Unknown config key(s) {unknown} for {cls.__name__}; "
                f"accepted keys are {sorted(accepted)}"
            )
    return cls(**config)


def _is_trusted_module(module: object) -> bool:
    """Whether a config's `"module"` names Keras or numba_gn (or is absent)."""
    if module is None:
        return True
    if not isinstance(module, str):
        return False
    return any(module == root or module.startswith(root + ".") for root in _TRUSTED_MODULE_ROOTS)


def check_config_keys(
    config: Mapping[Any, Any], what: str, extra_keys: Iterable[str] = ()
) -> None:
    """Refuse a Keras `{"module", "class_name", "config", ...}` dict with an unknown key.

    Parameters
    ----------
    config
        The outer dict of a serialized object.
    what
        What it describes, for messages (`"layer"`, `"optimizer"`).
    extra_keys
        Keys accepted besides `module`, `class_name`, `config` and `registered_name`
        (a layer entry of a Sequential config also carries `build_config`).

    Raises
    ------
    ValueError
        Naming the unknown keys and the class.
    """
    accepted = _OUTER_KEYS.union(extra_keys)
    unknown = sorted(str(k) for k in config if k not in accepted)
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in the {what} config of {config.get('class_name')!r}; "
            f"expected some of {sorted(accepted)}."
        )


def check_config_module(config: Mapping[Any, Any], what: str, hint: str = "") -> None:
    """Refuse a Keras config dict whose `"module"` is neither Keras nor numba_gn.

    Only the built-in classes of those two packages are ever looked up, by name; a config
    naming any other module describes something this package cannot rebuild without importing
    it, which it never does.

    Raises
    ------
    ValueError
        Naming the module and the class.
    """
    module = config.get("module")
    if not _is_trusted_module(module):
        raise ValueError(
            f"Refusing to deserialize the {what} {config.get('class_name')!r} from module "
            f"{module!r}: only Keras's and numba_gn's own {what} classes are known (nothing named "
            f"in a config is ever imported).{hint}"
        )


def check_config_envelope(
    config: Mapping[Any, Any], what: str, extra_keys: Iterable[str] = ()
) -> None:
    """Refuse unknown outer keys, then an untrusted module.

    For readers that take no `custom_objects`, where a foreign module can never be honoured.
    """
    check_config_keys(config, what, extra_keys)
    check_config_module(config, what)


def split_config(config: object, what: str, article: str = "A") -> tuple[Any, dict[str, Any]]:
    """`(class_name, inner config)` of a `{"class_name", "config"}` dict, checked.

    The envelope must be a dict with `class_name`, no unknown keys and a trusted module
    (`check_config_envelope`); the inner config must be a dict (None means empty). The
    caller looks the class name up in its own table.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"{article} {what} config must be a dict with 'class_name', got {config!r}."
        )
    check_config_envelope(config, what)
    name = config["class_name"]
    inner = config.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, dict):
        raise TypeError(f"The config of {what} {name!r} must be a dict, got {inner!r}.")
    return name, dict(inner)


class Registry:
    """Name table and (de)serialization for one family of parameter objects.

    Parameters
    ----------
    family
        Singular family name used in messages and in the Keras module name
        (`"initializer"` gives `"keras.initializers"`).
    base
        The family's base class; instances of it are passed through by `get`.
    classes
        The built-in classes. Each is registered under its class name and its snake_case name.
    aliases
        Extra names (Keras's historical aliases such as `"zero"` or `"uniform"`).
    from_array
        Optional hook turning an `numpy.ndarray` identifier into an object (initializers only).
    """

    def __init__(
        self,
        family: str,
        base: type,
        classes: Iterable[type],
        aliases: Mapping[str, type] | None = None,
        from_array: Callable[[Any], Any] | None = None,
    ) -> None:
        self.family = family
        self.base = base
        self.keras_module = f"keras.{family}s"
        self._from_array = from_array
        self._classes = tuple(classes)
        table: dict[str, type] = {}
        for cls in self._classes:
            table[cls.__name__] = cls
            table[to_snake_case(cls.__name__)] = cls
        table.update(aliases or {})
        self._table = table

    @property
    def names(self) -> tuple[str, ...]:
        """Every accepted string name, sorted."""
        return tuple(sorted(self._table))

    def lookup(self, name: str) -> type:
        """Return the built-in class registered under `name`.

        Raises
        ------
        ValueError
            If `name` is not a registered name; the message lists the valid names.
        """
        cls = self._table.get(name)
        if cls is None:
            raise ValueError(
                f"Unknown {self.family} {name!r}. Valid names are: {', '.join(self.names)}. "
                "Pass custom_objects={name: cls} to use your own class."
            )
        return cls

    # -- serialize -------------------------------------------------------------------------
    def serialize(self, obj: Any) -> dict[str, Any] | None:
        """Return a Keras-3-style config dict for `obj` (`None` gives `None`).

        Built-in objects are written exactly as Keras writes its own (`module` set to the Keras
        module), so `keras.<family>s.deserialize` reads them. Other objects with
        `get_config` and named functions are written the way Keras writes custom objects; they
        can be read back with `custom_objects`.
        """
        if obj is None:
            return None
        cls = type(obj)
        if self._table.get(cls.__name__) is cls:
            return {
                "module": self.keras_module,
                "class_name": cls.__name__,
                "config": obj.get_config(),
                "registered_name": None,
            }
        if not isinstance(obj, type) and callable(getattr(obj, "get_config", None)):
            return {
                "module": cls.__module__,
                "class_name": cls.__name__,
                "config": obj.get_config(),
                "registered_name": cls.__name__,
            }
        if inspect.isfunction(obj) or inspect.isbuiltin(obj):
            if obj.__name__ == "<lambda>":
                raise TypeError(
                    f"Cannot serialize a lambda {self.family}; use a named function or a class "
                    "with get_config()"
                )
            return {
                "module": obj.__module__,
                "class_name": "function",
                "config": obj.__name__,
                "registered_name": obj.__name__,
            }
        raise TypeError(
            f"Cannot serialize {obj!r} as a {self.family}: it has no get_config() and is not "
            "a named function"
        )

    # -- deserialize -----------------------------------------------------------------------
    def deserialize(self, config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
        """Rebuild an object from a name or a config dict.

        Parameters
        ----------
        config
            `None`; a registered name (`"GlorotUniform"`, `"glorot_uniform"`); or a dict
            `{"class_name": ..., "config": {...}}`, optionally with the `"module"` and
            `"registered_name"` keys Keras 3 writes.
        custom_objects
            Optional `{name: class_or_function}` consulted before the built-in table.

        Raises
        ------
        ValueError
            Unknown name, or a built-in name claimed by a module other than Keras or numba_gn.
        TypeError
            Wrong type for `config` or its parts, or a config key the class does not accept.
        """
        custom = dict(custom_objects or {})
        if config is None:
            return None
        if isinstance(config, str):
            if config in custom:
                return self._instantiate(custom[config], {})
            return self._instantiate(self.lookup(config), {})
        if not isinstance(config, Mapping):
            raise TypeError(
                f"Cannot deserialize a {self.family} from {type(config).__name__}: {config!r}; "
                "expected a name or a config dict"
            )

        check_config_keys(config, self.family)
        if "class_name" not in config:
            raise ValueError(f"A {self.family} config needs a 'class_name' key: {config!r}")
        class_name = config["class_name"]
        registered = config.get("registered_name")
        inner = config.get("config")
        inner = {} if inner is None else inner
        if not isinstance(class_name, str):
            raise TypeError(f"'class_name' must be a string, got {class_name!r}")

        if class_name == "function":
            # Keras's form for plain functions: the name sits in "config".
            for key in (registered, inner):
                if isinstance(key, str) and key in custom:
                    return custom[key]
            raise ValueError(
                f"Cannot deserialize the function {inner!r}: functions are only resolved "
                "through custom_objects"
            )
        for key in (registered, class_name):
            if isinstance(key, str) and key in custom:
                return self._instantiate(custom[key], inner)

        # Custom objects were honoured above whatever their module; built-ins must be ours.
        check_config_module(
            config, self.family, " Pass custom_objects to use your own class."
        )
        return self._instantiate(self.lookup(class_name), inner)

    def _instantiate(self, target: Any, inner: Any) -> Any:
        """Build an instance of a class from its inner config; functions are returned as is."""
        if not isinstance(target, type):
            if callable(target):
                return target
            raise TypeError(f"custom_objects entry {target!r} is neither a class nor callable")
        if not isinstance(inner, Mapping):
            raise TypeError(
                f"The config of {target.__name__} must be a dict, got "
                f"{type(inner).__name__}: {inner!r}"
            )
        from_config = getattr(target, "from_config", None)
        if callable(from_config):
            return from_config(dict(inner))
        return build_from_config(target, inner)

    # -- get -------------------------------------------------------------------------------
    def get(self, identifier: Any) -> Any:
        """Resolve a user-facing identifier to an object.

        `None` gives `None`; an instance of the family's base class or any other callable is
        returned as is; a string or dict goes through `deserialize`; a class of this family
        is instantiated with its defaults.

        Raises
        ------
        ValueError
            Unknown name.
        TypeError
            Anything else (numbers, non-family classes, non-callable objects).
        """
        if identifier is None:
            return None
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, (str, Mapping)):
            return self.deserialize(identifier)
        if isinstance(identifier, type):
            if issubclass(identifier, self.base):
                return identifier()
            raise TypeError(
                f"Could not interpret {self.family} identifier {identifier!r}: a class must "
                f"subclass {self.base.__name__}"
            )
        if self._from_array is not None and hasattr(identifier, "__array__"):
            return self._from_array(identifier)
        if callable(identifier):
            return identifier
        raise TypeError(
            f"Could not interpret {self.family} identifier {identifier!r} of type "
            f"{type(identifier).__name__}; expected None, a name, a config dict, "
            f"a {self.base.__name__} instance or a callable"
        )
