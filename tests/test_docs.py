"""The documentation holds together: every relative link in README.md and docs/ (and the READMEs
of tests/reliability and bench) leads to a file that exists and, with a #anchor, to a heading
there; the README stays a front door a newcomer reads in ten minutes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 260

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\n\n).)+?\1", re.DOTALL)
# [text](target) or [text](target "title"); the text may wrap onto the next line.
INLINE_LINK = re.compile(r"(?<!\\)\[[^\[\]]*\]\(\s*<?([^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (a reference-style link definition)
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
SKIPPED_SCHEMES = ("http://", "https://", "mailto:")


def doc_files() -> list[Path]:
    files = [README, *sorted((ROOT / "docs").glob("*.md"))]
    files += [ROOT / "tests/reliability/README.md", ROOT / "bench/README.md"]
    return [p for p in files if p.is_file()]


def prose(markdown: str) -> tuple[str, list[str]]:
    """The text outside fenced code blocks (fenced lines blanked, so line numbers stay) and the
    lines that are ATX headings."""
    kept: list[str] = []
    headings: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            kept.append("")
            continue
        if opening:
            fence = opening.group(1)
            kept.append("")
            continue
        kept.append(line)
        heading = HEADING.match(line)
        if heading:
            headings.append(heading.group(1) or "")
    return "\n".join(kept), headings


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-case, punctuation other than
    `-` and `_` removed, each space a `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's slug; a repeated slug gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for heading in prose(markdown)[1]:
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        result.add(slug)
    return result


def link_targets(markdown: str) -> list[str]:
    """The targets of every Markdown link outside code (fenced blocks and inline code spans)."""
    text = INLINE_CODE.sub("", prose(markdown)[0])
    targets = [m.group(1) for m in INLINE_LINK.finditer(text)]
    targets += [m.group(1) for m in LINK_DEFINITION.finditer(text)]
    return targets


def broken_links(doc: Path) -> list[str]:
    problems: list[str] = []
    for target in link_targets(doc.read_text(encoding="utf-8")):
        if target.lower().startswith(SKIPPED_SCHEMES):
            continue
        path_part, _, anchor = target.partition("#")
        path = unquote(path_part)
        if not path and not anchor:
            problems.append(f"({target}): empty link")
            continue
        if not path:
            linked = doc
        elif path.startswith("/"):
            linked = ROOT / path.lstrip("/")
        else:
            linked = (doc.parent / path).resolve()
        if not linked.exists():
            problems.append(f"({target}): no such file {os.path.relpath(linked, ROOT)}")
            continue
        if anchor and linked.suffix == ".md" and linked.is_file():
            wanted = unquote(anchor)
            if wanted not in anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"({target}): no heading #{wanted} in {linked.name}")
    return problems


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = broken_links(doc)
    assert not problems, f"{doc.relative_to(ROOT)}: broken links\n" + "\n".join(problems)


def test_readme_is_a_short_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make run" in text
    assert "make test" in text


def test_slugs_are_githubs() -> None:
    assert github_slug("How a submission travels") == "how-a-submission-travels"
    assert github_slug("Try it: the dev overlay") == "try-it-the-dev-overlay"
    assert github_slug("The sender's event id") == "the-senders-event-id"
    assert github_slug("From a script with `fetch()`") == "from-a-script-with-fetch"
    assert github_slug("INTAKE_* settings & [links](x.md)") == "intake_-settings--links"
    assert anchors("# Notes\n## Notes\n```\n# not a heading\n```\n## Notes\n") == {
        "notes",
        "notes-1",
        "notes-2",
    }


def test_links_in_code_are_not_links() -> None:
    markdown = (
        "See [the guide](docs/guide.md#start) and [a wrapped\nlink](other.md).\n"
        "`[inline](code.md)` is code, [web](https://example.com) is skipped later.\n"
        "```md\n[fenced](nowhere.md)\n```\n"
        "[label]: defined.md\n"
    )
    assert link_targets(markdown) == [
        "docs/guide.md#start",
        "other.md",
        "https://example.com",
        "defined.md",
    ]
