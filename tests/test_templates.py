"""The fast substitution path renders exactly what Jinja renders."""

import jinja2
from hypothesis import given, settings, strategies as st

from gristmill.flows.templates import SubstitutionTemplate, compile_template

JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
NAMES = ["seed", "question", "answer_1"]
VALUES = {"seed": "a\nb {{ not a tag }}", "question": 42, "answer_1": None}

literal = st.text(alphabet=st.sampled_from(list("ab \n\r{}%#-")), max_size=12)
hole = st.sampled_from(NAMES).map(lambda n: st.sampled_from(
    ["{{%s}}" % n, "{{ %s }}" % n, "{{  %s}}" % n])).flatmap(lambda s: s)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(literal, hole), max_size=8))
def test_same_text_as_jinja(pieces):
    source = "".join(pieces)
    try:
        expected = JINJA.from_string(source).render(VALUES)
    except jinja2.TemplateError:
        return  # not a valid template at all; config validation rejects it earlier
    assert compile_template(source).render(VALUES) == expected


def test_plain_prompts_take_the_fast_path_and_logic_does_not():
    assert isinstance(compile_template("Passage:\n{{ seed }}\n\nQ: {{ question }}\n"),
                      SubstitutionTemplate)
    assert not isinstance(compile_template("{% if seed %}x{% endif %}"), SubstitutionTemplate)
    assert not isinstance(compile_template("{{ seed | upper }}"), SubstitutionTemplate)
    assert compile_template("{{ seed | upper }}").render({"seed": "ab"}) == "AB"
