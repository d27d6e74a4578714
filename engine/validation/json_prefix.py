"""The `json_prefix` streaming validator: reject a structured answer as soon as what has
arrived cannot be the start of a JSON document.

A small push-down state machine over the JSON grammar (RFC 8259): strings with escapes and
\\u sequences, numbers, the literals true/false/null, objects and arrays with commas and
colons in the right places, whitespace between tokens (leading whitespace too). It is
strict: no code fences, comments, trailing commas or single quotes, since a server with a
JSON-schema response_format sends raw JSON. Runs of ordinary string characters and of
whitespace are skipped with a regex, so the Python loop runs per structural character only.
`finish()` rejects a document that is incomplete (open string, brackets, or no value).
"""

from __future__ import annotations

import re
from typing import ClassVar

from gristmill.validation.base import PASS, Check, Context, Params, Rejection, StreamCheck, quote

# Token states.
STRUCT, STRING, ESCAPE, UNICODE, NUMBER, LITERAL = range(6)
# What the structure expects next.
VALUE, VALUE_OR_CLOSE, KEY_OR_CLOSE, KEY, COLON, AFTER_VALUE, END = range(7)
_EXPECTED = {VALUE: "a value", VALUE_OR_CLOSE: "a value or ']'", KEY_OR_CLOSE: "a key or '}'",
             KEY: "a key string", COLON: "':'", END: "the end of the document"}
# Number states: (state, char class) -> next state; states in _NUM_FINAL may end the number.
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXP_SIGN, N_EXP_DIGITS = range(8)
_NUM_FINAL = frozenset({N_ZERO, N_INT, N_FRAC, N_EXP_DIGITS})
_NUM_NEXT = {
    (N_MINUS, "0"): N_ZERO, (N_MINUS, "d"): N_INT, (N_INT, "0"): N_INT, (N_INT, "d"): N_INT,
    (N_ZERO, "."): N_DOT, (N_INT, "."): N_DOT, (N_DOT, "0"): N_FRAC, (N_DOT, "d"): N_FRAC,
    (N_FRAC, "0"): N_FRAC, (N_FRAC, "d"): N_FRAC, (N_ZERO, "e"): N_EXP, (N_INT, "e"): N_EXP,
    (N_FRAC, "e"): N_EXP, (N_EXP, "+"): N_EXP_SIGN, (N_EXP, "0"): N_EXP_DIGITS,
    (N_EXP, "d"): N_EXP_DIGITS, (N_EXP_SIGN, "0"): N_EXP_DIGITS, (N_EXP_SIGN, "d"): N_EXP_DIGITS,
    (N_EXP_DIGITS, "0"): N_EXP_DIGITS, (N_EXP_DIGITS, "d"): N_EXP_DIGITS,
}
_NUM_CLASS = {**{d: "d" for d in "123456789"}, "0": "0", ".": ".", "e": "e", "E": "e",
              "+": "+", "-": "+"}
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]*')
_SPACE_RUN = re.compile(r"[ \t\n\r]*")
CONTEXT_CHARS = 30


class JsonPrefix:
    """Active for structured requests only (`context.structured`)."""

    name: ClassVar[str] = "json_prefix"
    kind: ClassVar[str] = "stream"

    class Params(Params):
        pass

    def __init__(self, params: "JsonPrefix.Params") -> None:
        self.params = params

    def start(self, context: Context) -> StreamCheck:
        return JsonPrefixCheck() if context.structured else PASS


