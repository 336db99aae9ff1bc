"""The on-disk kernel cache never breaks the library, and a read-only one is still used.

* Kernels are cached in ``NUMBA_CACHE_DIR`` or the user's cache directory, never in the
  package's own folder (so a read-only install works and ``pip uninstall`` leaves nothing).
* A cache filled beforehand is loaded when its folder is read-only (a container image, a shared
  install); a kernel missing from it is compiled in memory with one warning.
* With no usable folder at all, kernels are compiled in memory, with one warning.
* ``NUMBA_CACHE_DIR`` is honoured: cache files appear there and a new process loads them.
* Several processes compiling into the same empty cache at once do not crash.

"Read-only" is made real: a read-only bind mount in a private mount namespace when the tests
run as root (for whom file modes change nothing), ``chmod`` otherwise, exactly what a non-root
user sees. Every child runs with ``PYTHONDONTWRITEBYTECODE=1`` and compiles only a couple of
serial kernels to keep the runtime down; loads are asserted from Numba's own cache statistics.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _subprocess import check_python, child_env, last_json_line, run_python

import numba_gn
from numba_gn import group_norm, group_norm_backward

# One small channels-first float64 call: two serial slab kernels to compile. Reports the result's
# digest and, from Numba's dispatcher statistics, how many kernels were loaded and compiled.
_WORK = r"""
import hashlib, json, sys, warnings
warnings.simplefilter("always")
import numpy as np
import numba_gn
from numba_gn import _cache, _jit, group_norm, group_norm_backward
from numba_gn.kernels import slab

