"""Texts and helpers shared by the validator tests: sample answers, hypothesis settings, and
a chunked feed of a streaming check."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gristmill.validation import Context, Rejection, build

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EN = ("Water mills turned the energy of a river into useful work. The wheel was set in the "
      "stream, and the current pushed its paddles; a shaft carried the motion to the stones "
      "that ground the grain. Millers had to watch the level of the water, because a dry "
      "summer could stop the wheel for weeks. In many villages the mill was also the place "
      "where people met, traded news and settled small debts.")
DE = ("Die Wassermühle nutzte die Kraft des Flusses für nützliche Arbeit. Das Rad stand im "
      "Bach, und die Strömung drückte gegen seine Schaufeln; eine Welle trug die Bewegung zu "
      "den Steinen, welche das Getreide mahlten. Müller mussten den Wasserstand beobachten, "
      "denn ein trockener Sommer konnte das Rad wochenlang anhalten.")
RU = ("Водяная мельница превращала силу реки в полезную работу. Колесо стояло в потоке, и "
      "течение толкало его лопасти; вал передавал движение жерновам, которые мололи зерно. "
      "Мельник следил за уровнем воды, потому что сухое лето могло остановить колесо.")
LOOP = EN[:120] + " " + "The wheel turns and the grain is ground again. " * 12
LINES = "Intro line that is long enough to count.\n" + "- Repeat this exact list item here\n" * 6
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["items"],
          "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3,
                                   "items": {"type": "string", "minLength": 1}}}}


def one(spec):
    return build(spec)


def verdict(validator, text: str, cuts=(), context: Context | None = None) -> Rejection | None:
    """Feed `text` in pieces split at `cuts`; the first rejection, or finish()'s."""
    check = validator.start(context or Context())
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(text))), len(text)]
    for a, b in zip(bounds, bounds[1:]):
        if (rejection := check.feed(text[a:b])) is not None:
            return rejection
    return check.finish()


def cuts_for(text: str):
    return st.lists(st.integers(0, max(len(text), 1)), max_size=40)
