"""HTML pages as seeds: the page's main text (for prose skills) and its element view (for
web-agent tasks, seeds/elements.py).

Main text comes from trafilatura: a maintained boilerplate remover (navigation, footers,
cookie banners, share bars) that does better on real pages than tag rules, and is pure Python
on top of lxml. It and the element view share the one lxml parse of the page."""

from __future__ import annotations

from typing import Any, Iterator

from gristmill.seeds.clean import prose_parts
from gristmill.seeds.elements import element_view, render
from gristmill.seeds.files import InputFile, Unusable, read_text
from gristmill.seeds.report import SeedReport

MAX_PAGE_BYTES = 5 << 20  # a bigger "page" is a dump or an archive, not a page


def _trafilatura() -> Any:
    import trafilatura  # a dependency; imported only when a config reads html

    return trafilatura


def read_page(file: InputFile, report: SeedReport) -> Iterator[tuple[str, dict[str, Any]]]:
    """(main text, extra) of one page, or nothing (the problem reported)."""
    trafilatura = _trafilatura()
    from lxml import etree, html

    where = str(file.path)
    try:
        source = read_text(file.path, MAX_PAGE_BYTES)
        if not source.strip():
            raise Unusable("empty", "only whitespace")
        root = html.document_fromstring(source)
    except Unusable as exc:
        report.problem(where, exc.reason, exc.detail)
        return
    except (etree.ParserError, ValueError) as exc:  # no document at all, or a bad declaration
        report.problem(where, "bad_html", str(exc))
        return
    title = " ".join((root.findtext(".//title") or "").split())
    elements, omitted = element_view(root)
    # deduplicate=False: a repeated sentence on one page is content, and trafilatura's
    # duplicate cache is process-wide, so it would make a page's text depend on earlier pages.
    main = trafilatura.extract(root, include_comments=False, include_tables=True,
                               deduplicate=False, with_metadata=False) or ""
    if not main.strip() and not elements:
        report.problem(where, "empty", "no main text and no interactive elements")
        return
    yield main, {"title": title, "elements": elements, "elements_text": render(elements, omitted)}


def page_parts(main: str) -> list[tuple[str, str]]:
    """Paragraphs of the main text: trafilatura puts one block per line."""
    return list(prose_parts(line for block in main.splitlines() for line in (block, "")))