x = np.random.default_rng(7).standard_normal((2, 8, 6, 5))
y, m, r = group_norm(x, 4, axis=1, return_stats=True)
dx, dg, db = group_norm_backward(np.cos(x), x, m, r, 4, axis=1)
h = hashlib.blake2b(b"".join(a.tobytes() for a in (y, m, r, dx, dg, db))).hexdigest()
kernels = (slab.forward_fused_ser, slab.backward_fused_ser)
print(json.dumps({
    "file": numba_gn.__file__,
    "digest": h,
    "cache_disabled": _jit.cache_disabled,
    "cache": _cache.status(),
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
}))
"""


def _expected_digest() -> str:
    import hashlib

    x = np.random.default_rng(7).standard_normal((2, 8, 6, 5))
    y, m, r = group_norm(x, 4, axis=1, return_stats=True)
    dx, dg, db = group_norm_backward(np.cos(x), x, m, r, 4, axis=1)
    return hashlib.blake2b(b"".join(a.tobytes() for a in (y, m, r, dx, dg, db))).hexdigest()


def _cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def _set_writable(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


def _can_mount_read_only() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,ro,bind /tmp"],
        capture_output=True,
    )
    return probe.returncode == 0


_RO_MOUNT = _can_mount_read_only()


def run_read_only(code: str, read_only: list[Path], env: dict, **kw):
    """Run ``code`` in a child that sees every folder of ``read_only`` as read-only."""
    if os.geteuid() != 0:
        for p in read_only:
            _set_writable(p, False)
        try:
            return run_python(code, env=env, **kw)
        finally:
            for p in read_only:
                _set_writable(p, True)
    if not _RO_MOUNT:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
    mounts = " && ".join(
        f"mount --bind {shlex.quote(str(p))} {shlex.quote(str(p))} && "
        f"mount -o remount,ro,bind {shlex.quote(str(p))}"
        for p in read_only
    )
    script = f"{mounts} && exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    timeout = kw.pop("timeout", 180)
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
    from _subprocess import Result

    return Result(proc.returncode, proc.stdout, proc.stderr, False)


@pytest.fixture
def read_only_install(tmp_path):
    """A copy of the package, without any cache files (it is made read-only by the child)."""
    site = tmp_path / "site"
    src = Path(numba_gn.__file__).parent
    shutil.copytree(src, site / "numba_gn", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def _env(site: Path, home: Path, cache_dir: Path | None = None) -> dict[str, str | None]:
    return {
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(home),
        "XDG_CACHE_HOME": None,
        "NUMBA_CACHE_DIR": str(cache_dir) if cache_dir else None,
    }


def test_read_only_install_caches_in_the_user_cache(read_only_install, tmp_path):
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    before = _snapshot(site)
    res = run_read_only(_WORK, [site], _env(site, home), cwd=tmp_path)
    assert res.rc == 0, res.describe()
    report = last_json_line(res.stdout)
    assert report["file"].startswith(str(site))  # the copy ran, not the checkout
    assert report["digest"] == _expected_digest()
    assert report["cache_disabled"] is None
    assert _cache_files(home / ".cache" / "numba_gn"), "no cache files in the user cache folder"
    assert _snapshot(site) == before  # nothing written into the install
    assert "KernelCacheWarning" not in res.stderr


@pytest.mark.parametrize("where", ["NUMBA_CACHE_DIR", "user cache"])
def test_prefilled_read_only_cache_is_loaded(read_only_install, tmp_path, where):
    """Filled while writable (an image build), then read-only: loaded, nothing compiled."""
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    cache = tmp_path / "cache" if where == "NUMBA_CACHE_DIR" else home / ".cache" / "numba_gn"
    env = _env(site, home, cache if where == "NUMBA_CACHE_DIR" else None)
    fill = check_python(_WORK, env=env, timeout=180, cwd=tmp_path)
    assert last_json_line(fill.stdout)["misses"] == 2
    before = _snapshot(cache)
    res = run_read_only(_WORK, [site, cache], env, cwd=tmp_path)
    assert res.rc == 0, res.describe()
    report = last_json_line(res.stdout)
    assert report["digest"] == _expected_digest()
    assert report["cache"]["writable"] is False
    assert (report["hits"], report["misses"]) == (2, 0)
    assert "KernelCacheWarning" not in res.stderr
    assert _snapshot(cache) == before


def test_read_only_empty_cache_compiles_in_memory_with_one_warning(read_only_install, tmp_path):
    site = read_only_install
    home = tmp_path / "home"
    cache = tmp_path / "cache"
    cache.mkdir()
    home.mkdir()
    res = run_read_only(_WORK, [site, cache], _env(site, home, cache), cwd=tmp_path)
    assert res.rc == 0, res.describe()
    report = last_json_line(res.stdout)
    assert report["digest"] == _expected_digest()
    assert (report["hits"], report["misses"]) == (0, 2)
    assert res.stderr.count("KernelCacheWarning") == 1, res.stderr
    assert "is read-only" in res.stderr and "numba-gn warmup" in res.stderr
    assert not list(cache.rglob("*"))


def test_no_cache_folder_compiles_in_memory_with_one_warning(read_only_install, tmp_path):
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    res = run_read_only(_WORK, [site, home], _env(site, home), cwd=tmp_path)
    assert res.rc == 0, res.describe()
    report = last_json_line(res.stdout)
    assert report["digest"] == _expected_digest()
    assert "cannot be created" in report["cache_disabled"]
    assert res.stderr.count("KernelCacheWarning") == 1, res.stderr
    assert not list(home.rglob("*"))


def test_info_cache_folder_without_any_cache_folder(read_only_install, tmp_path):
    """``numba-gn info`` reports the cache folder; with none usable it must say so, not raise."""
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    code = "from numba_gn.cli.info import cache_folder\nprint(cache_folder())"
    res = run_read_only(code, [site, home], _env(site, home), cwd=tmp_path)
    assert res.rc == 0 and "Traceback" not in res.stderr, res.describe()
    assert res.stdout.strip().startswith("none: kernels are compiled in memory")


# ----------------------------------------------------------------------------------------------
# NUMBA_CACHE_DIR, and several processes filling the same empty cache at once

_CONCURRENT = (
    r"""
