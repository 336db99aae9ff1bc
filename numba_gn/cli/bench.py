"""`numba-gn bench`: speed and accuracy of numba_gn next to `np.copyto`, NumPy and PyTorch.

For each case (shape, channel axis, dtype; 32 groups, affine gamma/beta) and each pass (forward,
forward + backward) it measures the median time per call and reports:

* effective GB/s: ideal bytes / time, where the ideal is `2 * x.nbytes` for the forward (read
  `x`, write `y`) and `5 * x.nbytes` for forward + backward (the backward also reads `dy`
  and `x` and writes `dx`);
* `x copy`: time / the time of `np.copyto` of the same array into a preallocated one (the
  bandwidth floor: a forward cannot beat it);
* `vs torch` / `vs numpy`: the peer's time / numba_gn's time (above 1: numba_gn is faster),
  for `torch.nn.functional.group_norm` at the same thread count (if torch is installed) and
  plain NumPy in the input dtype (`numba_gn.numpy_reference`);
* the max abs error of each implementation at offset 1e4 (`x = 1e4 + N(0, 1)`) against a
  float64 NumPy reference computed from the same rounded input (`y` for the forward, `dx`
  for forward + backward).

The numba_gn times shown write into preallocated outputs (`out=`, like the copy); the ratios
to the peers use numba_gn's allocating calls, since the peers allocate their results too.

Phases: numba_gn, the copy and NumPy are timed first; PyTorch is timed in a separate Python
process, so that its OpenMP pool and Numba's never compete for the cores (an idle pool that
spins, as with `OMP_WAIT_POLICY=active`, would take a core from the other); accuracy last
(untimed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numba_gn._atomic import write_text

GROUPS = 32
EPSILON = 1e-3
OFFSET = 1e4
PASSES = ("forward", "forward+backward")
#: ideal bytes moved per pass, in units of `x.nbytes`
IDEAL_BYTES = {"forward": 2, "forward+backward": 5}
SCHEMA = 1
#: What the numbers mean (also stored in the JSON output).
CONVENTIONS = (
    "seconds: median per call. numba_gn: into preallocated outputs (out=); numba_gn_alloc: "
    "allocating its results, like the peers. gbps: ideal bytes / seconds, ideal = 2 * nbytes "
    "forward, 5 * nbytes forward+backward (copy: 2 * nbytes). x_copy: numba_gn / copy. "
    "torch_speedup, numpy_speedup: peer / numba_gn_alloc. torch is timed in its own process. "
    "max_abs_error: y (forward) or dx (forward+backward) at x = 1e4 + N(0, 1) against float64."
)


@dataclass(frozen=True)
class Case:
    """One input: a name, the shape and channel axis, the dtype and which series it belongs to."""

    label: str
    shape: tuple[int, ...]
    axis: int
    dtype: str = "float32"
    series: str = "targets"

    @property
    def layout(self) -> str:
        """`channels-last` (channel axis last) or `channels-first` (axis 1)."""
        return "channels-first" if self.axis == 1 else "channels-last"

    @property
    def nbytes(self) -> int:
        """Bytes of one array of this case."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


#: The speed targets (float32, G=32), float16, the tiny-call overhead and small-model batches.
TARGET_CASES = (
    Case("channels-last", (8, 64, 64, 256), -1),
    Case("channels-first", (8, 256, 64, 64), 1),
    Case("sequence (N, L, C)", (16, 1024, 512), -1),
    Case("one sample", (1, 512, 64, 64), 1),
    Case("large channels-last", (16, 64, 64, 512), -1),
    Case("large channels-first", (16, 512, 64, 64), 1),
    Case("tiny", (2, 8, 8, 32), -1),
    # a batch of 64 in a small CNN: 2 MiB, in the cache, where per-call costs show
    Case("small batch channels-last", (64, 16, 16, 32), -1),
    Case("small batch channels-first", (64, 32, 16, 16), 1),
    Case("float16 channels-last", (8, 64, 64, 256), -1, "float16"),
    Case("float16 channels-first", (8, 256, 64, 64), 1, "float16"),
)
#: `--quick`: tiny arrays only (what the tests run).
QUICK_CASES = (
    Case("tiny channels-last", (2, 8, 8, 32), -1),
    Case("tiny channels-first", (2, 32, 8, 8), 1),
    Case("tiny float16", (2, 8, 8, 32), -1, "float16"),
)
#: `--sweep`: (N, H=W) with C=256 from 64 KiB to 128 MiB of float32, in both layouts.
SWEEP_SIZES = ((1, 8), (1, 16), (4, 16), (4, 32), (4, 64), (16, 64), (32, 64))


