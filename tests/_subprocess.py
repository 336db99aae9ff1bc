"""Run a Python snippet in a fresh interpreter, with a timeout, for tests that may crash or hang.

A Numba threading-layer abort (SIGABRT), an OpenMP fork kill or a segfault in the child then
fails one test with its stderr instead of taking the whole pytest process down, and a hang is
cut off by the timeout (the child's whole process group is killed, so forked grandchildren go
too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Result:
    """What a child process left behind."""

    rc: int | None  # None when it was killed for running past the timeout
    stdout: str
    stderr: str
    timed_out: bool

    def describe(self) -> str:
        """A readable account for assertion messages."""
        head = "timed out" if self.timed_out else f"exit status {self.rc}"
        return (
            f"{head}\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-6000:]}"
        )


def child_env(
    env: Mapping[str, str | None] | None = None, *, inherit: bool = True
) -> dict[str, str]:
    """The parent's environment (or an empty one) updated by ``env``; a None value removes."""
    out = dict(os.environ) if inherit else {}
    out.setdefault("KERAS_BACKEND", "numpy")
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def run_python(
    code: str,
    *,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 120.0,
    cwd: str | os.PathLike[str] | None = None,
    args: tuple[str, ...] = (),
) -> Result:
    """Run ``code`` (dedented) with ``sys.executable -c``; never raises for the child's sake."""
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
        cwd=cwd,
        start_new_session=True,  # its own process group: a timeout kills forked children too
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return Result(None, out, err, True)


def check_python(code: str, **kwargs: object) -> Result:
    """:func:`run_python`, asserting a clean exit (status 0, no traceback on stderr)."""
    res = run_python(code, **kwargs)  # type: ignore[arg-type]
    assert not res.timed_out and res.rc == 0, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    return res


def last_json_line(stdout: str) -> dict:
    """The child's report: the last stdout line that parses as a JSON object."""
    import json

    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON report in the child's output:\n{stdout[-4000:]}")


def layer_probe(layer: str, timeout: float = 60.0) -> str | None:
    """None when Numba can run a parallel region with ``layer`` here, else why not."""
    res = run_python(
        """
        import numba, numpy as np

        @numba.njit(parallel=True)
        def f(a):
            s = 0.0
            for i in numba.prange(a.size):
                s += a[i]
            return s

        assert f(np.ones(100)) == 100.0
        print(numba.threading_layer())
        """,
        env={"NUMBA_THREADING_LAYER": layer},
        timeout=timeout,
    )
    if res.rc == 0 and res.stdout.strip() == layer:
        return None
    return (res.stderr.strip().splitlines() or ["unknown"])[-1]
