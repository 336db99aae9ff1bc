"""`numba-gn warmup`: compile (or load) kernels now, in parallel processes, with progress.

Run it where the kernel cache is writable (after `pip install`, in a container image's build
step, before starting workers) so that later processes load every kernel instead of compiling
it. `--jobs N` spreads the compilation over N processes writing into the same cache.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import TextIO

_CHILD = (
    "import json, sys\n"
    "from numba_gn import _warmup\n"
    "todo = [(d, _warmup.Case(*c)) for d, c in json.loads(sys.argv[1])]\n"
    "def say(done, total, label, step):\n"
    "    print(json.dumps({'label': label, **step.as_dict()}), flush=True)\n"
    "_warmup.run_tasks(todo, say)\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`warmup` options."""
    from numba_gn._warmup import DTYPES, LAYOUTS

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
        default=list(LAYOUTS),
        help="kernel families to compile (default: all)",
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

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.start = time.perf_counter()
        self.dynamic = bool(getattr(stream, "isatty", lambda: False)())
        self.lock = threading.Lock()

    def step(self, label: str, compiled: int, seconds: float) -> None:
        with self.lock:
            self.done += 1
            what = f"compiled {compiled}" if compiled else "loaded"
            text = f"[{self.done}/{self.total}] {label}: {what} ({seconds:.1f} s)"
            if self.dynamic:
                width = 24
                filled = width * self.done // self.total
                bar = "=" * filled + "." * (width - filled)
                self.stream.write(f"\r[{bar}] {text}\x1b[K")
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


def _run_jobs(todo: list, jobs: int, progress: _Progress):
    """Split `todo` round-robin over `jobs` child processes and gather their reports."""
    from dataclasses import astuple

    from numba_gn._warmup import Report

    report = Report()
    shares = [todo[i::jobs] for i in range(jobs)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps([(d, astuple(c)) for d, c in share])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
        if share
    ]
    lock = threading.Lock()

    def read(child: subprocess.Popen) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            try:
                step = json.loads(line)
            except ValueError:
                continue
            with lock:
                report.compiled += step["compiled"]
                report.loaded += step["loaded"]
                report.cache = step["cache"]
            progress.step(step["label"], len(step["compiled"]), step["seconds"])

    readers = [threading.Thread(target=read, args=(c,)) for c in children]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    failed = [c.wait() for c in children]
    return report, any(failed)


def run(args: argparse.Namespace) -> int:
    """Warm the cache; print a summary. Exit status 1 if a child process failed."""
    from numba_gn import _cache, _warmup

    if args.jobs < 1:
        print("numba-gn warmup: --jobs must be at least 1", file=sys.stderr)
        return 2
    todo = _warmup.tasks(args.dtype, args.layout, parallel=not args.serial_only)
    status = _cache.status()
    where = status["path"] or "none (kernels are compiled in memory only)"
    if not args.json:
        print(f"kernel cache: {where}" + ("" if status["writable"] else " (read-only)"))
    progress = _Progress(len(todo), sys.stderr if args.json else sys.stdout)
    start = time.perf_counter()
    if args.jobs == 1:

        def say(done: int, total: int, label: str, step: _warmup.Report) -> None:
            progress.step(label, len(step.compiled), step.seconds)

        report = _warmup.run_tasks(todo, say)
        failed = False
    else:
        report, failed = _run_jobs(todo, args.jobs, progress)
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
