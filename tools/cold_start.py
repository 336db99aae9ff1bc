"""First-call times with an empty kernel cache: what a new install, worker or CI job waits.

Each measurement runs in a fresh process with a new, empty `NUMBA_CACHE_DIR`:

* the first `group_norm` and the first `group_norm_backward` on a channels-last and a
  channels-first float32 batch of 8x32x32x64 (the parallel kernels) and of 2x8x8x32 (serial);
* `numba-gn warmup --dtype float32 --jobs 2` (every float32 kernel);
* with a warm cache, `import numba_gn` plus a first call, next to Numba's own floor (import
  Numba and call one trivial cached parallel function), as `numba-gn bench` measures them.

    python tools/cold_start.py               # medians of 3 runs
    python tools/cold_start.py --repeat 1 --json cold.json

Run it on an otherwise idle machine: compiling is single-threaded, and a busy core stretches it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from numba_gn.cli.bench import measure_startup

_FIRST_CALLS = r"""
import sys, time, json
t0 = time.perf_counter()
import numpy as np
import numba_gn
t1 = time.perf_counter()
shape, axis = {"cl": ((8, 32, 32, 64), -1), "cf": ((8, 64, 32, 32), 1),
               "cl-small": ((2, 8, 8, 32), -1), "cf-small": ((2, 32, 8, 8), 1)}[sys.argv[1]]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
t2 = time.perf_counter()
y, m, r = numba_gn.group_norm(x, 8, axis=axis, return_stats=True)
t3 = time.perf_counter()
numba_gn.group_norm_backward(y, x, m, r, 8, axis=axis)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "forward": t3 - t2, "backward": t4 - t3}))
"""

def _run(code: list[str], cache: str) -> tuple[dict, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    out = subprocess.run(code, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), wall


def main() -> int:
    """Measure, print a table of medians, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    py = sys.executable
    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    for _ in range(args.repeat):
        for layout in ("cl", "cf", "cl-small", "cf-small"):
            with tempfile.TemporaryDirectory() as cache:
                report, _ = _run([py, "-c", _FIRST_CALLS, layout], cache)
            add(f"{layout} first forward", report["forward"])
            add(f"{layout} first forward+backward", report["forward"] + report["backward"])
        with tempfile.TemporaryDirectory() as cache:
            warm = [py, "-m", "numba_gn", "warmup", "--dtype", "float32", "--jobs", "2", "--json"]
            add("warmup float32 --jobs 2", _run(warm, cache)[1])
        # The warm start next to Numba's own floor, as `numba-gn bench` measures them.
        startup = measure_startup(runs=1)
        add("warm cache: import + first call", startup["warm_first_call_s"])
        add("Numba's floor: import + cached parallel call", startup["numba_floor_s"])
    width = max(map(len, results))
    for key, values in results.items():
        print(f"{key:<{width}}  {statistics.median(values):7.2f} s   (runs: "
              + ", ".join(f"{v:.2f}" for v in values) + ")")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
