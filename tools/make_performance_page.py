"""Write `docs/performance.md` and its plots from a `numba-gn bench --json` run.

    numba-gn bench --sweep --cold-start --json bench.json     # a few minutes, on a quiet machine
    python tools/make_performance_page.py bench.json          # docs/performance.md, docs/img/*.png

The page shows the machine and versions, the speed targets of the project with the measured
values, throughput-against-size plots (numba_gn, PyTorch, NumPy and the `np.copyto` floor;
forward and forward + backward; channels-last and channels-first) and the accuracy table.
Needs matplotlib (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMPLS = (  # (key in "seconds", legend label, matplotlib style)
    ("numba_gn", "numba_gn", {"color": "C0", "marker": "o"}),
    ("torch", "PyTorch", {"color": "C3", "marker": "s"}),
    ("numpy", "NumPy", {"color": "C2", "marker": "^"}),
    ("copy", "np.copyto (floor)", {"color": "0.4", "linestyle": "--"}),
)
PASS_TITLES = {"forward": "forward", "forward+backward": "forward + backward"}


def _time(t: float | None) -> str:
    if t is None:
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _err(e: float | None) -> str:
    return "—" if e is None else f"{e:.1e}"


def _shape(r: dict) -> str:
    return "(" + ", ".join(map(str, r["shape"])) + ")"


def _find(results: list[dict], label: str, pass_: str) -> dict | None:
    return next((r for r in results if r["label"] == label and r["pass"] == pass_), None)


# --- the targets -----------------------------------------------------------------------------


def _copy_target(label: str, pass_: str, limit: float) -> Callable[[list[dict]], tuple]:
    def check(results: list[dict]) -> tuple:
        r = _find(results, label, pass_)
        if r is None:
            return None, None
        v = r["ratios"]["x_copy"]
        return f"{v:.2f}× copy", v <= limit

    return check


def _torch_target(label: str, pass_: str, limit: float) -> Callable[[list[dict]], tuple]:
    def check(results: list[dict]) -> tuple:
        r = _find(results, label, pass_)
        v = r and r["ratios"]["torch_speedup"]
        if v is None:
            return None, None
        return f"{v:.1f}× faster", v >= limit

    return check


def _tiny(results: list[dict]) -> tuple:
    r = _find(results, "tiny", "forward")
    if r is None:
        return None, None
    t = r["seconds"]["numba_gn_alloc"]
    return f"{_time(t)} (allocating call)", t <= 10e-6


def _half(layout: str) -> Callable[[list[dict]], tuple]:
    def check(results: list[dict]) -> tuple:
        h = _find(results, f"float16 {layout}", "forward")
        f = _find(results, layout, "forward")
        if h is None or f is None:
            return None, None
        ratio = h["seconds"]["numba_gn"] / f["seconds"]["numba_gn"]
        return f"{ratio:.2f}× the float32 time", ratio <= 1.0

    return check


def _startup(key: str, limit: float | None) -> Callable[[dict], tuple]:
    def check(startup: dict) -> tuple:
        v = (startup or {}).get(key)
        if v is None:
            return None, None
        return f"{v:.2f} s", (v <= limit) if limit else None

    return check


#: (description, target, check over the results)
TARGETS: list[tuple[str, str, Callable[[list[dict]], tuple]]] = [
    ("forward (8,64,64,256) axis=-1", "≤ 1.5× copy", _copy_target("channels-last", "forward", 1.5)),
    ("forward (8,256,64,64) axis=1", "≤ 1.5× copy", _copy_target("channels-first", "forward", 1.5)),
    (
        "forward + backward (8,64,64,256) axis=-1",
        "≤ 4× copy",
        _copy_target("channels-last", "forward+backward", 4),
    ),
    (
        "forward + backward (8,256,64,64) axis=1",
        "≤ 4× copy",
        _copy_target("channels-first", "forward+backward", 4),
    ),
    (
        "forward (16,1024,512) axis=-1",
        "≤ 1.5× copy",
        _copy_target("sequence (N, L, C)", "forward", 1.5),
    ),
    ("forward (1,512,64,64) axis=1", "≤ 1.5× copy", _copy_target("one sample", "forward", 1.5)),
    (
        "forward (16,64,64,512) axis=-1, 128 MiB",
        "≤ 1.3× copy",
        _copy_target("large channels-last", "forward", 1.3),
    ),
    (
        "forward (16,512,64,64) axis=1, 128 MiB",
        "≤ 1.3× copy",
        _copy_target("large channels-first", "forward", 1.3),
    ),
    ("tiny (2,8,8,32) forward call", "≤ 10 µs", _tiny),
    ("float16 forward, channels-last", "≤ float32 time", _half("channels-last")),
    ("float16 forward, channels-first", "≤ float32 time", _half("channels-first")),
    (
        "vs PyTorch, forward, channels-last",
        "≥ 4× faster",
        _torch_target("channels-last", "forward", 4),
    ),
    (
        "vs PyTorch, forward, channels-first",
        "≥ 4× faster",
        _torch_target("channels-first", "forward", 4),
    ),
    (
        "vs PyTorch, forward + backward, channels-last",
        "≥ 4× faster",
        _torch_target("channels-last", "forward+backward", 4),
    ),
    (
        "vs PyTorch, forward + backward, channels-first",
        "≥ 4× faster",
        _torch_target("channels-first", "forward+backward", 4),
    ),
]
STARTUP_TARGETS = [
    ("import + first call, warm kernel cache", "≤ 0.5 s", _startup("warm_first_call_s", 0.5)),
    ("import + first call, empty cache (compile)", "reported", _startup("cold_first_call_s", None)),
]


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else "met" if ok else "**not met**"


# --- the page --------------------------------------------------------------------------------


def _size_label(nbytes: float, _pos: object = None) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


def plot(results: list[dict], pass_: str, path: Path) -> None:
    """Throughput against array size for each implementation, one panel per layout."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in results if r["series"] == "sweep" and r["pass"] == pass_]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), sharey=True, dpi=90)
    for ax, layout in zip(axes, ("channels-last", "channels-first"), strict=True):
        rows = sorted((r for r in sweep if r["layout"] == layout), key=lambda r: r["nbytes"])
        for key, label, style in IMPLS:
            pts = [(r["nbytes"], r["gbps"].get(key)) for r in rows]
            pts = [(x, y) for x, y in pts if y]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=label, markersize=4, **style)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=4))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_size_label))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel("array size (float32)")
        ax.set_title(f"{PASS_TITLES[pass_]}, {layout}", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("effective GB/s (higher is better)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def render(
    report: dict[str, Any], images: dict[str, str], source: str, note: str | None = None
) -> str:
    """The Markdown page."""
    facts, settings, results = report["facts"], report["settings"], report["results"]
    startup = report.get("startup") or {}
    lines = [
        "# Performance",
        "",
        "<!-- Generated by tools/make_performance_page.py from a `numba-gn bench --json` run;"
        " do not edit by hand. -->",
        "",
        "How fast numba_gn is next to the least any group normalisation can cost (`np.copyto` of"
        " the same array), to plain NumPy and to PyTorch's CPU `group_norm`, and how accurate each"
        " is. Everything on this page comes from one run of",
        "",
        "```bash",
        f"numba-gn bench --sweep --cold-start --json {source}",
        f"python tools/make_performance_page.py {source}",
        "```",
        "",
        "Run it on a quiet machine: timings on a shared or busy one mostly measure the"
        " neighbours. `numba-gn bench` alone prints the same tables for your machine in a minute"
        " or two; the asv suite in `asv_bench/` tracks them over the project's history (see the"
        " README's *Benchmarks* section).",
        "",
        *([f'!!! note "This run"\n    {note}', ""] if note else []),
        "## Measured on",
        "",
        "| fact | value |",
        "|---|---|",
    ]
    keys = (
        "cpu", "cpus", "threads", "threading layer", "torch threads", "OMP_WAIT_POLICY",
        "python", "numba_gn", "numba", "llvmlite", "numpy", "torch",
    )  # fmt: skip
    lines += [f"| {k} | {facts[k]} |" for k in keys if k in facts]
    lines += [f"| date | {report.get('created', '?')} |", ""]
    lines += [
        f"Every case uses {settings['groups']} groups, epsilon {settings['epsilon']} and affine"
        f" gamma/beta; times are medians of up to {settings['repeat']} samples. Effective GB/s"
        " counts the ideal traffic: `2 × x.nbytes` for the forward (read `x`, write `y`),"
        " `5 × x.nbytes` for forward + backward (the backward also reads `dy` and `x` and writes"
        " `dx`). numba_gn is timed writing into preallocated outputs (`out=`), like the copy;"
        " the ratios to PyTorch and NumPy use its allocating calls, since they allocate too."
        " PyTorch is timed in a separate process, so that its OpenMP threads and Numba's never"
        " compete for the cores.",
        "",
        "`np.copyto` is the floor of a forward pass only up to the quality of the copy itself:"
        " glibc's `memcpy` is not the fastest copy on every machine, and numba_gn's output loops"
        " write large outputs with streaming stores that skip reading the destination first, so a"
        " forward pass whose statistics come from the cache can come in under 1× copy.",
        "",
        "## Targets",
        "",
        "| case | target | measured | |",
        "|---|---|---|---|",
    ]
    for desc, target, check in TARGETS:
        value, ok = check(results)
        lines.append(f"| {desc} | {target} | {value or '—'} | {_mark(ok)} |")
    for desc, target, check in STARTUP_TARGETS:
        value, ok = check(startup)
        lines.append(f"| {desc} | {target} | {value or '—'} | {_mark(ok)} |")
    lines += [
        "",
        "These are the medians of one run. On a shared virtual machine the same commit measures"
        " differently from one run to the next (the channels-last ratios, which depend on how"
        " much of the last-level cache the machine leaves us, moved by ±15% over a day of"
        " runs), so a target within that of its limit is met in some runs and missed in others;"
        " compare commits within one run (`asv continuous`), not across pages.",
    ]
    if "warm_import_s" in startup:
        lines += [
            "",
            f"Of the warm first call, `import numba_gn` takes {startup['warm_import_s']:.2f} s."
            " Most of the rest is Numba's one-time set-up of its typing and lowering registries at"
            " the first call of any compiled function (it imports `scipy.linalg`, among others),"
            " not the loading of numba_gn's kernels.",
        ]
    if "numba_floor_s" in startup:
        lines[-1] += (
            " For scale, in the same run: importing Numba and making the first call of one"
            " trivial cached parallel `@njit` function on the same array takes"
            f" {startup['numba_floor_s']:.2f} s, the floor of any Numba library."
        )
    lines += [
        "",
        "## All cases",
        "",
        "Time per call of numba_gn (into preallocated outputs), effective throughput,"
        " and the ratios: `× copy` is numba_gn's time over `np.copyto`'s; *vs PyTorch* and"
        " *vs NumPy* are their time over numba_gn's (above 1×: numba_gn is faster).",
        "",
        # Two tables rather than one of nine columns: that one did not fit the page's width.
        "| case | shape | dtype | pass | time | GB/s | × copy |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = [r for r in results if r["series"] == "targets"]
    for r in targets:
        lines.append(
            f"| {r['label']} | {_shape(r)} | {r['dtype']} | {PASS_TITLES[r['pass']]} "
            f"| {_time(r['seconds']['numba_gn'])} | {r['gbps']['numba_gn']:.1f} "
            f"| {_x(r['ratios']['x_copy'])} |"
        )
    lines += [
        "",
        "| case | shape | dtype | pass | vs PyTorch | vs NumPy |",
        "|---|---|---|---|---|---|",
    ]
    for r in targets:
        lines.append(
            f"| {r['label']} | {_shape(r)} | {r['dtype']} | {PASS_TITLES[r['pass']]} "
            f"| {_x(r['ratios']['torch_speedup'])} | {_x(r['ratios']['numpy_speedup'])} |"
        )
    lines += ["", "## Throughput against size", ""]
    lines += [
        "Float32, 256 channels in 32 groups, `(N, H, W, 256)` with `axis=-1` (channels-last)"
        " and `(N, 256, H, W)` with `axis=1` (channels-first); PyTorch gets the channels-last"
        " array as a channels_last-strided NCHW tensor (no copy). Effective GB/s counts the"
        " ideal traffic (forward: read `x`, write `y`; forward + backward: 5 arrays), so a"
        " curve on the copy floor moves that traffic at copy speed.",
        "",
    ]
    for pass_, name in images.items():
        lines += [f"![throughput, {PASS_TITLES[pass_]}](img/{name})", ""]
    lines += [
        "## Accuracy",
        "",
        f"Max abs error at offset {settings['offset']:g} (`x = {settings['offset']:g} + N(0, 1)`,"
        " rounded to the dtype) against a float64 NumPy reference on the same input: `y` for"
        " the forward, `dx` for forward + backward. See [Numerics](numerics.md) for why.",
        "",
        "| case | dtype | pass | numba_gn | PyTorch | NumPy |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r.get("max_abs_error") or {}
        if r["series"] == "targets" and e:
            lines.append(
                f"| {r['label']} | {r['dtype']} | {PASS_TITLES[r['pass']]} "
                f"| {_err(e.get('numba_gn'))} | {_err(e.get('torch'))} | {_err(e.get('numpy'))} |"
            )
    if any(r["dtype"] == "float16" for r in results):
        lines += [
            "",
            "float16 results are rounded to float16, so their error is at least half a float16"
            " ulp of the largest |y|: at offset 1e4 a float16 input takes only a few distinct"
            " values (its spacing there is 8), which makes some normalised outputs large.",
        ]
    if startup:
        lines += [
            "",
            "## Start-up",
            "",
            "A fresh interpreter running `import numba_gn` and one forward call on a 2 MiB"
            " float32 array (parallel path): warm means the on-disk kernel cache is populated,"
            " cold means it is empty (`NUMBA_CACHE_DIR` at a new folder), so kernels compile.",
            "",
            "| kernel cache | import | import + first call |",
            "|---|---|---|",
            f"| warm cache | {startup['warm_import_s']:.2f} s "
            f"| {startup['warm_first_call_s']:.2f} s |",
        ]
        if "cold_first_call_s" in startup:
            lines.append(
                f"| cold cache | {startup['cold_import_s']:.2f} s "
                f"| {startup['cold_first_call_s']:.2f} s |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Read the JSON, write the plots and the page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="output of numba-gn bench --sweep --json FILE")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="docs folder to write")
    parser.add_argument("--note", help="a remark about this run, shown at the top of the page")
    args = parser.parse_args(argv)
    report = json.loads(args.json.read_text())
    img = args.docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    images = {}
    if any(r["series"] == "sweep" for r in report["results"]):
        for pass_ in PASS_TITLES:
            name = f"perf_{pass_.replace('+', '_')}.png"
            plot(report["results"], pass_, img / name)
            images[pass_] = name
    try:  # the command as run from the repository root
        source = str(args.json.resolve().relative_to(ROOT))
    except ValueError:
        source = args.json.name
    page = render(report, images, source=source, note=args.note)
    (args.docs / "performance.md").write_text(page, encoding="utf-8")
    print(f"wrote {args.docs / 'performance.md'} and {len(images)} plots in {img}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
