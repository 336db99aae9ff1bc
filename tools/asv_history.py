"""Read asv's stored results offline: per benchmark, a table of commits x parameters.

asv keeps every saved run as JSON under `asv_bench/.asv/results/<machine>/` (one file per
commit and environment); `asv publish` turns them into an HTML site to view in a browser. This
script reads the same files and prints them in the terminal, with no browser, server or network:

    python tools/asv_history.py                             # every benchmark, last 8 commits
    python tools/asv_history.py --bench GroupNormForward    # a regex on the name, as asv's
    python tools/asv_history.py --last 20 --plot hist.png   # also plots (needs matplotlib)

Rows are the benchmark's parameter combinations, columns the commits in commit-date order
(oldest first), cells the stored result: the median time for `time_` benchmarks, bytes for
`peakmem_`, the value for `track_`. `n/a`: skipped, failed or not run for that commit. Save
results with `asv run --python=same --set-commit-hash=$(git rev-parse HEAD)` (see the README's
*Benchmarks* section); `--quick` and `--dry-run` runs save nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "asv_bench" / ".asv" / "results"
#: Files in the results folder that are not runs.
_NOT_RUNS = {"machine.json", "benchmarks.json"}


@dataclass
class Run:
    """One results file: the benchmarks of one commit, in one environment, on one machine."""

    machine: str
    commit: str
    date: int  # the commit's date, in milliseconds since the epoch (asv's "date")
    env_name: str
    #: benchmark name -> (parameter value lists, results in itertools.product order)
    results: dict[str, tuple[list[list[str]], list[float | None]]] = field(default_factory=dict)


@dataclass
class History:
    """One benchmark on one machine: its parameter rows and a value per (row, run)."""

    name: str
    machine: str
    param_names: list[str]
    unit: str
    rows: list[tuple[str, ...]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    values: dict[tuple[tuple[str, ...], int], float | None] = field(default_factory=dict)


def load_runs(results_dir: Path) -> list[Run]:
    """Every run stored under `results_dir` (asv's results format, version 2)."""
    runs = []
    for path in sorted(results_dir.glob("*/*.json")):
        if path.name in _NOT_RUNS:
            continue
        data = json.loads(path.read_text("utf-8"))
        if data.get("version") != 2 or "results" not in data:
            print(f"skipping {path}: not an asv results file of version 2", file=sys.stderr)
            continue
        columns = data["result_columns"]
        i_result, i_params = columns.index("result"), columns.index("params")
        run = Run(
            machine=data.get("params", {}).get("machine", path.parent.name),
            commit=data["commit_hash"],
            date=int(data.get("date") or 0),
            env_name=data.get("env_name", ""),
        )
        for name, row in data["results"].items():
            result = row[i_result] if len(row) > i_result else None
            params = row[i_params] if len(row) > i_params else []
            run.results[name] = (params or [], list(result) if result is not None else [])
        runs.append(run)
    return runs


def load_benchmarks(results_dir: Path) -> dict[str, dict]:
    """The `benchmarks.json` asv writes (parameter names, units), or {} when it is missing."""
    path = results_dir / "benchmarks.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text("utf-8"))
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _default_unit(name: str) -> str:
    method = name.rsplit(".", 1)[-1]
    if method.startswith(("time_", "timeraw_")):
        return "seconds"
    if method.startswith(("peakmem_", "mem_")):
        return "bytes"
    return "unitless"


def histories(
    runs: Sequence[Run],
    benchmarks: dict[str, dict] | None = None,
    bench: str | None = None,
    machine: str | None = None,
    last: int | None = None,
) -> list[History]:
    """Per (benchmark, machine), the stored values of the `last` commits, oldest first."""
    benchmarks = benchmarks or {}
    pattern = re.compile(bench) if bench else None
    out: dict[tuple[str, str], History] = {}
    ordered = sorted(runs, key=lambda r: (r.date, r.commit, r.env_name))
    for run in ordered:
        if machine is not None and run.machine != machine:
            continue
        for name, (params, result) in run.results.items():
            if pattern is not None and not pattern.search(name):
                continue
            meta = benchmarks.get(name, {})
            key = (name, run.machine)
            if key not in out:
                names = list(meta.get("param_names") or [])
                out[key] = History(
                    name=name,
                    machine=run.machine,
                    param_names=names or [f"param{i + 1}" for i in range(len(params))],
                    unit=meta.get("unit") or _default_unit(name),
                )
            hist = out[key]
            hist.runs.append(run)
            combos = list(itertools.product(*params)) if params else [()]
            for combo, value in zip(combos, result, strict=False):
                if combo not in hist.rows:
                    hist.rows.append(combo)
                hist.values[combo, len(hist.runs) - 1] = _number(value)
    result = sorted(out.values(), key=lambda h: (h.name, h.machine))
    if last is not None:
        for hist in result:
            drop = max(0, len(hist.runs) - last)
            hist.values = {(c, i - drop): v for (c, i), v in hist.values.items() if i >= drop}
            hist.runs = hist.runs[drop:]
            kept = {c for c, _ in hist.values}
            hist.rows = [c for c in hist.rows if c in kept]
    return result


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None  # null (skipped or failed) or NaN


def format_value(value: float | None, unit: str) -> str:
    """A stored value for a table cell: `9.30us`, `1.2MiB`, `n/a`."""
    if value is None:
        return "n/a"
    if unit == "seconds":
        for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g}{suffix}"
    if unit == "bytes":
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.0f}B"
    return f"{value:.4g}"


