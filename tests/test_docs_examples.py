"""Every ```python block of the docs (`docs/**/*.md`) and of `README.md` runs: no drift.

Each page is one test: its ``python`` blocks run in order in one namespace (later blocks use the
names earlier ones define), and any exception fails the test, pointing at the page and line.
Blocks that must not run use another fence language (``bash``, ``text``, ``console``). Other
spellings of Python (``py``, ``python3``, ``pycon``, ...) are refused, so an example cannot
escape the tests by its fence.

A block that needs an optional package (PyTorch, which no extra installs) is preceded by
``<!-- docs-test: requires torch -->``. Where that package is missing, the block and every later
block of the page are not run and the page is reported as skipped, naming the line; the blocks
before it have still run.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_REQUIRES = re.compile(r"<!--\s*docs-test:\s*requires\s+(?P<mods>[\w., ]+?)\s*-->")
_PYTHON_LIKE = {"py", "py3", "python3", "pycon", "ipython", "pyodide", "python-repl"}


@dataclass
class Block:
    """One fenced code block of a page."""

    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    requires: tuple[str, ...]


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their language and requirements."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    pending: tuple[str, ...] = ()
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            r = _REQUIRES.search(lines[i])
            if r is not None:
                pending = tuple(s for s in re.split(r"[,\s]+", r["mods"]) if s)
            elif lines[i].strip():
                pending = ()  # a requirement applies to the block right after it only
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip()
        lang = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
        body = []
        j = i + 1
        while j < len(lines):
            line = lines[j]
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                break
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        out.append(Block(i + 1, lang, "\n".join(body) + "\n", pending))
        pending = ()
        i = j + 1
    return out


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def test_pages_found() -> None:
    """The collection itself works: the docs exist and have examples."""
    assert (ROOT / "docs" / "index.md").exists()
    assert sum(b.lang == "python" for p in PAGES for b in blocks(p.read_text("utf-8"))) >= 10


def test_fence_parser() -> None:
    text = (
        "# t\n```python\na = 1\n```\n\n<!-- docs-test: requires torch -->\n"
        "```python title=\"x.py\"\nb = a\n```\n  ~~~bash\n  ls\n  ~~~\n"
    )
    got = blocks(text)
    assert [(b.line, b.lang, b.code, b.requires) for b in got] == [
        (2, "python", "a = 1\n", ()),
        (7, "python", "b = a\n", ("torch",)),
        (10, "bash", "ls\n", ()),
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page: Path) -> None:
    rel = page.relative_to(ROOT).as_posix()
    found = blocks(page.read_text("utf-8"))
    odd = [f"{rel}:{b.line} ({b.lang})" for b in found if b.lang in _PYTHON_LIKE]
    assert not odd, f"use ```python for Python examples (they are run), found: {odd}"
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for b in found:
        if b.lang != "python":
            continue
        missing = _missing(b.requires)
        if missing:
            pytest.skip(
                f"{rel}:{b.line} and later blocks need {', '.join(missing)} (not installed); "
                "the blocks before it ran"
            )
        # Padded so that tracebacks give the line number in the page itself.
        code = compile("\n" * b.line + b.code, rel, "exec")
        exec(code, namespace)
