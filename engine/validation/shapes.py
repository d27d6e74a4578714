"""Final validators of record shapes that skills need, on JSON answers (`type: json` stages):

choice        the answer names exactly one of its options by key (a multiple-choice record)
element_ids   every action of an answer names an element that exists on the item's page

A schema can say "a string"; only these can say "one of the keys of the options written
next to it" or "an id of this page's elements". Answers that are not JSON are the `schema`
validator's business: these pass them by."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import Field

from gristmill.validation.base import Context, Params, Rejection


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def at(value: Any, path: str) -> Any:
    """The value at a dotted path ('a.b'), None when a step is missing."""
    for step in filter(None, path.split(".")):
        value = value.get(step) if isinstance(value, dict) else None
    return value


class Choice:
    name: ClassVar[str] = "choice"
    kind: ClassVar[str] = "final"

    class Params(Params):
        options: str = Field("options", description="Path of the options: an object of key "
                             "-> text, or a list of {key, text}.")
        key: str = Field("answer", description="Path of the key the answer chooses.")
        min_options: int = Field(2, ge=2, description="Fewest options a question must offer.")

    def __init__(self, params: "Choice.Params") -> None:
        self.params = params

    def check(self, text: str, context: Context) -> Rejection | None:
        value = _json(text)
        if not isinstance(value, dict):
            return None
        options = at(value, self.params.options)
        if isinstance(options, list):
            keys = [o.get("key") for o in options if isinstance(o, dict)]
        elif isinstance(options, dict):
            keys = list(options)
        else:
            return Rejection(self.name, f"no options at {self.params.options!r}")
        if len(keys) < self.params.min_options or len(set(keys)) != len(keys):
            return Rejection(self.name, f"{len(keys)} options ({len(set(keys))} distinct keys); "
                             f"a question needs at least {self.params.min_options} distinct ones")
        chosen = at(value, self.params.key)
        if isinstance(chosen, list):
            return Rejection(self.name, f"{len(chosen)} keys chosen; exactly one must be")
        if chosen not in keys:
            return Rejection(self.name, f"the key {chosen!r} is none of the options {keys}")
        return None


class ElementIds:
    name: ClassVar[str] = "element_ids"
    kind: ClassVar[str] = "final"

    class Params(Params):
        actions: str = Field("actions", description="Path of the list of actions in the answer.")
        field: str = Field("element", description="The key of an action that names an element "
                           "(an action without it, e.g. answer or scroll, passes).")
        ids: str = Field("element_ids", description="Path of the item's value holding the "
                         "page's element ids (HTML seeds set `element_ids`).")

    def __init__(self, params: "ElementIds.Params") -> None:
        self.params = params

    def check(self, text: str, context: Context) -> Rejection | None:
        value = _json(text)
        if value is None:
            return None
        actions = at(value, self.params.actions) if isinstance(value, dict) else value
        if not isinstance(actions, list) or not actions:
            return Rejection(self.name, f"no list of actions at {self.params.actions!r}")
        known = at(context.record, self.params.ids)
        if not isinstance(known, (list, tuple, set, frozenset)):
            return Rejection(self.name, f"the item has no {self.params.ids!r} to check against")
        known = set(known)
        for index, action in enumerate(actions):
            element = action.get(self.params.field) if isinstance(action, dict) else None
            if element is not None and element not in known:
                return Rejection(self.name, f"action {index} names element {element!r}, "
                                 "which is not on the page")
        return None