def _show_param(value: str) -> str:
    """A stored parameter (its repr) as asv shows it: a string without its quotes."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _column_labels(runs: Sequence[Run]) -> list[str]:
    commits = [r.commit[:8] for r in runs]
    labels = []
    for run, short in zip(runs, commits, strict=True):
        label = short
        if commits.count(short) > 1:  # one commit measured in several environments
            label = f"{short} {run.env_name}"
        labels.append(label)
    return labels


def format_history(hist: History) -> str:
    """The table of one benchmark: a heading line, then parameters x commits."""
    labels = _column_labels(hist.runs)
    dates = [
        datetime.fromtimestamp(r.date / 1000, tz=UTC).strftime("%Y-%m-%d")
        if r.date
        else ""
        for r in hist.runs
    ]
    head = [*hist.param_names, *labels] if hist.param_names else ["", *labels]
    sub = [""] * max(1, len(hist.param_names)) + dates
    body = []
    for combo in hist.rows:
        cells = [format_value(hist.values.get((combo, i)), hist.unit) for i in range(len(labels))]
        shown = [_show_param(v) for v in combo]
        body.append([*shown, *cells] if hist.param_names else ["", *cells])
    table = [head, sub, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    n_par = max(1, len(hist.param_names))

    def line(row: list[str]) -> str:
        left = "  ".join(c.ljust(w) for c, w in zip(row[:n_par], widths, strict=False))
        right = "  ".join(c.rjust(w) for c, w in zip(row[n_par:], widths[n_par:], strict=False))
        return f"{left} | {right}".rstrip()

    rule = "-" * len(line(head))
    lines = [f"{hist.name}  [{hist.machine}, {hist.unit}]", line(head), line(sub), rule]
    lines += [line(row) for row in body]
    return "\n".join(lines)


def plot(hists: Sequence[History], path: Path) -> None:
    """One panel per benchmark: a line per parameter combination over the commits."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    cols = 2 if len(hists) > 1 else 1
    rows = math.ceil(len(hists) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.2 * rows), squeeze=False)
    for ax, hist in zip(axes.flat, hists, strict=False):
        labels = _column_labels(hist.runs)
        xs = range(len(labels))
        for combo in hist.rows:
            ys = [hist.values.get((combo, i)) for i in xs]
            ys = [math.nan if y is None else y for y in ys]
            label = ", ".join(_show_param(v) for v in combo) or hist.name
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(f"{hist.name} [{hist.machine}]", fontsize=9)
        ax.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(hist.unit)
        if any(v is not None and v > 0 for v in hist.values.values()):
            ax.set_yscale("log")
        if len(hist.rows) > 1:
            ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(hists) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables (and write the plot); 0 on success, 1 without results, 2 on bad use."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help=f"default: {DEFAULT_RESULTS}"
    )
    parser.add_argument("--bench", "-b", help="regular expression on the benchmark name")
    parser.add_argument("--machine", "-m", help="only this machine's results")
    parser.add_argument(
        "--last", type=int, default=8, help="the most recent commits shown (default 8; 0: all)"
    )
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="also write plots here")
    args = parser.parse_args(argv)
    if args.last < 0:
        parser.error("--last must be >= 0")
    if args.bench:
        try:
            re.compile(args.bench)
        except re.error as exc:
            parser.error(f"--bench is not a regular expression: {exc}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install matplotlib", file=sys.stderr)
            return 2
    runs = load_runs(args.results) if args.results.is_dir() else []
    if not runs:  # dry and quick runs save nothing, but leave the folder behind
        print(
            f"no asv results in {args.results}: save some with "
            "`asv run --python=same --set-commit-hash=$(git rev-parse HEAD)` in asv_bench/",
            file=sys.stderr,
        )
        return 1
    hists = histories(
        runs,
        load_benchmarks(args.results),
        bench=args.bench,
        machine=args.machine,
        last=args.last or None,
    )
    if not hists:
        print(f"no stored result matches in {args.results}", file=sys.stderr)
        return 1
    print("\n\n".join(format_history(h) for h in hists))
    if args.plot is not None:
        plot(hists, args.plot)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
