"""Issue 6, point 4: the on-disk kernel cache never breaks the library.

* A read-only install (the package's ``__pycache__`` not writable) falls back to Numba's
  user-wide cache folder, and when that is not writable either, to compiling in memory
  (``numba_gn._jit`` catches Numba's "no locator available" refusal).
* ``NUMBA_CACHE_DIR`` is honoured: cache files appear there and a new process loads them.
* Several processes compiling into the same empty cache at once do not crash.

"Read-only" is made real with ``chmod``; the test machine may run as root, for whom ``chmod``
changes nothing, so the child also makes Numba's writability probe
(``_CacheLocator.ensure_cache_path``) fail for the read-only folders, which is exactly what
Numba sees on a read-only file system. Every child runs with ``PYTHONDONTWRITEBYTECODE=1`` so
the copied package stays untouched, and every child compiles only a couple of serial kernels
to keep the runtime down.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from _subprocess import check_python, last_json_line, run_python

import numba_gn
from numba_gn import group_norm, group_norm_backward

# Prepended to the child programs that simulate read-only folders (RO_ROOTS, os.pathsep-joined).
_READ_ONLY_PRELUDE = r"""
import os
import numba.core.caching as _caching

_RO = [os.path.realpath(p) for p in os.environ.get("RO_ROOTS", "").split(os.pathsep) if p]
_probe = _caching._CacheLocator.ensure_cache_path

def _ensure_cache_path(self):
    path = os.path.realpath(self.get_cache_path())
    if any(path == r or path.startswith(r + os.sep) for r in _RO):
        raise PermissionError(13, "Permission denied (read-only folder)", path)
    return _probe(self)

_caching._CacheLocator.ensure_cache_path = _ensure_cache_path
"""

# One small channels-first float64 call: two serial slab kernels to compile.
_WORK = r"""
import hashlib, json, sys
import numpy as np
import numba_gn
from numba_gn import _jit, group_norm, group_norm_backward

x = np.random.default_rng(7).standard_normal((2, 8, 6, 5))
y, m, r = group_norm(x, 4, axis=1, return_stats=True)
dx, dg, db = group_norm_backward(np.cos(x), x, m, r, 4, axis=1)
h = hashlib.blake2b(b"".join(a.tobytes() for a in (y, m, r, dx, dg, db))).hexdigest()
print(json.dumps({"file": numba_gn.__file__, "digest": h, "cache_disabled": _jit.cache_disabled}))
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


def _make_read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def read_only_install(tmp_path):
    """A copy of the package, without any cache files, in a read-only folder."""
    site = tmp_path / "site"
    src = Path(numba_gn.__file__).parent
    shutil.copytree(src, site / "numba_gn", ignore=shutil.ignore_patterns("__pycache__"))
    _make_read_only(site)
    yield site
    _make_writable(site)


def _read_only_env(site: Path, home: Path, ro_roots: list[Path]) -> dict[str, str | None]:
    return {
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(home),
        "XDG_CACHE_HOME": None,
        "NUMBA_CACHE_DIR": None,
        "NUMBA_CACHE_LOCATOR_CLASSES": None,
        "RO_ROOTS": os.pathsep.join(str(p) for p in ro_roots),
    }


def test_read_only_install_uses_the_user_cache(read_only_install, tmp_path):
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    before = _snapshot(site)
    res = check_python(
        _READ_ONLY_PRELUDE + _WORK,
        env=_read_only_env(site, home, [site]),
        timeout=180,
        cwd=tmp_path,
    )
    report = last_json_line(res.stdout)
    assert report["file"].startswith(str(site))  # the copy ran, not the checkout
    assert report["digest"] == _expected_digest()
    assert report["cache_disabled"] is None
    assert _cache_files(home / ".cache" / "numba"), "no cache files in the user cache folder"
    assert _snapshot(site) == before  # nothing written into the install


def test_read_only_install_and_home_compile_without_cache(read_only_install, tmp_path):
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    _make_read_only(home)
    before = _snapshot(site)
    try:
        res = check_python(
            _READ_ONLY_PRELUDE + _WORK,
            env=_read_only_env(site, home, [site, home]),
            timeout=180,
            cwd=tmp_path,
        )
    finally:
        _make_writable(home)
    report = last_json_line(res.stdout)
    assert report["file"].startswith(str(site))
    assert report["digest"] == _expected_digest()
    assert "no locator available" in report["cache_disabled"]
    assert not list(home.rglob("*"))
    assert _snapshot(site) == before


def test_info_cache_folder_without_any_cache_folder(read_only_install, tmp_path):
    """``numba-gn info`` reports the cache folder; with none usable it must say so, not raise.

    (Only ``cache_folder()`` is called: the whole of ``info`` first warms up every kernel, which
    without a disk cache takes ~40 s.)
    """
    site = read_only_install
    home = tmp_path / "home"
    home.mkdir()
    _make_read_only(home)
    try:
        res = run_python(
            _READ_ONLY_PRELUDE
            + "from numba_gn.cli.info import cache_folder\nprint(cache_folder())",
            env=_read_only_env(site, home, [site, home]),
            timeout=180,
            cwd=tmp_path,
        )
    finally:
        _make_writable(home)
    assert res.rc == 0 and "Traceback" not in res.stderr, res.describe()
    assert res.stdout.strip()


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
