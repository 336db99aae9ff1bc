"""`GradientTape`: TensorFlow-style recording of ops and an iterative reverse sweep.

While a tape is entered (`with GradientTape() as tape:`) in a thread, every op whose input the
tape watches is appended to the tape's list of nodes, and the op's output becomes watched in
turn. The recording order is a topological order (an op's inputs exist before it runs), so
walking the list backwards is a deterministic reverse topological order, obtained without any
recursion (HIPS autograd's `backward_pass` idea over a Wengert list). Gradients live in a local
dict keyed by tensor identity and are summed, never assigned, so fan-out (`x * x`, `a + a`)
is exact.

The recording state is thread-local: a tape records only the ops run by the thread that entered
it, so several threads can each run their own tape at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from numba_gn import buffers as _results
from numba_gn._dtypes import is_bfloat16
from numba_gn.autograd._state import STATE
from numba_gn.autograd.function import _wrap
from numba_gn.autograd.tensor import Tensor

__all__ = ["GradientTape", "no_record", "stop_gradient", "stop_recording"]

_ONE_SHOT = (
    "A non-persistent GradientTape can only be used to compute one set of gradients; "
    "create it with GradientTape(persistent=True) to call gradient() several times."
)


class GradientTape:
    """Record ops on watched Tensors and compute gradients, like `tf.GradientTape`.

    Parameters
    ----------
    persistent : bool, default False
        Allow several `gradient` calls; otherwise the tape frees its recording after the
        first one and a second call raises `RuntimeError`.
    watch_accessed_variables : bool, default True
        Watch trainable `Variable` objects automatically when an op
        uses them inside the tape. Non-trainable Variables and plain Tensors are watched only
        through `watch`.

    Notes
    -----
    Gradients are first-order: the backward pass runs on ndarrays and is not itself recorded.
    Arrays saved for backward alias the op inputs, so assigning to a Variable between the
    forward computation and `gradient` changes the gradient.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        # id -> Tensor for every watched source and recorded output. Holding the Tensor keeps
        # its id from being reused by a new object while the tape lives.
        self._tracked: dict[int, Tensor] = {}
        self._nodes: list[tuple] = []
        self._variables: list[Tensor] = []
        self._spent = False

    # -- context management ------------------------------------------------------------------

    def __enter__(self) -> GradientTape:
        if self._spent:
            raise RuntimeError(_ONE_SHOT)
        if self in STATE.active:
            raise RuntimeError("This GradientTape is already recording in this thread.")
        STATE.active.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._deactivate()

    def _deactivate(self) -> None:
        active = STATE.active
        if self in active:
            active.remove(self)

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Context in which this tape (only) records nothing, as `tape.stop_recording()`."""
        active = STATE.active
        if self not in active:
            raise RuntimeError("stop_recording() called on a GradientTape that is not recording.")
        position = active.index(self)
        active.remove(self)
        try:
            yield
        finally:
            active.insert(min(position, len(active)), self)

    # -- watching ----------------------------------------------------------------------------------

    def watch(self, tensor: Any) -> None:
        """Watch a Tensor or Variable (or a list/tuple/dict of them) so ops on it are recorded."""
        for t in _flatten(tensor, "tape.watch()"):
            self._watch_one(t)

    def _watch_one(self, t: Tensor) -> bool:
        if id(t) not in self._tracked:
            self._tracked[id(t)] = t
            if t._is_variable:
                self._variables.append(t)
        return True

    def watched_variables(self) -> tuple[Tensor, ...]:
        """The Variables this tape watches, in the order they were first watched."""
        return tuple(self._variables)

    def reset(self) -> None:
        """Forget everything recorded and watched so far (the tape keeps recording if entered)."""
        self._tracked = {}
        self._nodes = []
        self._variables = []
        self._spent = False

    # -- recording (called by Function.apply) -----------------------------------------------------

    def _input_refs(self, inputs: tuple) -> tuple | None:
        """Per input, the Tensor if this tape tracks it, else None; None if no input is tracked."""
        tracked = self._tracked
        refs = None
        for i, x in enumerate(inputs):
            if isinstance(x, Tensor) and (
                id(x) in tracked
                or (x._is_variable and self._watch_accessed and x.trainable and self._watch_one(x))
            ):
                if refs is None:
                    refs = [None] * len(inputs)
                refs[i] = x
        return None if refs is None else tuple(refs)

    def _record(self, fn: type, ctx: Any, out: Tensor, inputs: tuple) -> None:
        self._nodes.append((fn, ctx, out, inputs))
        self._tracked[id(out)] = out

    # -- gradients ---------------------------------------------------------------------------------

    def gradient(
        self,
        target: Any,
        sources: Any,
        output_gradients: Any = None,
        unconnected_gradients: Literal["none", "zero"] = "none",
    ) -> Any:
        """Gradients of `target` with respect to `sources`, in the structure of `sources`.

        Parameters
        ----------
        target : Tensor or list/tuple/dict of Tensors
            What to differentiate; a non-scalar target is treated as the sum of its elements
            (weighted by `output_gradients` when given); several targets are summed.
        sources : Tensor, Variable, or a (nested) list/tuple/dict of them
            The result has the same structure, one ndarray per source, with the source's shape
            and dtype.
        output_gradients : array-like or structure like `target`, optional
            Cotangent of each target (default ones).
        unconnected_gradients : {"none", "zero"}
            What a source that `target` does not depend on (or a non-float source) gets.

        Returns
        -------
        The gradients as ndarrays (or None), structured like `sources`.
        """
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(
                f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}."
            )
        if self._spent:
            raise RuntimeError(_ONE_SHOT)
        flat_sources = _flatten(sources, "tape.gradient() sources")
        grads: dict[int, np.ndarray] = {}
        for t, og in _pair_targets(target, output_gradients):
            seed = _seed(t, og)
            prev = grads.get(id(t))
            grads[id(t)] = seed if prev is None else prev + seed

        nodes = self._nodes
        if not self._persistent:
            # Free the recording as soon as it has been used (TF deletes a one-shot tape too).
            self._spent = True
            self._deactivate()
            self._nodes, self._tracked = [], {}
        backward_pass(nodes, grads, keep={id(s) for s in flat_sources})

        zero = unconnected_gradients == "zero"
        returned: set[int] = set()
        results = [_finish(grads.get(id(s)), s, zero, returned) for s in flat_sources]
        return _rebuild(sources, iter(results))


def backward_pass(nodes: list[tuple], grads: dict[int, np.ndarray], keep: set[int]) -> None:
    """Propagate `grads` (id of Tensor -> gradient) backwards through `nodes`, in place.

    `nodes` are `(fn, ctx, output, inputs)` in recording order; `inputs` holds the input
    Tensor where the tape tracks it and None elsewhere. Gradients of outputs are dropped once
    used unless their id is in `keep` (the sources), which bounds memory on long tapes.
    """
    ndarray = np.ndarray
    for fn, ctx, out, inputs in reversed(nodes):
        key = id(out)
        g = grads.get(key) if key in keep else grads.pop(key, None)
        if g is None:
            continue
        in_grads = fn.backward(ctx, g)
        if type(in_grads) is not tuple:
            in_grads = tuple(in_grads) if isinstance(in_grads, list) else (in_grads,)
        if len(in_grads) != len(inputs):
            raise ValueError(
                f"{fn.__name__}.backward returned {len(in_grads)} gradients for "
                f"{len(inputs)} inputs."
            )
        for inp, ig in zip(inputs, in_grads):  # noqa: B905 - lengths checked just above
            if inp is None or ig is None:
                continue
            data = inp.data
            if type(ig) is not ndarray:
                ig = np.asarray(ig)
            if ig.shape != data.shape:
                raise ValueError(
                    f"{fn.__name__}.backward returned a gradient of shape {ig.shape} for an "
                    f"input of shape {data.shape}; reduce broadcast axes with unbroadcast()."
                )
            dtype = data.dtype
            # `is` first: builtin dtypes are singletons and `!=` on dtypes is slow.
            if ig.dtype is not dtype and ig.dtype != dtype and (
                dtype.kind == "f" or is_bfloat16(dtype)
            ):
                ig = ig.astype(dtype)  # keep each gradient in its tensor's dtype
            k = id(inp)
            prev = grads.get(k)
            if prev is None:
                grads[k] = ig
            else:
                # Out of place: a backward may return the same array for several inputs. Into
                # a `numba_gn.buffers` array: a residual network's skip connections add whole
                # activations' gradients, and fresh memory for each cost more than the add.
                total = _results.empty(data.shape, np.result_type(prev, ig))
                grads[k] = np.add(prev, ig, out=total)


def _seed(t: Tensor, og: Any) -> np.ndarray:
    dtype = t.dtype if t.dtype.kind in "fc" or is_bfloat16(t.dtype) else np.dtype(np.float64)
    if og is None:
        return np.ones(t.shape, dtype=dtype)
    arr = np.asarray(og.data if isinstance(og, Tensor) else og, dtype=dtype)
    if arr.shape != t.shape:
        raise ValueError(
            f"output_gradients has shape {arr.shape} but its target has shape {t.shape}."
        )
    return arr.copy()  # never hand the caller's own array back as a gradient


def _finish(g: np.ndarray | None, src: Tensor, zero: bool, returned: set[int]) -> Any:
    """The gradient as returned: source dtype, own writeable memory, None/zeros if absent."""
    if g is None or (src.dtype.kind not in "fc" and not is_bfloat16(src.dtype)):
        return np.zeros(src.shape, dtype=src.dtype) if zero else None
    if g.dtype != src.dtype:
        g = g.astype(src.dtype)
    elif g.base is not None or not g.flags.writeable or id(g) in returned:
        # Views (broadcasts, reshapes) and arrays already returned for another source would
        # alias: callers may update gradients in place.
        g = g.copy()
    returned.add(id(g))
    return g


def _flatten(struct: Any, what: str) -> list[Tensor]:
    out: list[Tensor] = []
    stack = [struct]
    while stack:
        s = stack.pop()
        if isinstance(s, Tensor):
            out.append(s)
        elif isinstance(s, dict):
            stack.extend(reversed(list(s.values())))
        elif isinstance(s, (list, tuple)):
            stack.extend(reversed(s))
        else:
            raise TypeError(
                f"{what} takes Tensors or Variables (or lists/tuples/dicts of them), got "
                f"{type(s).__name__}; wrap arrays with Tensor(array) and use that Tensor."
            )
    return out


def _rebuild(struct: Any, it: Iterator[Any]) -> Any:
    if isinstance(struct, Tensor):
        return next(it)
    if isinstance(struct, dict):
        return {k: _rebuild(v, it) for k, v in struct.items()}
    items = [_rebuild(s, it) for s in struct]
    if isinstance(struct, tuple):
        return type(struct)(*items) if hasattr(struct, "_fields") else tuple(items)
    return items


def _pair_targets(target: Any, og: Any) -> list[tuple[Tensor, Any]]:
    """(target tensor, its output gradient or None) for every Tensor in `target`."""
    if isinstance(target, Tensor):
        return [(target, og)]
    if isinstance(target, dict):
        keys = list(target)
        ogs = [None] * len(keys) if og is None else [og[k] for k in keys]
        return [p for k, o in zip(keys, ogs, strict=True) for p in _pair_targets(target[k], o)]
    if isinstance(target, (list, tuple)):
        if og is not None and len(og) != len(target):
            raise ValueError(f"output_gradients has {len(og)} entries for {len(target)} targets.")
        ogs = [None] * len(target) if og is None else list(og)
        return [p for t, o in zip(target, ogs, strict=True) for p in _pair_targets(t, o)]
    raise TypeError(f"tape.gradient() target must be a Tensor, got {type(target).__name__}.")


@contextlib.contextmanager
def no_record() -> Iterator[None]:
    """Context in which no tape of the current thread records (every tape's stop_recording)."""
    saved = STATE.active
    STATE.active = []
    try:
        yield
    finally:
        STATE.active = saved


#: Alias of `no_record`, after TensorFlow's `tape.stop_recording()`.
stop_recording: Callable[[], contextlib.AbstractContextManager[None]] = no_record


def stop_gradient(x: Any) -> Tensor:
    """A new Tensor sharing `x`'s data that no tape tracks: gradients stop here."""
    return _wrap(x.data if isinstance(x, Tensor) else np.asarray(x))
