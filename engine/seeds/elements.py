"""The element view of a web page: its interactive and landmark elements (links, buttons,
form fields, selects with their options, headings, forms, images with alt text, landmarks),
each with a role, an accessible name and an id `e1, e2, ...` in document order, so the same
page always gives the same ids. A web-agent task can then say "click [e7]".

The page is parsed with lxml's HTML parser (libxml2: fast, and forgiving of broken markup);
lxml is already installed with trafilatura. The accessible name follows the usual order,
simplified: aria-label, aria-labelledby, a <label>, the element's text, alt, placeholder,
title, value."""

from __future__ import annotations

import json
from typing import Any, Iterator

MAX_ELEMENTS = 300  # a page with more (a long link list) keeps the first ones, and says so
MAX_NAME_CHARS = 80
MAX_OPTIONS = 30

LANDMARKS = {"nav": "navigation", "main": "main", "header": "banner", "footer": "contentinfo",
             "aside": "complementary", "form": "form"}
BUTTON_INPUTS = frozenset({"submit", "button", "reset", "image"})
INPUT_ROLES = {"checkbox": "checkbox", "radio": "radio", "range": "slider", "search": "searchbox",
               "file": "file"}
# Explicit roles kept as written (on a <div role="button"> and the like).
ARIA_ROLES = frozenset({"button", "link", "checkbox", "radio", "switch", "tab", "menuitem",
                        "textbox", "searchbox", "combobox", "slider", "search", "navigation",
                        "main", "banner", "contentinfo", "complementary", "region", "form",
                        "dialog", "heading"})
# Regions are named by aria-label/title only: all the text of a form or a nav is no name.
REGIONS = frozenset({*LANDMARKS.values(), "region", "search", "dialog"})
SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head"})


