"""``tools/asv_history.py`` reads a results folder in asv's format and prints commits x params.

The fake folder below is written the way ``asv.results.Results.save`` writes (results format
version 2: one file per machine/commit/environment, each benchmark a row of ``result_columns``,
parameterised results flattened in ``itertools.product`` order, ``null`` for skipped or failed
combinations), and, where asv is installed, asv's own loader reads it back first.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("asv_history", ROOT / "tools" / "asv_history.py")
asv_history = importlib.util.module_from_spec(_spec)
sys.modules["asv_history"] = asv_history  # dataclasses look their module up there
_spec.loader.exec_module(asv_history)

COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]
FWD = "bench_groupnorm.GroupNormForward.time_channels_last"
MEM = "bench_groupnorm.PeakMemoryForward.peakmem_forward"
IMPORT = "bench_compile.Import.timeraw_import"
SIZES = ["'tiny'", "'medium'"]
DTYPES = ["'float32'", "'float64'"]
ENV = "existing-py_usr_bin_python3.11"
#: commit -> (commit date in ms, forward results over SIZES x DTYPES, import time)
COMMITS = {
    "aaaaaaaa11111111": (1_700_000_000_000, [9.3e-6, 1.1e-5, 2.1e-3, None], 0.31),
    "bbbbbbbb22222222": (1_700_100_000_000, [9.0e-6, 1.0e-5, 1.9e-3, None], 0.30),
    "cccccccc33333333": (1_700_200_000_000, [8.8e-6, None, 1.8e-3, None], 0.32),
}


def _row(result, params):
    # Trailing None columns are dropped, as asv does.
    return [result, params, "0" * 64, 1_700_000_000_000, 1.5, [r and r * 0.9 for r in result]]


def _write_results(root: Path, machine: str = "box") -> Path:
    results = root / "results"
    (results / machine).mkdir(parents=True)
    machine_info = {"arch": "x86_64", "cpu": "test CPU", "machine": machine, "num_cpu": "2"}
    (results / machine / "machine.json").write_text(
        json.dumps({**machine_info, "os": "Linux", "ram": "24GB", "version": 1})
    )
    for commit, (date, forward, import_s) in COMMITS.items():
        data = {
            "commit_hash": commit,
            "env_name": ENV,
            "date": date,
            "params": {**machine_info, "python": "3.11"},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": COLUMNS,
            "results": {
                FWD: _row(forward, [SIZES, DTYPES]),
                MEM: _row([float(2**20 * 3), float(2**20 * 5)], [["'channels-last'"], SIZES]),
                IMPORT: _row([import_s], []),
            },
            "durations": {},
            "version": 2,
        }
        name = f"{commit[:8]}-{ENV}.json"
        (results / machine / name).write_text(json.dumps(data, separators=(",", ":")))
    benchmarks = {
        FWD: {"name": FWD, "param_names": ["size", "dtype"], "unit": "seconds"},
        MEM: {"name": MEM, "param_names": ["layout", "size"], "unit": "bytes"},
        IMPORT: {"name": IMPORT, "param_names": [], "unit": "seconds"},
        "version": 2,
    }
    (results / "benchmarks.json").write_text(json.dumps(benchmarks))
    return results


@pytest.fixture
def results(tmp_path):
    return _write_results(tmp_path)


def test_the_fake_folder_is_what_asv_itself_reads(results):
    asv_results = pytest.importorskip("asv.results")
    loaded = list(asv_results.iter_results(str(results)))
    assert sorted(r.commit_hash for r in loaded) == sorted(COMMITS)
    first = next(r for r in loaded if r.commit_hash == "aaaaaaaa11111111")
    assert first.get_result_value(FWD, [SIZES, DTYPES]) == [9.3e-6, 1.1e-5, 2.1e-3, None]


def test_runs_are_loaded_per_commit(results):
    runs = asv_history.load_runs(results)
    assert [r.commit for r in runs] == list(COMMITS)
    assert {r.machine for r in runs} == {"box"}
    params, values = runs[0].results[FWD]
    assert params == [SIZES, DTYPES] and values == [9.3e-6, 1.1e-5, 2.1e-3, None]


def test_histories_are_commits_by_parameters(results):
    hists = asv_history.histories(
        asv_history.load_runs(results), asv_history.load_benchmarks(results)
    )
    by_name = {h.name: h for h in hists}
    assert set(by_name) == {FWD, MEM, IMPORT}
    fwd = by_name[FWD]
    assert fwd.param_names == ["size", "dtype"] and fwd.unit == "seconds"
    assert fwd.rows == [("'tiny'", "'float32'"), ("'tiny'", "'float64'"),
                        ("'medium'", "'float32'"), ("'medium'", "'float64'")]
    assert [r.commit for r in fwd.runs] == list(COMMITS)  # oldest commit first
    assert fwd.values[("'medium'", "'float32'"), 2] == 1.8e-3
    assert fwd.values[("'tiny'", "'float64'"), 2] is None  # skipped in that commit
    assert by_name[IMPORT].rows == [()] and by_name[IMPORT].values[(), 1] == 0.30


def test_last_and_bench_filter(results):
    runs = asv_history.load_runs(results)
    (fwd,) = asv_history.histories(runs, bench=r"GroupNormForward\.time", last=2)
    assert [r.commit for r in fwd.runs] == ["bbbbbbbb22222222", "cccccccc33333333"]
    assert fwd.values[("'tiny'", "'float32'"), 0] == 9.0e-6
    assert asv_history.histories(runs, machine="elsewhere") == []


def test_table_text(results):
    hists = asv_history.histories(
        asv_history.load_runs(results), asv_history.load_benchmarks(results), bench="Forward"
    )
    text = asv_history.format_history(next(h for h in hists if h.name == FWD))
    lines = text.splitlines()
    assert lines[0] == f"{FWD}  [box, seconds]"
    assert lines[1].split() == ["size", "dtype", "|", "aaaaaaaa", "bbbbbbbb", "cccccccc"]
    assert "2023-11-14" in lines[2]  # the first commit's date, 1_700_000_000 s after the epoch
    tiny32 = next(ln for ln in lines if ln.split()[:2] == ["tiny", "float32"])  # no quotes
    assert tiny32.split("|")[1].split() == ["9.3us", "9us", "8.8us"]
    medium64 = next(ln for ln in lines if ln.split()[:2] == ["medium", "float64"])
    assert medium64.split("|")[1].split() == ["n/a", "n/a", "n/a"]
    mem = asv_history.format_history(next(h for h in hists if h.name == MEM))
    assert "3MiB" in mem and "5MiB" in mem


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (None, "seconds", "n/a"),
        (1.5, "seconds", "1.5s"),
        (2.5e-3, "seconds", "2.5ms"),
        (4e-9, "seconds", "4ns"),
        (3 * 2**30, "bytes", "3GiB"),
        (512.0, "bytes", "512B"),
        (42.0, "unitless", "42"),
    ],
)
def test_format_value(value, unit, text):
    assert asv_history.format_value(value, unit) == text


def test_main_prints_tables_and_plots(results, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "history.png"
    assert asv_history.main(["--results", str(results), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert FWD in out and MEM in out and IMPORT in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_without_results_says_how_to_save_some(tmp_path, capsys):
    assert asv_history.main(["--results", str(tmp_path / "none")]) == 1
    assert "asv run --python=same --set-commit-hash" in capsys.readouterr().err


def test_main_refuses_a_bad_regex(results, capsys):
    with pytest.raises(SystemExit) as exc:
        asv_history.main(["--results", str(results), "--bench", "("])
    assert exc.value.code == 2
    assert "--bench is not a regular expression" in capsys.readouterr().err


def test_reads_what_asv_itself_writes(tmp_path):
    asv_results = pytest.importorskip("asv.results")
    asv_runner = pytest.importorskip("asv.runner")
    run = asv_results.Results(
        {"machine": "box", "python": "3.11"}, {}, "d" * 40, 1_700_000_000_000, "3.11", ENV, {}
    )
    values = [1e-5, float("nan"), 2e-3, None]  # NaN: skipped; None: failed
    result = asv_runner.BenchmarkResult(
        result=values, samples=[None] * 4, number=[None] * 4, errcode=0, stderr="", profile=None
    )
    run.add_result({"name": FWD, "version": "1", "params": [SIZES, DTYPES]}, result)
    run.save(str(tmp_path))
    (hist,) = asv_history.histories(asv_history.load_runs(tmp_path))
    assert hist.machine == "box" and [r.commit for r in hist.runs] == ["d" * 40]
    assert [hist.values[c, 0] for c in hist.rows] == [1e-5, None, 2e-3, None]


def test_a_folder_without_runs_says_how_to_save_some(results, capsys):
    for path in results.glob("*/*.json"):
        if path.name != "machine.json":
            path.unlink()
    assert asv_history.main(["--results", str(results)]) == 1
    assert "--set-commit-hash" in capsys.readouterr().err
