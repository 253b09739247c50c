"""The documentation: docs/options.md matches the option declarations, and the README and docs/ hold together."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TEST_COMMAND = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _links(page: Path) -> list[str]:
    """Every link target of a markdown page, outside code blocks and inline code."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK_RE.findall(text)


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#")


def test_options_page_is_up_to_date():
    gen_docs = _gen_docs()
    stale = gen_docs.stale_pages()
    assert not stale, f"{[str(p.relative_to(ROOT)) for p in stale]} out of date: run python tools/gen_docs.py"


def test_every_option_flag_is_in_the_options_page():
    from jupyter_sd.recipe.options import build_parser
    from jupyter_sd.recipe.values import option_fields

    page = (DOCS / "options.md").read_text(encoding="utf-8")
    flags = {flag for f in option_fields() for flag in f.metadata["flags"]}
    for prompt_words in (False, True):
        parser = build_parser("%%paint", prompt_words=prompt_words)
        flags |= {flag for action in parser._actions for flag in action.option_strings}
    missing = sorted(flag for flag in flags if f"`{flag}`" not in page)
    assert not missing, f"docs/options.md does not mention {missing}"


def test_readme_is_short_and_keeps_the_test_command():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300, (
        "README.md is the front door: keep it at most 300 lines (move detail to docs/)"
    )
    assert TEST_COMMAND in text


def test_relative_links_point_to_files_that_exist():
    broken = []
    for page in _pages():
        for target in _links(page):
            if not _relative(target):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_docs_pages_the_readme_links_exist():
    pages = {
        target.split("#", 1)[0]
        for target in _links(README)
        if _relative(target) and target.startswith("docs/") and target.split("#", 1)[0].endswith(".md")
    }
    assert pages, "README.md links no docs page"
    missing = sorted(page for page in pages if not (ROOT / page).is_file())
    assert not missing, f"README.md links docs pages that do not exist: {missing}"