def _clean(text: str | None, limit: int = MAX_NAME_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _text(el: Any) -> str:
    """Visible text of an element; images inside count by their alt text."""
    parts = [el.text or ""]
    for child in el:
        if isinstance(child.tag, str) and child.tag not in SKIPPED_TAGS:
            parts.append(child.get("alt") or "" if child.tag == "img" else _text(child))
        parts.append(child.tail or "")
    return " ".join(parts)


def _hidden(el: Any) -> bool:
    style = (el.get("style") or "").replace(" ", "").lower()
    return (el.get("hidden") is not None or el.get("aria-hidden") == "true"
            or "display:none" in style or "visibility:hidden" in style
            or (el.tag == "input" and (el.get("type") or "").lower() == "hidden"))


def _visible(root: Any) -> Iterator[Any]:
    """Elements in document order, without hidden subtrees (an explicit stack: deep markup
    must not exhaust Python's recursion)."""
    stack = [root]
    while stack:
        el = stack.pop()
        if not isinstance(el.tag, str) or el.tag in SKIPPED_TAGS or _hidden(el):
            continue
        yield el
        stack.extend(reversed(el))


def _role(el: Any) -> str | None:
    tag, explicit = el.tag, (el.get("role") or "").strip().lower()
    if explicit in ARIA_ROLES:
        return explicit
    if tag == "a":
        return "link" if el.get("href") is not None else None
    if tag == "button":
        return "button"
    if tag == "input":
        kind = (el.get("type") or "text").lower()
        return "button" if kind in BUTTON_INPUTS else INPUT_ROLES.get(kind, "textbox")
    if tag == "textarea":
        return "textbox"
    if tag == "select":
        return "listbox" if el.get("multiple") is not None else "combobox"
    if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
        return "heading"
    if tag == "img":
        return "img" if (el.get("alt") or "").strip() else None
    if tag == "section" and el.get("aria-label"):
        return "region"
    return LANDMARKS.get(tag)


class _Labels:
    """`<label for=...>` texts and elements by id, gathered once per page."""

    def __init__(self, root: Any) -> None:
        self.by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
        self.label_for = {el.get("for"): _text(el) for el in root.iter("label") if el.get("for")}

    def name(self, el: Any, role: str) -> str:
        if name := _clean(el.get("aria-label")):
            return name
        if ref := el.get("aria-labelledby"):
            name = _clean(" ".join(_text(self.by_id[i]) for i in ref.split() if i in self.by_id))
            if name:
                return name
        if el.tag in ("input", "select", "textarea"):
            if name := _clean(self.label_for.get(el.get("id"))) or self._wrapping_label(el):
                return name
        elif role not in REGIONS and (name := _clean(_text(el))):
            return name
        for attribute in ("alt", "placeholder", "title"):
            if name := _clean(el.get(attribute)):
                return name
        if el.tag == "input" and role == "button":
            return _clean(el.get("value")) or (el.get("type") or "submit").capitalize()
        return ""

    @staticmethod
    def _wrapping_label(el: Any) -> str:
        for ancestor in el.iterancestors("label"):
            return _clean(_text(ancestor))
        return ""


def _details(el: Any, role: str) -> dict[str, Any]:
    """What a task needs besides role and name: where a link goes, a field's type and value,
    a select's options, a heading's level, a form's action; flags only when set."""
    out: dict[str, Any] = {}
    if role == "link" and el.get("href") is not None:
        out["href"] = el.get("href")
    if el.tag == "input":
        kind = (el.get("type") or "text").lower()
        if role == "textbox" and kind != "text":
            out["type"] = kind
        if el.get("value") and kind not in ("password", *BUTTON_INPUTS, "checkbox", "radio"):
            out["value"] = _clean(el.get("value"))
    if el.tag == "select":
        options = [o for o in el.iter("option")]
        out["options"] = [_clean(o.text_content()) for o in options[:MAX_OPTIONS]]
        chosen = [o for o in options if o.get("selected") is not None] or options[:1]
        if chosen:
            out["value"] = _clean(chosen[0].text_content())
    if el.tag == "textarea" and (el.text or "").strip():
        out["value"] = _clean(el.text)
    if role == "heading" and el.tag[0] == "h" and el.tag[1:].isdigit():
        out["level"] = int(el.tag[1:])
    if el.tag == "form":
        out["action"] = el.get("action") or ""
        out["method"] = (el.get("method") or "get").lower()
    for flag in ("checked", "disabled", "required"):
        if el.get(flag) is not None:
            out[flag] = True
    return out


def element_view(root: Any) -> tuple[list[dict[str, Any]], int]:
    """(elements, how many more there were past MAX_ELEMENTS) of a parsed page."""
    labels = _Labels(root)
    elements: list[dict[str, Any]] = []
    omitted = 0
    for el in _visible(root):
        role = _role(el)
        if role is None:
            continue
        if len(elements) == MAX_ELEMENTS:
            omitted += 1
            continue
        elements.append({"id": f"e{len(elements) + 1}", "role": role,
                         "name": labels.name(el, role), **_details(el, role)})
    return elements, omitted


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # "Results for \"bread\"" stays one token


def render(elements: list[dict[str, Any]], omitted: int = 0) -> str:
    """One line per element: `[e3] button "Add to cart"`, then its details."""
    lines = []
    for e in elements:
        line = f'[{e["id"]}] {e["role"]}'
        if e["name"]:
            line += " " + _quoted(e["name"])
        if "level" in e:
            line += f" h{e['level']}"
        if "type" in e:
            line += f" ({e['type']})"
        if "href" in e:
            line += f" -> {e['href']}"
        if "action" in e:
            line += f" {e['method'].upper()} {e['action']}"
        if "value" in e:
            line += " = " + _quoted(e["value"])
        if "options" in e:
            line += " options: " + " | ".join(e["options"])
        line += "".join(f" {flag}" for flag in ("checked", "disabled", "required") if e.get(flag))
        lines.append(line)
    if omitted:
        lines.append(f"... {omitted} more elements not shown")
    return "\n".join(lines)