import os, sys, time
import numba_gn  # import first, then start compiling together
go = sys.argv[1]
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.01)
"""
    + _WORK
)

PROCESSES = 3


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """PROCESSES children compiling into one fresh NUMBA_CACHE_DIR at the same moment."""
    root = tmp_path_factory.mktemp("shared_cache")
    cache, go = root / "cache", root / "go"
    import subprocess
    import sys

    from _subprocess import child_env

    env = child_env({"NUMBA_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    time.sleep(1.0)  # let them import
    go.touch()
    outcomes = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        outcomes.append((p.returncode, out, err))
    return cache, outcomes


def test_concurrent_compiles_into_one_empty_cache(shared_cache):
    _, outcomes = shared_cache
    expected = _expected_digest()
    for rc, out, err in outcomes:
        assert rc == 0 and "Traceback" not in err, err[-4000:]
        assert last_json_line(out)["digest"] == expected


def test_numba_cache_dir_is_honoured(shared_cache):
    cache, _ = shared_cache
    files = _cache_files(cache)
    assert any(p.suffix == ".nbi" for p in files) and any(p.suffix == ".nbc" for p in files)
    assert {p.name.split("-")[0] for p in files} >= {
        "slab.forward_fused_ser",
        "slab.backward_fused_ser",
    }
    # A new process loads the kernels from there and compiles (saves) nothing.
    res = check_python(
        _WORK,
        env={
            "NUMBA_CACHE_DIR": str(cache),
            "NUMBA_DEBUG_CACHE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        timeout=120,
    )
    assert last_json_line(res.stdout)["digest"] == _expected_digest()
    assert f"data loaded from '{cache}" in res.stdout
    assert "data saved" not in res.stdout


def test_a_changed_helper_file_invalidates_cached_kernels(read_only_install, tmp_path):
    """A kernel whose helpers changed in another file is compiled again, never loaded stale.

    (Numba's own stamp covers only the file defining the kernel: after an upgrade that changed
    ``kernels/_common.py`` alone, ``slab.py``'s kernels would load old machine code.)
    """
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    env = _env(site, home, tmp_path / "cache")
    first = last_json_line(check_python(_WORK, env=env, timeout=180, cwd=tmp_path).stdout)
    again = last_json_line(check_python(_WORK, env=env, timeout=180, cwd=tmp_path).stdout)
    assert (first["misses"], again["hits"], again["misses"]) == (2, 2, 0)
    helper = site / "numba_gn" / "kernels" / "_common.py"
    helper.write_text(helper.read_text() + "\n# an edit that changes no code\n")
    after = last_json_line(check_python(_WORK, env=env, timeout=180, cwd=tmp_path).stdout)
    assert (after["hits"], after["misses"]) == (0, 2)
    assert after["digest"] == first["digest"] == _expected_digest()


def test_disable_jit_runs_the_python_kernels():
    """Under NUMBA_DISABLE_JIT there are no dispatchers to cache: the Python bodies run."""
    code = r"""
import json
import numpy as np
import numba_gn
from numba_gn.numpy_reference import group_norm_numpy
x = np.random.default_rng(7).standard_normal((2, 8, 6, 5)).astype(np.float32)
errors = []
for axis in (1, -1):
    groups = 4 if axis == 1 else 5
    y, mean, rstd = numba_gn.group_norm(x, groups, axis=axis, return_stats=True)
    numba_gn.group_norm_backward(np.cos(x), x, mean, rstd, groups, axis=axis)
    ref = group_norm_numpy(x.astype(np.float64), groups, axis=axis)
    errors.append(float(np.max(np.abs(y - ref))))
print(json.dumps({"errors": errors}))
"""
    res = check_python(code, env={"NUMBA_DISABLE_JIT": "1"}, timeout=300)
    assert max(last_json_line(res.stdout)["errors"]) < 1e-5