def sweep_cases(sizes: Iterable[tuple[int, int]] = SWEEP_SIZES) -> tuple[Case, ...]:
    """The `--sweep` series: throughput against size for both layouts (float32)."""
    cases = []
    for n, s in sizes:
        cases.append(Case(f"sweep NHWC {n}x{s}x{s}x256", (n, s, s, 256), -1, series="sweep"))
        cases.append(Case(f"sweep NCHW {n}x256x{s}x{s}", (n, 256, s, s), 1, series="sweep"))
    return tuple(cases)


@dataclass
class Row:
    """The measurements of one case and pass."""

    case: Case
    pass_: str
    seconds: dict[str, float | None] = field(default_factory=dict)
    error: dict[str, float | None] = field(default_factory=dict)

    def ratios(self) -> dict[str, float | None]:
        """`x_copy` (time / copy time) and the peers' speed-ups over numba_gn."""
        s = self.seconds
        own = s.get("numba_gn")
        alloc = s.get("numba_gn_alloc") or own

        def div(a: float | None, b: float | None) -> float | None:
            return a / b if a and b else None

        return {
            "x_copy": div(own, s.get("copy")),
            "torch_speedup": div(s.get("torch"), alloc),
            "numpy_speedup": div(s.get("numpy"), alloc),
        }

    def gbps(self) -> dict[str, float | None]:
        """Effective GB/s of every timed implementation (the copy moves `2 * nbytes`)."""
        ideal = IDEAL_BYTES[self.pass_] * self.case.nbytes
        out: dict[str, float | None] = {}
        for name, t in self.seconds.items():
            moved = 2 * self.case.nbytes if name == "copy" else ideal
            out[name] = moved / t / 1e9 if t else None
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see `--json`)."""
        c = self.case
        return {
            "label": c.label,
            "series": c.series,
            "layout": c.layout,
            "shape": list(c.shape),
            "axis": c.axis,
            "dtype": c.dtype,
            "pass": self.pass_,
            "nbytes": c.nbytes,
            "ideal_bytes": IDEAL_BYTES[self.pass_] * c.nbytes,
            "seconds": self.seconds,
            "gbps": self.gbps(),
            "ratios": self.ratios(),
            "max_abs_error": self.error,
        }


class Progress:
    """A plain-text progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total: int, stream: Any = None, width: int = 24):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def step(self, text: str) -> None:
        """Announce the step about to run."""
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        if self.tty:
            filled = self.width * (self.done - 1) // max(self.total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {text:<48.48}")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {elapsed:.0f}s {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Clear the bar."""
        if self.tty:
            self.stream.write("\r" + " " * (self.width + 70) + "\r")
            self.stream.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bench` options."""
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument(
        "--threads", type=int, metavar="N", help="threads for Numba and PyTorch (default: Numba's)"
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="timing samples per measurement (median is shown)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny arrays and few samples: a smoke test"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="add a size sweep of both layouts (the data of docs/performance.md's plots)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument(
        "--models",
        action="store_true",
        help="instead: training step and inference of a small ResNet and UNet next to PyTorch "
        "(numba_gn.cli.bench_models)",
    )
    parser.add_argument(
        "--dask",
        action="store_true",
        help="instead: numba_gn.dask on chunked arrays, on several schedulers and out of core "
        "(numba_gn.cli.bench_dask; with --quick: tiny arrays)",
    )
    parser.add_argument(
        "--njit",
        action="store_true",
        help="instead: 1000 small calls from a user's @numba.njit loop vs a Python loop "
        "(numba_gn.cli.bench_njit)",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="instead: fused GroupNorm + residual + activation next to GroupNorm alone, the "
        "separate ops and PyTorch eager / torch.compile (numba_gn.cli.bench_fused)",
    )
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="also time import + first call with an empty kernel cache (compiles for seconds)",
    )


def _set_wait_policy() -> str | None:
    """Keep idle OpenMP threads spinning unless the user chose otherwise; returns what was set.

    GNU OpenMP puts idle worker threads to sleep after a short spin; on a busy, shared VM waking
    them again adds 0.1 ms to several ms to a call, which then measures the scheduler instead of
    the kernel. libgomp reads the variable when it is loaded, i.e. at the first parallel launch
    (Numba) or at `import torch`, so this runs before either.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    os.environ["OMP_WAIT_POLICY"] = "active"
    return "active"


def run(args: argparse.Namespace) -> int:
    """Measure every case, print the tables, optionally write JSON; 0 on success."""
    if args.fused:
        from numba_gn.cli import bench_fused

        return bench_fused.run(
            quick=args.quick, repeat=min(args.repeat, 2) if args.quick else args.repeat,
            json_path=args.json, threads=args.threads, with_torch=not args.no_torch,
        )
    if args.njit:
        from numba_gn.cli import bench_njit

        repeat = min(args.repeat, 2) if args.quick else args.repeat
        return bench_njit.run(repeat, json_path=args.json)
    if args.dask:
        from numba_gn.cli import bench_dask

        return bench_dask.run(
            "tiny" if args.quick else "full", min(args.repeat, 2) if args.quick else args.repeat,
            args.json, threads=args.threads,
        )
    if args.models:
        from numba_gn.cli import bench_models

        model_rows = bench_models.measure(
            steps=3 if args.quick else 10, repeat=min(args.repeat, 2) if args.quick else
            args.repeat, threads=args.threads or 2, with_torch=not args.no_torch,
            batch=8 if args.quick else 64,
        )
        bench_models.print_table(model_rows)
        if args.json:
            write_text(args.json, json.dumps(model_rows, indent=2))
        return 0
    wait_policy_set = _set_wait_policy()  # first: before anything can start an OpenMP pool
    import numba

    if args.threads is not None:
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= args.threads <= limit:
            print(f"--threads must be between 1 and {limit} (NUMBA_NUM_THREADS)", file=sys.stderr)
            return 2
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()

    from numba_gn.cli import info

    quick = args.quick
    cases = QUICK_CASES if quick else TARGET_CASES
    if args.sweep:
        cases = cases + sweep_cases(SWEEP_SIZES[:2] if quick else SWEEP_SIZES)
    repeat = max(1, min(args.repeat, 3) if quick else args.repeat)
    timer = _Timer(repeat=repeat, min_time=0.002 if quick else 0.02, budget=0.3 if quick else 4.0)
    # Only looked up here: torch is imported in its own phase, after numba_gn's timings.
    torch_missing = not args.no_torch and importlib.util.find_spec("torch") is None
    use_torch = not args.no_torch and not torch_missing

    rows = [Row(c, p) for c in cases for p in PASSES]
    with_errors = [c for c in cases if c.series == "targets"]
    progress = Progress(
        total=1 + len(rows) * (2 if use_torch else 1) + len(with_errors) + (0 if quick else 1)
    )
    progress.step("loading kernels and machine facts")
    facts = info.collect()  # also warms the float32/float64 kernels and the threading layer
    facts["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")
    facts["OMP_WAIT_POLICY set by bench"] = str(bool(wait_policy_set))

    by_case: dict[Case, dict[str, Row]] = {c: {} for c in cases}
    for row in rows:
        by_case[row.case][row.pass_] = row

    for case in cases:  # phase 1: numba_gn, the copy floor, NumPy
        data = _Data(case)
        t_copy = None
        for pass_, row in by_case[case].items():
            progress.step(f"numba_gn+numpy {pass_} {case.label}")
            if t_copy is None:
                t_copy = timer(data.copy)
            row.seconds["copy"] = t_copy
            if pass_ == "forward":
                row.seconds["numba_gn"] = timer(data.ngn_forward_out)
                row.seconds["numba_gn_alloc"] = timer(data.ngn_forward)
                row.seconds["numpy"] = timer(data.numpy_forward)
            else:
                row.seconds["numba_gn"] = timer(data.ngn_forward_backward_out)
                row.seconds["numba_gn_alloc"] = timer(data.ngn_forward_backward)
                row.seconds["numpy"] = timer(data.numpy_forward_backward)
        del data

    torch_version = None
    if use_torch:  # phase 2: PyTorch at the same thread count, in its own process
        torch_version = _time_torch_elsewhere(cases, threads, timer, by_case, progress)
    facts["torch"] = torch_version or "not used"
    facts["torch threads"] = str(threads) if torch_version else "-"

    for case in with_errors:  # phase 3: accuracy at offset 1e4 (untimed)
        progress.step(f"accuracy {case.label}")
        errors = _Data(case).errors(with_torch=torch_version is not None)
        for pass_, row in by_case[case].items():
            row.error = errors[pass_]

    startup = None
    if not quick:
        progress.step("import + first call in a fresh interpreter")
        startup = measure_startup(cold=args.cold_start)
    progress.close()

    _print_tables(rows, facts, startup, note=TORCH_MISSING if torch_missing else None)
    if args.json:
        report = {
            "schema": SCHEMA,
            "argv": sys.argv[1:],
            "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "facts": facts,
            "settings": {
                "groups": GROUPS,
                "epsilon": EPSILON,
                "offset": OFFSET,
                "threads": threads,
                "repeat": repeat,
                "quick": quick,
                "ideal_bytes_per_pass": IDEAL_BYTES,
                "conventions": CONVENTIONS,
            },
            "results": [r.to_json() for r in rows],
            "startup": startup,
        }
        write_text(args.json, json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _time_torch_elsewhere(
    cases: Iterable[Case],
    threads: int,
    timer: _Timer,
    by_case: dict[Case, dict[str, Row]],
    progress: Progress,
) -> str:
    """Time PyTorch on every case in a fresh interpreter (`torch_worker`); its version.

    The worker reports each step as a JSON line, so the progress bar keeps moving.
    """
    cases = list(cases)
    request = {
        "threads": threads,
        "timer": [timer.repeat, timer.min_time, timer.budget],
        "cases": [[c.label, list(c.shape), c.axis, c.dtype, c.series] for c in cases],
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from numba_gn.cli.bench import torch_worker; torch_worker()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(request))
    proc.stdin.close()
    by_label = {c.label: c for c in cases}
    version = ""
    for line in proc.stdout:
        msg = json.loads(line)
        if "step" in msg:
            progress.step(msg["step"])
        elif "version" in msg:
            version = msg["version"]
        else:
            by_case[by_label[msg["label"]]][msg["pass"]].seconds["torch"] = msg["seconds"]
    if proc.wait() != 0:
        raise RuntimeError("timing PyTorch in a separate process failed (see its error above)")
    return version


def torch_worker() -> None:
    """Time PyTorch on the cases read as JSON from stdin; report JSON lines on stdout.

    Runs in its own interpreter (see `_time_torch_elsewhere`) on the same inputs
    (`_Data`) with the same timer settings as the numba_gn measurements.
    """
    request = json.load(sys.stdin)
    from numba_gn import _peers

    torch = _peers.import_torch()
    if torch is None:
        raise SystemExit("numba-gn bench: PyTorch cannot be imported in the timing process")
    torch.set_num_threads(request["threads"])
    timer = _Timer(*request["timer"])

    def say(**msg: Any) -> None:
        print(json.dumps(msg), flush=True)

    say(version=torch.__version__)
    for label, shape, axis, dtype, series in request["cases"]:
        gn = _Data(Case(label, tuple(shape), axis, dtype, series)).torch()
        for pass_ in PASSES:
            say(step=f"torch {pass_} {label}")
            fn = gn.forward if pass_ == "forward" else gn.forward_backward
            say(label=label, seconds=timer(fn), **{"pass": pass_})
        del gn


class _Timer:
    """Median seconds per call, with fewer samples for slow calls (at most ~`budget` s each)."""

    def __init__(self, repeat: int, min_time: float, budget: float):
        self.repeat, self.min_time, self.budget = repeat, min_time, budget

    def __call__(self, fn: Callable[[], object]) -> float:
        from numba_gn import _timing

        fn()  # compile / load / fault in memory outside the measurement
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        if once * self.repeat <= self.budget:
            return _timing.median_seconds(fn, repeat=self.repeat, min_time=self.min_time)
        # Slow call (large arrays, NumPy): one call per sample, fewer samples (at least 3).
        repeat = max(3, min(self.repeat, int(self.budget / once)))
        return _timing.median_of_runs(fn, repeat, warm=False)


class _Data:
    """Seeded input, gradient and parameters of a case at offset 1e4, and the calls on them."""

    def __init__(self, case: Case):
        from numba_gn.functional import group_norm, group_norm_backward

        self.case = case
        self._gn, self._gnb = group_norm, group_norm_backward
        rng = np.random.default_rng([2024, *case.shape, case.axis % len(case.shape)])
        dt = np.dtype(case.dtype)
        # The noise is drawn in float32 (float64 only for float64 cases) to keep large cases fast.
        draw = np.float64 if dt == np.float64 else np.float32
        self.x = (rng.standard_normal(case.shape, dtype=draw) + draw(OFFSET)).astype(dt)
        self.dy = rng.standard_normal(case.shape, dtype=draw).astype(dt)
        c = case.shape[case.axis]
        pdt = np.float32 if dt == np.float16 else dt
        self.gamma = (1 + 0.1 * rng.standard_normal(c)).astype(pdt)
        self.beta = (0.1 * rng.standard_normal(c)).astype(pdt)
        self.out = np.empty_like(self.x)
        self.out.fill(0)  # fault the pages in now, not in the first timed call
        self.dx_out = np.empty_like(self.x)
        self.dx_out.fill(0)
        self.copy_out = np.empty_like(self.x)
        self.copy_out.fill(0)

    def copy(self) -> None:
        np.copyto(self.copy_out, self.x)

    def ngn_forward_out(self) -> Any:
        return self._gn(
            self.x,
            GROUPS,
            self.gamma,
            self.beta,
            axis=self.case.axis,
            epsilon=EPSILON,
            out=self.out,
        )

    def ngn_forward(self) -> Any:
        return self._gn(self.x, GROUPS, self.gamma, self.beta, axis=self.case.axis, epsilon=EPSILON)

    def ngn_forward_backward(self) -> Any:
        axis = self.case.axis
        y, mean, rstd = self._gn(
            self.x, GROUPS, self.gamma, self.beta, axis=axis, epsilon=EPSILON, return_stats=True
        )
        return self._gnb(self.dy, self.x, mean, rstd, GROUPS, self.gamma, axis=axis)

    def ngn_forward_backward_out(self) -> Any:
        axis = self.case.axis
        _, mean, rstd = self._gn(
            self.x,
            GROUPS,
            self.gamma,
            self.beta,
            axis=axis,
            epsilon=EPSILON,
            out=self.out,
            return_stats=True,
        )
        return self._gnb(
            self.dy, self.x, mean, rstd, GROUPS, self.gamma, axis=axis, out=self.dx_out
        )

    def numpy_forward(self) -> Any:
        from numba_gn.numpy_reference import group_norm_numpy

        return group_norm_numpy(
            self.x, GROUPS, self.gamma, self.beta, axis=self.case.axis, epsilon=EPSILON, dtype=None
        )

    def numpy_forward_backward(self, dtype: Any = None) -> Any:
        from numba_gn._peers import numpy_forward_backward

        return numpy_forward_backward(
            self.x,
            self.dy,
            GROUPS,
            self.gamma,
            self.beta,
            axis=self.case.axis,
            epsilon=EPSILON,
            dtype=dtype,
        )

    def torch(self) -> Any:
        from numba_gn._peers import TorchGroupNorm

        return TorchGroupNorm(
            self.x,
            GROUPS,
            self.gamma,
            self.beta,
            axis=self.case.axis,
            epsilon=EPSILON,
            dy=self.dy,
        )

    def errors(self, with_torch: bool) -> dict[str, dict[str, float | None]]:
        """Max abs error of `y` (forward) and `dx` (forward + backward) per implementation."""
        y64, dx64, _, _ = self.numpy_forward_backward(dtype=np.float64)

        def err(a: np.ndarray, ref: np.ndarray) -> float:
            return float(np.max(np.abs(a.astype(np.float64) - ref)))

        fwd: dict[str, float | None] = {
            "numba_gn": err(self.ngn_forward(), y64),
            "numpy": err(self.numpy_forward(), y64),
        }
        bwd: dict[str, float | None] = {
            "numba_gn": err(self.ngn_forward_backward()[0], dx64),
            "numpy": err(self.numpy_forward_backward()[1], dx64),
        }
        if with_torch:
            gn = self.torch()
            fwd["torch"] = err(gn.to_numpy(gn.forward()), y64)
            bwd["torch"] = err(gn.to_numpy(gn.forward_backward()[0]), dx64)
        return {"forward": fwd, "forward+backward": bwd}


_STARTUP_CODE = """
import time
t0 = time.perf_counter()
import numpy as np
import numba_gn
t1 = time.perf_counter()
x = np.linspace(-1.0, 1.0, 8 * 32 * 32 * 64, dtype=np.float32).reshape(8, 32, 32, 64)
numba_gn.group_norm(x, 32)
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""


# The floor any Numba library starts from: import Numba and make the first call of one trivial
# cached parallel function on the same array (Numba sets up its typing registries and threads).
_FLOOR_MODULE = """
import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def double(x):
    y = np.empty_like(x)
    for i in numba.prange(x.size):
        y[i] = 2 * x[i]
    return y
"""

_FLOOR_CODE = """
import time
t0 = time.perf_counter()
import numpy as np
import numba_floor
t1 = time.perf_counter()
x = np.linspace(-1.0, 1.0, 8 * 32 * 32 * 64, dtype=np.float32)
numba_floor.double(x)
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""


def measure_startup(cold: bool = False, runs: int = 3) -> dict[str, float]:
    """Seconds for `import numba_gn` and import + first call, in fresh interpreters.

    Warm: the on-disk kernel cache is populated (one unmeasured run first), median of `runs`;
    `numba_floor_s` is the same for a trivial cached Numba function (what any Numba library
    costs at start-up). Cold (`cold=True`): one run with `NUMBA_CACHE_DIR` at an empty
    temporary folder, so the kernels the call needs are compiled.
    """
    import tempfile

    def once(code: str, env: dict[str, str] | None = None) -> tuple[float, float]:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {})},
        ).stdout.split()
        return float(out[0]), float(out[1])

    once(_STARTUP_CODE)
    warm = [once(_STARTUP_CODE) for _ in range(runs)]
    result = {
        "warm_import_s": statistics.median(t[0] for t in warm),
        "warm_first_call_s": statistics.median(t[1] for t in warm),
    }
    with tempfile.TemporaryDirectory(prefix="numba_gn_floor_") as d:
        with open(os.path.join(d, "numba_floor.py"), "w") as f:
            f.write(_FLOOR_MODULE)
        env = {"PYTHONPATH": d, "NUMBA_CACHE_DIR": os.path.join(d, "cache")}
        once(_FLOOR_CODE, env)  # compiles into the cache
        result["numba_floor_s"] = statistics.median(
            once(_FLOOR_CODE, env)[1] for _ in range(runs)
        )
    if cold:
        with tempfile.TemporaryDirectory(prefix="numba_gn_cold_") as d:
            imp, first = once(_STARTUP_CODE, {"NUMBA_CACHE_DIR": d})
        result.update(cold_import_s=imp, cold_first_call_s=first)
    return result


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def _fmt_err(e: float | None) -> str:
    return "-" if e is None else f"{e:.1e}"


#: Printed once, under the machine facts, when the PyTorch peer cannot be timed for lack of it
#: (its cells then read "-"); `--no-torch` leaves it out on purpose and prints nothing.
TORCH_MISSING = "PyTorch not installed: pip install torch to compare"


def _print_tables(
    rows: list[Row], facts: dict[str, str], startup: dict | None, note: str | None = None
) -> None:
    print(
        f"numba_gn {facts['numba_gn']}, numba {facts['numba']}, numpy {facts['numpy']}, "
        f"torch {facts['torch']}; {facts['threads']} threads ({facts['threading layer']}) on "
        f"{facts['cpus']} CPUs ({facts['cpu']}); OMP_WAIT_POLICY={facts['OMP_WAIT_POLICY']}"
    )
    if note:
        print(note)
    print()
    head = (
        f"{'case':<24} {'shape':<18} {'dtype':<7} {'pass':<8} {'time':>10} {'GB/s':>6} "
        f"{'x copy':>7} {'vs torch':>8} {'vs numpy':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r.ratios()
        print(
            f"{r.case.label:<24.24} {str(r.case.shape):<18} {r.case.dtype:<7} "
            f"{'fwd' if r.pass_ == 'forward' else 'fwd+bwd':<8} "
            f"{_fmt_time(r.seconds.get('numba_gn')):>10} {r.gbps().get('numba_gn') or 0:6.1f} "
            f"{_fmt_ratio(ratio['x_copy']):>7} {_fmt_ratio(ratio['torch_speedup']):>8} "
            f"{_fmt_ratio(ratio['numpy_speedup']):>8}"
        )
    print(
        "\ntime: median per call (forward into a preallocated out=); GB/s: ideal bytes (2x the "
        "array forward, 5x forward+backward) / time;\nx copy: time / np.copyto of the same "
        "array; vs torch / vs numpy: their time / numba_gn's allocating call (>1: numba_gn "
        "is faster)."
    )
    acc = [r for r in rows if r.error]
    if acc:
        print(f"\nmax abs error at offset {OFFSET:g} against a float64 reference (y; dx)")
        head = f"{'case':<24} {'dtype':<7} {'pass':<8} {'numba_gn':>9} {'torch':>9} {'numpy':>9}"
        print(head)
        print("-" * len(head))
        for r in acc:
            e = r.error
            print(
                f"{r.case.label:<24.24} {r.case.dtype:<7} "
                f"{'fwd' if r.pass_ == 'forward' else 'fwd+bwd':<8} "
                f"{_fmt_err(e.get('numba_gn')):>9} {_fmt_err(e.get('torch')):>9} "
                f"{_fmt_err(e.get('numpy')):>9}"
            )
    if startup:
        line = (
            f"\nfresh interpreter, warm kernel cache: import {startup['warm_import_s']:.2f} s, "
            f"import + first call {startup['warm_first_call_s']:.2f} s "
            f"(a trivial cached Numba function: {startup['numba_floor_s']:.2f} s)"
        )
        if "cold_first_call_s" in startup:
            line += f"; empty cache (compiling): {startup['cold_first_call_s']:.2f} s"
        print(line)
