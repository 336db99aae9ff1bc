"""How much slower numba_gn gets when another process keeps a core busy, per threading layer.

For every Numba threading layer that loads here, a child process times the ``numba-gn bench
--sweep`` cases (forward, and forward + backward into preallocated outputs) on a quiet machine,
then again while one neighbour process spins on a core, and prints the ratio busy / quiet of
the medians. numba_gn's default settings are used: nothing is set but the layer.

    python tools/shared_cores.py                  # every layer that loads
    python tools/shared_cores.py --layer tbb omp  # some of them
    python tools/shared_cores.py --json out.json

Run it on an otherwise idle machine (the 'quiet' times are the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_SPIN = "while True:\n    pass\n"


def _measure(budget: float) -> dict[str, list[float]]:
    """Median seconds per sweep case: [forward, forward + backward]."""
    import numpy as np

    import numba_gn
    from numba_gn.cli.bench import sweep_cases

    out = {}
    for case in sweep_cases():
        x = np.random.default_rng(0).standard_normal(case.shape).astype(np.float32)
        y = np.empty_like(x)
        dx = np.empty_like(x)
        _, mean, rstd = numba_gn.group_norm(x, 32, axis=case.axis, return_stats=True)

        def forward(x=x, y=y, case=case):
            numba_gn.group_norm(x, 32, axis=case.axis, out=y)

        def both(x=x, y=y, dx=dx, case=case, mean=mean, rstd=rstd):
            numba_gn.group_norm(x, 32, axis=case.axis, out=y)
            numba_gn.group_norm_backward(y, x, mean, rstd, 32, axis=case.axis, out=dx)

        times = []
        for fn in (forward, both):
            fn()
            samples = []
            start = time.perf_counter()
            while len(samples) < 5 or (time.perf_counter() - start < budget and len(samples) < 400):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            times.append(statistics.median(samples))
        out[case.label] = times
    return out


def _child(budget: float) -> None:
    import numba

    quiet = _measure(budget)
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
    try:
        time.sleep(0.5)  # let the scheduler settle with the neighbour running
        busy = _measure(budget)
    finally:
        spinner.kill()
        spinner.wait()
    print(
        json.dumps(
            {
                "layer": numba.threading_layer(),
                "threads": numba.get_num_threads(),
                "quiet": quiet,
                "busy": busy,
            }
        )
    )


def main() -> int:
    """Run one child per layer and print the table of busy / quiet ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", nargs="+", default=["tbb", "omp", "workqueue"])
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per measurement")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.budget)
        return 0
    results = []
    for layer in args.layer:
        env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--budget", str(args.budget)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{layer}: failed ({last})")
            continue
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(report)
        print(f"\nlayer {report['layer']}, {report['threads']} threads: busy / quiet (medians)")
        print(f"{'case':<32} {'fwd quiet':>10} {'fwd busy':>10} {'ratio':>6} "
              f"{'f+b quiet':>10} {'f+b busy':>10} {'ratio':>6}")
        worst = 0.0
        for name, (fq, bq) in report["quiet"].items():
            fb, bb = report["busy"][name]
            worst = max(worst, fb / fq, bb / bq)
            print(f"{name:<32} {fq * 1e3:>8.3f}ms {fb * 1e3:>8.3f}ms {fb / fq:>6.2f} "
                  f"{bq * 1e3:>8.3f}ms {bb * 1e3:>8.3f}ms {bb / bq:>6.2f}")
        print(f"worst ratio: {worst:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
