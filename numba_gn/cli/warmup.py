"""`numba-gn warmup`: compile (or load) kernels now, in parallel processes, with progress.

Run it where the kernel cache is writable (after `pip install`, in a container image's build
step, before starting workers) so that later processes load every kernel instead of compiling
it. `--jobs N` spreads the compilation over N processes writing into the same cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from numba_gn._warmup import Report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`warmup` options."""
    from numba_gn._warmup import ACTIVATIONS, DEFAULT_LAYOUTS, DTYPES, LAYOUTS

    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=DTYPES,
        default=["float32", "float64"],
        help="dtypes to compile for (default: float32 float64)",
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=LAYOUTS,
        default=list(DEFAULT_LAYOUTS),
        help="kernel families to compile (default: all but dask, which needs Dask installed)",
    )
    parser.add_argument(
        "--activation",
        nargs="+",
        choices=ACTIVATIONS,
        default=[],
        help="also the fused GroupNorm + activation kernels for these activations, with and "
        "without a residual (what models run; gelu_tanh: gelu with approximate=True)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes compiling at once (default: 1)"
    )
    parser.add_argument(
        "--serial-only",
        action="store_true",
        help="skip the parallel kernels (for processes that never use more than one thread)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


class _Progress:
    """A bar redrawn in place on a terminal, one line per task elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.dynamic = bool(getattr(stream, "isatty", lambda: False)())
        self.lock = threading.Lock()

    def step(self, done: int, total: int, label: str, report: Report) -> None:
        """Task `done` of `total` finished, doing what `report` says."""
        with self.lock:
            compiled = len(report.compiled)
            what = f"compiled {compiled}" if compiled else "loaded"
            text = f"[{done}/{total}] {label}: {what} ({report.seconds:.1f} s)"
            if self.dynamic:
                width = 24
                filled = width * done // total
                bar = "=" * filled + "." * (width - filled)
                self.stream.write(f"\r[{bar}] {text}\x1b[K")
                if done == total:
                    self.stream.write("\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    """Warm the cache; print a summary. Exit status 1 if a child process failed."""
    from numba_gn import _cache, _warmup

    if args.jobs < 1:
        print("numba-gn warmup: --jobs must be at least 1", file=sys.stderr)
        return 2
    todo = _warmup.tasks(
        args.dtype, args.layout, parallel=not args.serial_only, activations=args.activation
    )
    status = _cache.status()
    where = status["path"] or "none (kernels are compiled in memory only)"
    if not args.json:
        print(f"kernel cache: {where}" + ("" if status["writable"] else " (read-only)"))
    progress = _Progress(sys.stderr if args.json else sys.stdout)
    start = time.perf_counter()
    if args.jobs == 1:
        report = _warmup.run_tasks(todo, progress.step)
        failed = False
    else:
        report, failed = _warmup.run_tasks_in_processes(todo, args.jobs, progress.step)
    wall = time.perf_counter() - start
    summary = {
        "tasks": len(todo),
        "compiled": len(report.compiled),
        "loaded": len(report.loaded),
        "seconds": round(wall, 2),
        "jobs": args.jobs,
        "cache": report.cache or status["path"],
        "cache_writable": status["writable"],
        "failed": failed,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['compiled']} kernel specialisations compiled, {summary['loaded']} loaded "
            f"from the cache, in {wall:.1f} s with {args.jobs} process(es)."
        )
        if not status["writable"]:
            print(
                "The cache folder is not writable: what was compiled is not kept. Set "
                "NUMBA_CACHE_DIR to a writable folder, or run this where the folder is writable."
            )
    return 1 if failed else 0
