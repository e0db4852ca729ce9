"""Substitution-only templates render without Jinja, with exactly Jinja's sandboxed result.

``templating.render`` takes a shortcut for templates that are only text and ``{{ name.key }}``
outputs. These tests hold it to the sandbox's behaviour: same text, same escaping, the same error
whenever Jinja gives one (a missing value, a dict method's name, a value that is not a dict).
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from storeloop.messaging.templating import TemplateProblem, _compiled, _substitution, render


def jinja_render(source: str, context: dict[str, Any], html: bool) -> str:
    """What the sandbox renders, with no shortcut: the reference."""
    try:
        return str(_compiled(source, html).render(**context))
    except Exception as exc:  # the same failure must come out of render() as a TemplateProblem
        return f"<error {type(exc).__name__}>"


def shortcut_render(source: str, context: dict[str, Any], html: bool) -> str:
    try:
        return render(source, context, field="body", html=html)
    except TemplateProblem as problem:
        return f"<problem {problem.message[:0]}>"


class Shouty:
    def __str__(self) -> str:
        return "<SHOUT & co>"


class Html:
    def __html__(self) -> str:
        return "<i>already safe</i>"

    def __str__(self) -> str:
        return "plain"


values = st.one_of(
    st.text(alphabet="ab<>&'\" \nZoë€", max_size=8),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.just(Decimal("19.90")),
    st.just(Markup("<b>safe</b>")),
    st.just([1, "<x>"]),
    st.builds(Shouty),
    st.builds(Html),
)
KEYS = ["first_name", "total", "items", "keys", "get", "x", "_private", "__class__", "number"]
leaves = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
nested = st.dictionaries(st.sampled_from(KEYS), st.one_of(values, leaves, leaves.map(OrderedDict)), max_size=5)
contexts = st.fixed_dictionaries(
    {},
    optional={"contact": nested, "order": nested, "custom": st.one_of(nested, values), "store": nested},
)
names = st.sampled_from(["contact", "order", "custom", "store", "missing", "range"])
paths = st.builds(lambda name, keys: ".".join([name, *keys]), names, st.lists(st.sampled_from(KEYS), max_size=2))
outputs = st.builds(
    lambda path, left, right: "{{" + left + " " + path + " " + right + "}}",
    paths,
    st.sampled_from(["", "-"]),
    st.sampled_from(["", "-"]),
)
texts = st.text(alphabet="Hi <p>&'\"\n \t!%20", max_size=12)
sources = st.lists(st.one_of(texts, outputs), min_size=1, max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(source=sources, context=contexts, html=st.booleans())
def test_the_shortcut_renders_what_the_sandbox_renders(source: str, context: dict[str, Any], html: bool) -> None:
    expected = jinja_render(source, context, html)
    got = shortcut_render(source, context, html)
    if expected.startswith("<error "):
        assert got.startswith("<problem ")
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("Hello {{ contact.first_name }}! Our news.", ("Hello ", ("contact", "first_name"), "! Our news.")),
        ("<p>{{ order.number }}</p>\n", ("<p>", ("order", "number"), "</p>")),  # Jinja drops one final newline
        ("{{ custom }}{{ store.a.b }}", (("custom",), ("store", "a", "b"))),
        ("{{- contact.first_name -}}  !", (("contact", "first_name"), "!")),
        ("no values at all", ("no values at all",)),
    ],
)
def test_plain_substitutions_take_the_shortcut(source: str, parts: tuple[Any, ...]) -> None:
    assert _substitution(source, False) == parts


@pytest.mark.parametrize(
    "source",
    [
        "{{ contact.first_name | upper }}",
        "{{ contact['first_name'] }}",
        "{% if contact %}x{% endif %}",
        "{% for line in order.lines %}{{ line }}{% endfor %}",
        "{{ contact.items }}",  # a dict method for the sandbox, not the "items" key
        "{{ contact._secret }}",
        "{{ 'constant' }}",
        "{{ 1 + 2 }}",
        "{{ contact.first_name }",  # a syntax error: Jinja reports it
    ],
)
def test_everything_else_goes_through_jinja(source: str) -> None:
    assert _substitution(source, False) is None


def test_a_missing_value_is_jinjas_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateProblem, match="missing value"):
        render("Hi {{ contact.first_name }}", {"contact": {}}, field="body_text")
    with pytest.raises(TemplateProblem, match="missing value"):
        render("Hi {{ nobody.first_name }}", {}, field="body_text")


def test_values_are_escaped_in_html_only() -> None:
    context = {"contact": {"first_name": "<b>Zoë</b> & co"}}
    assert render("Hi {{ contact.first_name }}", context, field="t") == "Hi <b>Zoë</b> & co"
    assert render("<p>{{ contact.first_name }}</p>", context, field="h", html=True) == (
        "<p>&lt;b&gt;Zoë&lt;/b&gt; &amp; co</p>"
    )


def test_a_key_named_like_a_dict_method_reads_as_the_sandbox_reads_it() -> None:
    context = {"contact": {"items": "three"}}
    assert render("{{ contact.items }}", context, field="t") == jinja_render("{{ contact.items }}", context, False)
    assert render("{{ contact.items }}", context, field="t").startswith("<built-in method items")
