"""`numba-gn bench --fused`: fused GroupNorm + residual + activation next to what it replaces.

A UNet block of a diffusion model computes `silu(group_norm(x) + r)`, a ResNet block
`relu(group_norm(x) + r)`; `numba_gn.group_norm(..., residual=r, activation=...)` does it in
the passes of GroupNorm alone, and `group_norm_backward(..., residual=, activation=)` returns
the gradients of all three ops from the GroupNorm backward's passes. This measures what that
saves, on float32 arrays of `(N, H, W, 256)` (channels-last, axis -1) and `(N, 256, H, W)`
(channels-first, axis 1), 32 groups, affine gamma/beta, at a few sizes of `bench --sweep`
(64 KiB to 64 MiB), for three cases: SiLU with a residual (diffusion), ReLU with a residual
(ResNet) and SiLU without one. Per case and pass (forward; forward + backward) it reports the
median seconds per call of

* `copy`: `np.copyto` of `x` into a preallocated array, the bandwidth floor (`x_copy` in
  the JSON: every time divided by it);
* `group_norm`: `group_norm` alone (with statistics), then `group_norm_backward`: the cost
  fusion should stay close to;
* `fused`: `group_norm(..., residual=r, activation=a, return_stats=True)`, then
  `group_norm_backward(dy, ..., beta=, residual=r, activation=a)`;
* `separate`: the same as separate numba_gn ops: `group_norm`, `+ r` in NumPy, the
  activation kernel (`numba_gn.kernels.activations`); backward: the activation's backward,
  then `group_norm_backward` (the residual's gradient is the activation's);
* `torch_eager`: `F.silu(F.group_norm(x, 32, w, b, eps) + r)` (or `F.relu`) in PyTorch, the
  forward under `no_grad`, forward + backward by `torch.autograd.grad` for `dy`;
* `torch_compile`: the same function through `torch.compile` with its defaults, one layout
  after the other (`torch._dynamo.reset()` between them): the first size compiles for static
  shapes, the next recompiles once with dynamic shapes, which the later sizes reuse, as in a
  process that sees several shapes. `first_call_seconds` keeps each first call, compilation
  included.

Every result is allocated by the call, as a training step allocates it (the copy excepted).
Before anything is timed, the fused results are checked against the separate ops' (forward
output and all four gradients, relative to the largest magnitude of each; statistics equal),
and PyTorch's against samples of the fused ones: the bench stops with an error rather than
time a wrong result. PyTorch runs in its own Python process, after numba_gn's measurements,
so that its OpenMP pool and Numba's never compete for the cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numba_gn._atomic import write_text
from numba_gn.cli.bench import SWEEP_SIZES, Progress, _set_wait_policy, _Timer

__all__ = [
    "ACTIVATIONS",
    "IMPLEMENTATIONS",
    "LAYOUTS",
    "PASSES",
    "QUICK_SIZES",
    "SIZES",
    "Case",
    "Inputs",
    "MismatchError",
    "Ops",
    "compare",
    "make_inputs",
    "measure",
    "print_table",
    "run",
    "torch_worker",
]

SCHEMA = 1
GROUPS = 32
EPSILON = 1e-3
CHANNELS = 256
#: (N, H = W) with C = 256: 64 KiB, 1 MiB, 16 MiB and 64 MiB of float32 (`bench --sweep`'s).
SIZES = (SWEEP_SIZES[0], SWEEP_SIZES[2], SWEEP_SIZES[4], SWEEP_SIZES[5])
#: `--quick`: 16 KiB and 128 KiB, a smoke test.
QUICK_SIZES = ((1, 4), (2, 8))
#: (activation, with a residual): a diffusion UNet block, a ResNet block, GroupNorm + SiLU.
ACTIVATIONS = (("silu", True), ("relu", True), ("silu", False))
LAYOUTS = ("channels-last", "channels-first")
PASSES = ("forward", "forward+backward")
IMPLEMENTATIONS = ("copy", "group_norm", "fused", "separate", "torch_eager", "torch_compile")
#: Largest `|fused - separate| / max|separate|` accepted, per array: the fused kernels round
#: the same operations, perhaps in another order (a few float32 ulps); a wrong formula is off
#: by the size of the values.
TOLERANCE = {"forward": 1e-5, "forward+backward": 1e-4}
#: The same for PyTorch against the fused results. Its float32 GroupNorm sums in float32, and
#: its channels-last path loses more: 4.4e-3 on a (4, 64, 64, 256) ReLU case. This only has to
#: catch a wrong formula (off by the size of the values); each row keeps the difference found.
TORCH_TOLERANCE = 2e-2
#: Elements of `y`, `dx` and `dresidual` PyTorch's results are compared at (all of dgamma/dbeta).
SAMPLES = 1024
#: What the numbers mean (also stored in the JSON output).
CONVENTIONS = (
    "seconds: median per call, results allocated by each call (copy: into a preallocated "
    "array). forward: group_norm(..., return_stats=True); forward+backward: that, then "
    "group_norm_backward. x_copy: seconds / copy seconds. ratios: fused_vs_group_norm = "
    "fused / group_norm; separate_vs_fused, torch_eager_vs_fused, torch_compile_vs_fused = "
    "that / fused (above 1: fused is faster). torch is timed in its own process. "
    "agreement: max |a - b| / max |b| per array, fused against separate."
)


@dataclass(frozen=True)
class Case:
    """One measured input: size `(N, H=W)`, layout, activation and whether a residual is added."""

    size: tuple[int, int]
    layout: str
    activation: str
    residual: bool

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """`(N, H, W, C)` channels-last, `(N, C, H, W)` channels-first."""
        n, s = self.size
        if self.layout == "channels-last":
            return (n, s, s, CHANNELS)
        return (n, CHANNELS, s, s)

    @property
    def axis(self) -> int:
        """The channel axis: -1 channels-last, 1 channels-first."""
        return -1 if self.layout == "channels-last" else 1

    @property
    def nbytes(self) -> int:
        """Bytes of one float32 array of this case."""
        return int(np.prod(self.shape)) * 4

    @property
    def kind(self) -> str:
        """`silu+residual`, `relu+residual` or `silu`."""
        return f"{self.activation}+residual" if self.residual else self.activation

    @property
    def label(self) -> str:
        """A short name for tables: layout, shape and kind."""
        short = "NHWC" if self.layout == "channels-last" else "NCHW"
        return f"{short} {'x'.join(map(str, self.shape))} {self.kind}"


def cases(sizes: Iterable[tuple[int, int]] = SIZES) -> list[Case]:
    """Every case of `sizes`, grouped by size and layout (which share their inputs)."""
    return [
        Case(tuple(size), layout, act, res)
        for size in sizes
        for layout in LAYOUTS
        for act, res in ACTIVATIONS
    ]


@dataclass
class Inputs:
    """The arrays of one size and layout: `x`, residual `r`, output gradient `dy`, parameters."""

    x: np.ndarray
    r: np.ndarray
    dy: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    axis: int


def make_inputs(shape: tuple[int, ...], axis: int) -> Inputs:
    """Seeded standard-normal float32 arrays (the same in every process: PyTorch's uses them)."""
    rng = np.random.default_rng([2025, *shape, axis % len(shape)])
    x = rng.standard_normal(shape, dtype=np.float32)
    r = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    c = shape[axis]
    gamma = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
    return Inputs(x, r, dy, gamma, beta, axis)


def sample_indices(size: int) -> np.ndarray:
    """The flat indices PyTorch's results are compared at (seeded by the array size)."""
    return np.random.default_rng([17, size]).integers(0, size, min(SAMPLES, size))


class MismatchError(RuntimeError):
    """Two implementations that must agree do not: their times would mean nothing."""


def compare(a: np.ndarray, b: np.ndarray) -> float:
    """`max |a - b| / max |b|` in float64 (`max |a - b|` where `b` is all zeros)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    scale = float(np.max(np.abs(b64))) if b64.size else 0.0
    diff = float(np.max(np.abs(a64 - b64))) if b64.size else 0.0
    return diff / scale if scale > 0 else diff


class Ops:
    """The calls timed for one case: GroupNorm alone, fused, and as separate ops."""

    def __init__(self, inputs: Inputs, activation: str, residual: bool):
        from numba_gn.functional import group_norm, group_norm_backward
        from numba_gn.kernels import activations

        self.inp = inputs
        self.activation = activation
        self.r = inputs.r if residual else None
        self._gn, self._gnb, self._act = group_norm, group_norm_backward, activations
        self._copy_out: np.ndarray | None = None

    def copy(self) -> None:
        """The floor: read `x` once, write it once (into an array made on the first call)."""
        if self._copy_out is None:
            self._copy_out = np.empty_like(self.inp.x)
            self._copy_out.fill(0)  # fault the pages in now, not in a timed call
        np.copyto(self._copy_out, self.inp.x)

    def group_norm_forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`group_norm` alone: `(y, mean, rstd)`."""
        i = self.inp
        return self._gn(
            i.x, GROUPS, i.gamma, i.beta, axis=i.axis, epsilon=EPSILON, return_stats=True
        )

    def group_norm_forward_backward(self) -> tuple[np.ndarray, ...]:
        """`group_norm` alone, then its backward for `dy`: `(dx, dgamma, dbeta)`."""
        i = self.inp
        _, mean, rstd = self.group_norm_forward()
        return self._gnb(i.dy, i.x, mean, rstd, GROUPS, i.gamma, axis=i.axis)

    def fused_forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`act(group_norm(x) + r)` in one call: `(y, mean, rstd)`."""
        i = self.inp
        return self._gn(
            i.x,
            GROUPS,
            i.gamma,
            i.beta,
            axis=i.axis,
            epsilon=EPSILON,
            return_stats=True,
            residual=self.r,
            activation=self.activation,
        )

    def fused_forward_backward(self) -> tuple[np.ndarray, tuple[Any, ...]]:
        """Fused forward, then the fused backward: `(y, (dx, dgamma, dbeta, dresidual))`."""
        i = self.inp
        y, mean, rstd = self.fused_forward()
        grads = self._gnb(
            i.dy,
            i.x,
            mean,
            rstd,
            GROUPS,
            i.gamma,
            beta=i.beta,
            axis=i.axis,
            residual=self.r,
            activation=self.activation,
        )
        return y, tuple(grads)

    def separate_forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`group_norm`, `+ r` (NumPy), the activation kernel: `(y, z, mean, rstd)`.

        `z` is the activation's input, which its backward needs.
        """
        g, mean, rstd = self.group_norm_forward()
        z = g + self.r if self.r is not None else g
        return self._act.forward(self.activation, z), z, mean, rstd

    def separate_forward_backward(self) -> tuple[np.ndarray, tuple[Any, ...]]:
        """The separate ops and their backwards: `(y, (dx, dgamma, dbeta, dresidual))`."""
        i = self.inp
        y, z, mean, rstd = self.separate_forward()
        dz = self._act.backward(self.activation, i.dy, z)
        dx, dgamma, dbeta = self._gnb(dz, i.x, mean, rstd, GROUPS, i.gamma, axis=i.axis)
        return y, (dx, dgamma, dbeta, dz if self.r is not None else None)

    def verify(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check fused against separate (raises `MismatchError`); the differences and references.

        The references are samples of the fused results, for PyTorch's check.
        """
        fy, mean, rstd = self.fused_forward()
        _, gmean, grstd = self.group_norm_forward()
        if not (np.array_equal(mean, gmean) and np.array_equal(rstd, grstd)):
            raise MismatchError("the fused forward's statistics differ from group_norm's")
        fy2, fgrads = self.fused_forward_backward()
        sy, sgrads = self.separate_forward_backward()
        if len(fgrads) != 4:
            raise MismatchError(f"group_norm_backward returned {len(fgrads)} arrays, not 4")
        if (fgrads[3] is None) != (sgrads[3] is None):
            raise MismatchError("dresidual must be None exactly when there is no residual")
        diffs: dict[str, Any] = {"y": compare(fy, sy)}
        for name, f, s in zip(("dx", "dgamma", "dbeta", "dresidual"), fgrads, sgrads, strict=True):
            if s is not None:
                if f.shape != s.shape or f.dtype != s.dtype:
                    raise MismatchError(f"fused {name}: {f.dtype}{f.shape}, not {s.dtype}{s.shape}")
                diffs[name] = compare(f, s)
        diffs["identical_y"] = bool(np.array_equal(fy, sy))
        bad = {k: v for k, v in diffs.items() if k != "identical_y" and v > _tolerance(k)}
        if not np.array_equal(fy, fy2):
            bad["y (forward vs forward+backward)"] = compare(fy2, fy)
        if bad:
            raise MismatchError(
                "fused and separate results differ (max |fused - separate| / max |separate|): "
                + ", ".join(f"{k} {v:.2e}" for k, v in bad.items())
            )
        idx = sample_indices(fy.size)
        dx, dgamma, dbeta, dres = fgrads
        reference = {
            "y": fy.reshape(-1)[idx].tolist(),
            "dx": dx.reshape(-1)[idx].tolist(),
            "dresidual": None if dres is None else dres.reshape(-1)[idx].tolist(),
            "dgamma": dgamma.tolist(),
            "dbeta": dbeta.tolist(),
        }
        return diffs, reference


def _tolerance(name: str) -> float:
    return TOLERANCE["forward" if name == "y" else "forward+backward"]


@dataclass
class Row:
    """The measurements of one case and pass."""

    case: Case
    pass_: str
    seconds: dict[str, float | None] = field(default_factory=dict)
    first_call: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, Any] = field(default_factory=dict)

    def ratios(self) -> dict[str, float | None]:
        """`fused / group_norm`, and the others' times / fused (above 1: fused is faster)."""
        s = self.seconds

        def div(a: float | None, b: float | None) -> float | None:
            return a / b if a and b else None

        fused = s.get("fused")
        return {
            "fused_vs_group_norm": div(fused, s.get("group_norm")),
            "separate_vs_fused": div(s.get("separate"), fused),
            "torch_eager_vs_fused": div(s.get("torch_eager"), fused),
            "torch_compile_vs_fused": div(s.get("torch_compile"), fused),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see `--json`)."""
        c = self.case
        copy = self.seconds.get("copy")
        return {
            "label": c.label,
            "layout": c.layout,
            "shape": list(c.shape),
            "axis": c.axis,
            "dtype": "float32",
            "activation": c.activation,
            "residual": c.residual,
            "kind": c.kind,
            "pass": self.pass_,
            "nbytes": c.nbytes,
            "seconds": {k: self.seconds.get(k) for k in IMPLEMENTATIONS},
            "x_copy": {
                k: (t / copy if t and copy else None)
                for k in IMPLEMENTATIONS
                if (t := self.seconds.get(k)) is not None
            },
            "ratios": self.ratios(),
            "first_call_seconds": dict(self.first_call),
            "agreement": self.agreement,
        }


def has_fused_api() -> bool:
    """Whether this numba_gn's `group_norm` and its backward take `residual` and `activation`."""
    from numba_gn.functional import group_norm, group_norm_backward

    return all(
        {"residual", "activation"} <= set(inspect.signature(f).parameters)
        for f in (group_norm, group_norm_backward)
    )


def measure(
    sizes: Iterable[tuple[int, int]] = SIZES,
    *,
    repeat: int = 7,
    quick: bool = False,
    with_torch: bool = True,
    with_compile: bool = True,
    threads: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Verify, then time every case of `sizes`; the JSON-ready report.

    Its keys: `results` (one row per case and pass), `torch` (PyTorch's version, or None),
    `notes` (what was not timed, and why), `threads`, `repeat`.

    `threads`: PyTorch's thread count (default: Numba's current one). PyTorch is skipped
    (its times None) when `with_torch` is false or it is not installed; `with_compile=False`
    skips `torch.compile` only. Raises `MismatchError` when results disagree.
    """
    import numba

    all_cases = cases(sizes)
    threads = threads or numba.get_num_threads()
    # At most ~1 s of samples per measurement (at least 3 for slow calls): the whole run,
    # torch.compile's compilations included, stays near 5 minutes on 2 cores.
    timer = _Timer(
        repeat=max(1, repeat), min_time=0.002 if quick else 0.02, budget=0.3 if quick else 1.0
    )
    use_torch = with_torch and importlib.util.find_spec("torch") is not None
    groups = _by_inputs(all_cases)
    if progress is None:
        progress = Progress(
            total=len(groups) + len(all_cases) * (1 + (2 if with_compile else 1) * use_torch),
            stream=_Null(),
        )
    rows = {(c, p): Row(c, p) for c in all_cases for p in PASSES}
    references: dict[Case, dict[str, Any]] = {}

    for (_, layout), group in groups.items():  # phase 1: numba_gn and the copy floor
        shape, axis = group[0].shape, group[0].axis
        progress.step(f"copy and group_norm {layout} {shape}")
        inputs = make_inputs(shape, axis)
        base = Ops(inputs, "silu", False)
        shared = {
            "copy": timer(base.copy),
            ("group_norm", "forward"): timer(base.group_norm_forward),
            ("group_norm", "forward+backward"): timer(base.group_norm_forward_backward),
        }
        for case in group:
            progress.step(f"numba_gn {case.label}")
            ops = Ops(inputs, case.activation, case.residual)
            diffs, references[case] = ops.verify()  # before any timing: raises on a mismatch
            timed = {
                ("fused", "forward"): ops.fused_forward,
                ("fused", "forward+backward"): ops.fused_forward_backward,
                ("separate", "forward"): ops.separate_forward,
                ("separate", "forward+backward"): ops.separate_forward_backward,
            }
            for pass_ in PASSES:
                row = rows[case, pass_]
                row.seconds["copy"] = shared["copy"]
                row.seconds["group_norm"] = shared["group_norm", pass_]
                for name in ("fused", "separate"):
                    row.seconds[name] = timer(timed[name, pass_])
                row.agreement["fused_vs_separate"] = diffs
            del ops
        del inputs, base

    version, notes = None, []
    if use_torch:  # phase 2: PyTorch in its own process
        version, notes = _time_torch_elsewhere(
            all_cases, references, rows, threads, timer, with_compile, progress
        )
    return {
        "torch": version,
        "notes": notes,
        "threads": threads,
        "repeat": timer.repeat,
        "results": [rows[c, p].to_json() for c in all_cases for p in PASSES],
    }


def _by_inputs(all_cases: list[Case]) -> dict[tuple[tuple[int, int], str], list[Case]]:
    groups: dict[tuple[tuple[int, int], str], list[Case]] = {}
    for c in all_cases:
        groups.setdefault((c.size, c.layout), []).append(c)
    return groups


class _Null:
    """A stream that drops what is written (progress when none is wanted)."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _time_torch_elsewhere(
    all_cases: list[Case],
    references: dict[Case, dict[str, Any]],
    rows: dict[tuple[Case, str], Row],
    threads: int,
    timer: _Timer,
    with_compile: bool,
    progress: Progress,
) -> tuple[str, list[str]]:
    """Time PyTorch in a fresh interpreter (`torch_worker`); its version and notes.

    The notes say what could not be timed (`torch.compile` without a working compiler).
    """
    request = {
        "threads": threads,
        "timer": [timer.repeat, timer.min_time, timer.budget],
        "compile": with_compile,
        "cases": [
            {
                "size": list(c.size),
                "layout": c.layout,
                "activation": c.activation,
                "residual": c.residual,
                "reference": references[c],
            }
            for c in all_cases
        ],
    }
    by_key = {(c.size, c.layout, c.activation, c.residual): c for c in all_cases}
    version, error, notes = "", None, []
    with subprocess.Popen(  # the context closes the pipes, also on an error
        [sys.executable, "-c", "from numba_gn.cli.bench_fused import torch_worker; torch_worker()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
        for line in proc.stdout:
            msg = json.loads(line)
            if "step" in msg:
                progress.step(msg["step"])
            elif "version" in msg:
                version = msg["version"]
            elif "error" in msg:
                error = msg["error"]
            elif "skipped" in msg:
                notes.append(f"{msg['skipped']} not timed: {msg['reason']}")
            else:
                key = (tuple(msg["size"]), msg["layout"], msg["activation"], msg["residual"])
                row = rows[by_key[key], msg["pass"]]
                impl = msg["impl"]
                row.seconds[impl] = msg["seconds"]
                row.first_call[impl] = msg["first_call"]
                row.agreement[impl] = msg["agreement"]
        code = proc.wait()
    if error is not None:
        raise MismatchError(error)
    if code != 0:
        raise RuntimeError("timing PyTorch in a separate process failed (see its error above)")
    return version, notes


def _torch_functions(torch: Any) -> dict[tuple[str, bool], Callable[..., Any]]:
    """The PyTorch function of each case.

    One definition each: `torch.compile` keeps its compiled graphs per function, and the
    cases must not share them.
    """
    F = torch.nn.functional

    def silu_residual(x: Any, w: Any, b: Any, r: Any) -> Any:
        return F.silu(F.group_norm(x, GROUPS, w, b, EPSILON) + r)

    def relu_residual(x: Any, w: Any, b: Any, r: Any) -> Any:
        return F.relu(F.group_norm(x, GROUPS, w, b, EPSILON) + r)

    def silu_alone(x: Any, w: Any, b: Any) -> Any:
        return F.silu(F.group_norm(x, GROUPS, w, b, EPSILON))

    return {
        ("silu", True): silu_residual,
        ("relu", True): relu_residual,
        ("silu", False): silu_alone,
    }


class _TorchCase:
    """One case's tensors and its two timed calls.

    The tensors share the NumPy arrays' memory; channels-last input is a channels_last-strided
    NCHW tensor, as PyTorch users hold it.
    """

    def __init__(self, torch: Any, inputs: Inputs, residual: bool, fn: Callable[..., Any]):
        from numba_gn._peers import channels_to_front

        self.torch, self.fn = torch, fn
        perm = channels_to_front(inputs.x.ndim, inputs.axis)
        self.inverse = tuple(np.argsort(perm).tolist())
        self.shape = inputs.x.shape
        x = torch.from_numpy(inputs.x).permute(perm)
        w = torch.from_numpy(inputs.gamma)
        b = torch.from_numpy(inputs.beta)
        self.args = [x, w, b]
        if residual:
            self.args.append(torch.from_numpy(inputs.r).permute(perm))
        self.dy = torch.from_numpy(inputs.dy).permute(perm)
        # Leaves for autograd, with the inputs' strides.
        self.leaves = [a.detach().clone() if a.ndim == 1 else a.detach() for a in self.args]
        for leaf in self.leaves:
            leaf.requires_grad_(True)

    def forward(self) -> Any:
        with self.torch.no_grad():
            return self.fn(*self.args)

    def forward_backward(self) -> tuple[Any, tuple[Any, ...]]:
        y = self.fn(*self.leaves)
        return y, self.torch.autograd.grad(y, self.leaves, self.dy)

    def agreement(self, y: Any, grads: tuple[Any, ...], ref: dict[str, Any]) -> float:
        """Largest relative difference from the fused results' samples."""
        idx = np.unravel_index(sample_indices(int(np.prod(self.shape))), self.shape)

        def at(t: Any) -> np.ndarray:
            return t.detach().permute(self.inverse).numpy()[idx]

        diffs = [
            compare(at(y), np.array(ref["y"])),
            compare(at(grads[0]), np.array(ref["dx"])),
            compare(grads[1].detach().numpy(), np.array(ref["dgamma"])),
            compare(grads[2].detach().numpy(), np.array(ref["dbeta"])),
        ]
        if ref["dresidual"] is not None:
            diffs.append(compare(at(grads[3]), np.array(ref["dresidual"])))
        return max(diffs)


def _raise_recompile_limits(torch: Any) -> None:
    """Allow every case's recompilations (layouts, grad modes, sizes).

    The default limit of 8 per function would silently fall back to eager for the last ones.
    """
    config = torch._dynamo.config
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(config, name):
            setattr(config, name, 64)


def torch_worker() -> None:
    """Time PyTorch on the cases read as JSON from stdin; report JSON lines on stdout.

    Runs in its own interpreter (see `_time_torch_elsewhere`) on the same seeded inputs
    (`make_inputs`) with the same timer settings as the numba_gn measurements. Each
    implementation is checked against the fused results' samples before it is timed.
    """
    request = json.load(sys.stdin)
    from numba_gn import _peers

    torch = _peers.import_torch()
    if torch is None:
        raise SystemExit("numba-gn bench --fused: PyTorch cannot be imported in the timing process")
    torch.set_num_threads(request["threads"])
    timer = _Timer(*request["timer"])
    eager = _torch_functions(torch)
    impls: dict[str, dict[tuple[str, bool], Callable[..., Any]]] = {"torch_eager": eager}
    if request["compile"]:
        _raise_recompile_limits(torch)
        impls["torch_compile"] = {k: torch.compile(f) for k, f in eager.items()}

    def say(**msg: Any) -> None:
        print(json.dumps(msg), flush=True)

    say(version=torch.__version__)
    # One layout after the other, sizes in the order given: torch.compile starts afresh for
    # each layout, so it sees shapes change (static, then dynamic shapes) but never strides,
    # which would make it compile stride-generic kernels no single-layout model gets.
    specs = sorted(request["cases"], key=lambda spec: LAYOUTS.index(spec["layout"]))
    inputs_key, inputs = None, None
    for spec in specs:
        case = Case(tuple(spec["size"]), spec["layout"], spec["activation"], spec["residual"])
        if inputs_key is None or inputs_key[1] != case.layout:
            torch._dynamo.reset()  # forget the other layout's graphs and shapes
        if inputs_key != (case.size, case.layout):  # the cases of one size and layout share them
            inputs_key, inputs = None, None
            inputs = make_inputs(case.shape, case.axis)
            inputs_key = (case.size, case.layout)
        assert inputs is not None
        for impl, fns in list(impls.items()):
            say(step=f"{impl} {case.label}")
            tc = _TorchCase(torch, inputs, case.residual, fns[case.activation, case.residual])
            try:
                t0 = time.perf_counter()
                tc.forward()  # the first calls compile (torch.compile): timed apart
                first_forward = time.perf_counter() - t0
                t0 = time.perf_counter()
                y, grads = tc.forward_backward()
                first_backward = time.perf_counter() - t0
            except Exception as exc:  # torch.compile needs a C++ compiler, for one; eager not
                if impl == "torch_eager":
                    raise
                reason = (str(exc).strip().splitlines() or [""])[0][:200]
                say(skipped=impl, reason=f"{type(exc).__name__}: {reason}")
                del impls[impl]
                continue
            agreement = max(
                tc.agreement(tc.forward(), grads, spec["reference"]),
                tc.agreement(y, grads, spec["reference"]),
            )
            if not agreement <= TORCH_TOLERANCE:
                say(error=f"{impl} differs from the fused results on {case.label}: "
                    f"max relative difference {agreement:.2e}")
                raise SystemExit(1)
            del y, grads
            for pass_, fn, first in (
                ("forward", tc.forward, first_forward),
                ("forward+backward", tc.forward_backward, first_backward),
            ):
                say(size=list(case.size), layout=case.layout, activation=case.activation,
                    residual=case.residual, impl=impl, seconds=timer(fn), first_call=first,
                    agreement=agreement, **{"pass": pass_})
            del tc


def _fmt_ms(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:.3g}"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def print_table(report: dict[str, Any], file: Any = None) -> None:
    """The rows as a plain-text table: medians in ms, then the ratios."""
    out = file if file is not None else sys.stdout
    facts = report.get("facts")
    if facts:
        print(
            f"numba_gn {facts['numba_gn']}, numba {facts['numba']}, numpy {facts['numpy']}, "
            f"torch {report.get('torch') or 'not used'}; {report['threads']} threads on "
            f"{facts['cpus']} CPUs ({facts['cpu']}); float32, {GROUPS} groups, "
            f"median of {report['repeat']}",
            file=out,
        )
    for note in report.get("notes", []):
        print(note, file=out)
    print(file=out)
    head = (
        f"{'case':<32} {'pass':<7} {'copy':>7} {'GN':>7} {'fused':>7} {'separ.':>7} "
        f"{'eager':>7} {'compile':>7} | {'fus/GN':>7} {'sep/fus':>7} {'eag/fus':>7} "
        f"{'cmp/fus':>7}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in report["results"]:
        s, q = r["seconds"], r["ratios"]
        print(
            f"{r['label']:<32.32} {'fwd' if r['pass'] == 'forward' else 'fwd+bwd':<7} "
            f"{_fmt_ms(s['copy']):>7} {_fmt_ms(s['group_norm']):>7} {_fmt_ms(s['fused']):>7} "
            f"{_fmt_ms(s['separate']):>7} {_fmt_ms(s['torch_eager']):>7} "
            f"{_fmt_ms(s['torch_compile']):>7} | {_fmt_ratio(q['fused_vs_group_norm']):>7} "
            f"{_fmt_ratio(q['separate_vs_fused']):>7} {_fmt_ratio(q['torch_eager_vs_fused']):>7} "
            f"{_fmt_ratio(q['torch_compile_vs_fused']):>7}",
            file=out,
        )
    print(
        "\nms: median per call (copy: np.copyto of x; GN: group_norm alone; fused: residual and "
        "activation in group_norm;\nsepar.: group_norm, + r, activation kernel; eager / "
        "compile: PyTorch eager / torch.compile).\nfus/GN: fused time / GroupNorm alone; "
        "sep/fus, eag/fus, cmp/fus: their time / fused (above 1: fused is faster).",
        file=out,
    )


def run(
    *,
    quick: bool = False,
    repeat: int = 7,
    json_path: str | None = None,
    threads: int | None = None,
    with_torch: bool = True,
) -> int:
    """Measure, print the table, optionally write JSON; the exit status."""
    wait_policy_set = _set_wait_policy()  # first: before anything can start an OpenMP pool
    import os

    import numba

    if threads is not None:
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= limit:
            print(f"--threads must be between 1 and {limit} (NUMBA_NUM_THREADS)", file=sys.stderr)
            return 2
        numba.set_num_threads(threads)
    if repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    if not has_fused_api():
        print(
            "numba-gn bench --fused: this numba_gn's group_norm takes no residual/activation",
            file=sys.stderr,
        )
        return 2
    from numba_gn.cli import info

    sizes = QUICK_SIZES if quick else SIZES
    torch_missing = with_torch and importlib.util.find_spec("torch") is None
    use_torch = with_torch and not torch_missing
    n_cases = len(cases(sizes))
    progress = Progress(total=1 + len(_by_inputs(cases(sizes))) + n_cases * (1 + 2 * use_torch))
    progress.step("loading kernels and machine facts")
    facts = info.collect()
    facts["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")
    facts["OMP_WAIT_POLICY set by bench"] = str(bool(wait_policy_set))
    try:
        report = measure(
            sizes, repeat=repeat, quick=quick, with_torch=use_torch, progress=progress
        )
    except MismatchError as exc:
        progress.close()
        print(f"numba-gn bench --fused: {exc}; nothing timed is reported", file=sys.stderr)
        return 1
    progress.close()
    report.update(
        schema=SCHEMA,
        argv=sys.argv[1:],
        created=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        facts=facts,
        settings={
            "groups": GROUPS,
            "epsilon": EPSILON,
            "channels": CHANNELS,
            "sizes": [list(s) for s in sizes],
            "quick": quick,
            "conventions": CONVENTIONS,
        },
    )
    if torch_missing:
        report["notes"].append("PyTorch not installed: pip install torch to compare")
    print_table(report)
    if json_path:
        write_text(json_path, json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m numba_gn.cli.bench_fused`: the same as `numba-gn bench --fused`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny arrays, 2 samples")
    parser.add_argument("--repeat", type=int, default=7, help="timing samples per measurement")
    parser.add_argument("--threads", type=int, help="threads for Numba and PyTorch")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)
    return run(
        quick=args.quick,
        repeat=min(args.repeat, 2) if args.quick else args.repeat,
        json_path=args.json,
        threads=args.threads,
        with_torch=not args.no_torch,
    )


if __name__ == "__main__":  # pragma: no cover - manual runs
    sys.exit(main())
