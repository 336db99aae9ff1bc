"""The documentation site builds, and no reStructuredText markup survives into its pages.

Docstrings are Markdown (mkdocstrings renders them): a Sphinx role such as ``:func:`x` `` or
an unbalanced double backtick would be printed literally on the page. The site is built once
(``mkdocs build --strict``, when the ``docs`` extra is installed) and the text of every page,
outside code blocks, is scanned for such leftovers.
"""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|ref):`")
_PRE = re.compile(r"<pre\b.*?</pre>", re.S)
_TAG = re.compile(r"<[^>]+>")


def leftovers(page_html: str) -> list[str]:
    """Snippets of visible text (code blocks excluded) that still hold RST markup."""
    text = html.unescape(_TAG.sub(" ", _PRE.sub(" ", page_html)))
    found = []
    for pattern in (_ROLE, re.compile("``")):
        for m in pattern.finditer(text):
            found.append(text[max(0, m.start() - 40) : m.end() + 40].replace("\n", " "))
    return found


def test_leftovers_finds_roles_and_double_backticks_but_not_code():
    page = (
        "<p>see :func:`group_norm` and ``x``</p><pre><code>:class:`ok` ``ok``</code></pre>"
        "<p><code>fine</code></p>"
    )
    found = leftovers(page)
    assert len(found) == 3  # the role, and both ends of the double backticks
    assert leftovers("<p>plain <code>code</code> text</p>") == []


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra")
def test_built_site_has_no_rst_leftovers(tmp_path):
    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                       "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    problems = {
        str(page.relative_to(site)): found
        for page in site.rglob("*.html")
        if (found := leftovers(page.read_text(encoding="utf-8")))
    }
    assert not problems, problems