class JsonPrefixCheck(Check):
    __slots__ = ("state", "mode", "stack", "key", "num", "literal", "hex_left", "offset",
                 "tail", "text")

    def __init__(self) -> None:
        super().__init__()
        self.state, self.mode, self.stack = STRUCT, VALUE, []
        self.key = False  # the open string is an object key
        self.num = N_INT
        self.literal = ""  # the rest of the literal being read
        self.hex_left = 0
        self.offset = 0  # characters before the current feed
        self.tail = ""  # the last characters before the current feed (for reasons)
        self.text = ""

    def _feed(self, new_text: str) -> Rejection | None:
        self.text = new_text
        rejection = self._scan(new_text)
        self.text = ""  # only needed to quote an error
        self.offset += len(new_text)
        self.tail = (self.tail + new_text)[-CONTEXT_CHARS:]
        return rejection

    def _finish(self) -> Rejection | None:
        if self.state == NUMBER:
            if self.num not in _NUM_FINAL:
                return self._incomplete("an unfinished number")
            self.state = STRUCT
            self._value_done()
        if self.state in (STRING, ESCAPE, UNICODE):
            return self._incomplete("an unterminated string")
        if self.state == LITERAL:
            return self._incomplete("an unfinished literal")
        if self.mode == END:
            return None
        if not self.stack and self.mode == VALUE:
            return Rejection("json_prefix", "incomplete JSON: no value (empty answer)")
        return self._incomplete(f"{len(self.stack)} unclosed bracket(s)")

    def _incomplete(self, what: str) -> Rejection:
        return Rejection("json_prefix", f"incomplete JSON: the answer ends in {what} "
                         f"after {quote(self.tail, CONTEXT_CHARS)}")

    def _error(self, i: int, expected: str) -> Rejection:
        before = (self.tail + self.text[:i])[-CONTEXT_CHARS:]
        return Rejection("json_prefix", f"not JSON at char {self.offset + i}: "
                         f"{self.text[i]!r} where {expected} was expected, after {quote(before)}")

    def _value_done(self) -> None:
        self.mode = AFTER_VALUE if self.stack else END

    def _scan(self, text: str) -> Rejection | None:
        i, n = 0, len(text)
        while i < n:
            state = self.state
            if state == STRING:
                i = _STRING_RUN.match(text, i).end()
                if i == n:
                    break
                c = text[i]
                if c == '"':
                    self.state = STRUCT
                    if self.key:
                        self.mode = COLON
                    else:
                        self._value_done()
                elif c == "\\":
                    self.state = ESCAPE
                else:
                    return self._error(i, "an escaped control character")
                i += 1
            elif state == STRUCT:
                i = _SPACE_RUN.match(text, i).end()
                if i == n:
                    break
                if (error := self._struct(text[i], i)) is not None:
                    return error
                i += 1
            elif state == NUMBER:
                nxt = _NUM_NEXT.get((self.num, _NUM_CLASS.get(text[i], "")))
                if nxt is not None:
                    self.num = nxt
                    i += 1
                elif self.num in _NUM_FINAL:  # the number ended; read this char as structure
                    self.state = STRUCT
                    self._value_done()
                else:
                    return self._error(i, "a digit")
            elif (error := self._small(state, text[i], i)) is not None:
                return error
            else:
                i += 1
        return None

    def _small(self, state: int, c: str, i: int) -> Rejection | None:
        """Escapes, \\u digits and literals: one character at a time."""
        if state == ESCAPE:
            if c == "u":
                self.state, self.hex_left = UNICODE, 4
            elif c in _ESCAPES:
                self.state = STRING
            else:
                return self._error(i, "an escape character")
        elif state == UNICODE:
            if c not in _HEX:
                return self._error(i, "a hex digit")
            self.hex_left -= 1
            if not self.hex_left:
                self.state = STRING
        else:  # LITERAL
            if c != self.literal[0]:
                return self._error(i, repr(self.literal[0]))
            self.literal = self.literal[1:]
            if not self.literal:
                self.state = STRUCT
                self._value_done()
        return None

    def _struct(self, c: str, i: int) -> Rejection | None:
        mode = self.mode
        if mode in (VALUE, VALUE_OR_CLOSE):
            if c == "]" and mode == VALUE_OR_CLOSE:
                return self._close(c, i)
            return self._start_value(c, i)
        if mode in (KEY_OR_CLOSE, KEY):
            if c == '"':
                self.state, self.key = STRING, True
                return None
            if c == "}" and mode == KEY_OR_CLOSE:
                return self._close(c, i)
            return self._error(i, _EXPECTED[mode])
        if mode == COLON:
            if c != ":":
                return self._error(i, "':'")
            self.mode = VALUE
            return None
        if mode == AFTER_VALUE:
            if c == ",":
                self.mode = KEY if self.stack[-1] == "{" else VALUE
                return None
            if c in "]}":
                return self._close(c, i)
            closer = "}" if self.stack[-1] == "{" else "]"
            return self._error(i, f"',' or {closer!r}")
        return self._error(i, _EXPECTED[END])

    def _start_value(self, c: str, i: int) -> Rejection | None:
        if c == "{":
            self.stack.append("{")
            self.mode = KEY_OR_CLOSE
        elif c == "[":
            self.stack.append("[")
            self.mode = VALUE_OR_CLOSE
        elif c == '"':
            self.state, self.key = STRING, False
        elif c == "-":
            self.state, self.num = NUMBER, N_MINUS
        elif c in "0123456789":
            self.state, self.num = NUMBER, N_ZERO if c == "0" else N_INT
        elif c in _LITERALS:
            self.state, self.literal = LITERAL, _LITERALS[c]
        else:
            return self._error(i, _EXPECTED[self.mode])
        return None

    def _close(self, c: str, i: int) -> Rejection | None:
        if (c == "}") != (self.stack[-1] == "{"):
            return self._error(i, "'}'" if self.stack[-1] == "{" else "']'")
        self.stack.pop()
        self._value_done()
        return None
