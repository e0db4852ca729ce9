"""TemplateRepository: validation with line numbers, the sandbox, versions, rollback, rendering."""

from __future__ import annotations

from typing import Any

import pytest

from storeloop.core.errors import NotFound, ValidationError
from storeloop.messaging.models import MessageTemplate, TemplateVersion
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
repo = TemplateRepository()


def email(store: Any, **kw: Any) -> TemplateVersion:
    fields = {"subject": "Order {{ order.number }}", "body_text": "Hi {{ contact.first_name }}",
              "body_html": "<p>Hi {{ contact.first_name }}</p>"}  # fmt: skip
    fields.update(kw)
    return repo.save_template(store, "order-confirmation", "email", **fields)


def test_render_escapes_html_but_not_text(store: Any) -> None:
    version = email(store)
    repo.publish(version)
    context = {"contact": {"first_name": "<b>Zoë</b>"}, "order": {"number": "7"}, "store": {}}
    out = repo.render_template(repo.get_template(store, "order-confirmation", "email"), context)
    assert out.subject == "Order 7"
    assert out.text == "Hi <b>Zoë</b>"
    assert out.html == "<p>Hi &lt;b&gt;Zoë&lt;/b&gt;</p>"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("Hi {{ contact.first_name }\n", "body_text, line 1"),
        ("line one\n{{ secret_sauce }}", "unknown variable 'secret_sauce'"),
        ("{{ ''.__class__ }}", "'__class__' is not allowed"),
        ("{{ ''.__class__.__mro__ }}", "is not allowed in templates"),
        ("{{ contact._meta }}", "'_meta' is not allowed"),
        ("{{ contact['__dict__'] }}", "'__dict__' is not allowed"),
        ("Hi\n{{ ''|attr('__class__') }}", "body_text, line 2: '__class__' is not allowed"),
        ("{{ order.items|map(attribute='__class__')|list }}", "'__class__' is not allowed"),
        ("{{ order.items|sort(attribute='product._meta')|first }}", "'product._meta' is not allowed"),
        ("{{ order.items|selectattr('__init__')|list }}", "'__init__' is not allowed"),
        ("{% set n = '__class__' %}{{ contact|attr(n) }}", "attr with an attribute name that is not a constant"),
        ("{% for x in order.items %}{{ x }}{% endfor %}\n{{ custom.code }}", "unknown variable 'custom'"),
    ],
)
def test_invalid_templates_are_refused_with_the_place(store: Any, source: str, error: str) -> None:
    with pytest.raises(ValidationError) as exc:
        email(store, body_text=source)
    assert error in exc.value.message
    assert exc.value.code == "invalid_template"
    assert not TemplateVersion.objects.exists()


def test_the_sandbox_stops_probes_at_render_time_too(store: Any) -> None:
    version = email(store, body_text="{{ contact.first_name }}")
    with pytest.raises(ValidationError) as exc:
        repo.render_template(version, {"contact": {"first_name": "x"}.keys().__class__, "order": {}, "store": {}})
    assert exc.value.code == "invalid_template"


def test_versions_are_immutable_and_rollback_republishes(store: Any) -> None:
    v1 = email(store, subject="First {{ order.number }}")
    v2 = email(store, subject="Second {{ order.number }}")
    assert (v1.number, v2.number) == (1, 2)
    repo.publish(v2)
    assert repo.get_template(store, "order-confirmation", "email") == v2
    repo.publish(v1)  # rollback
    assert repo.get_template(store, "order-confirmation", "email") == v1
    v1.subject = "edited"
    with pytest.raises(ValueError, match="immutable"):
        v1.save()


def test_locale_fallback_and_missing(store: Any, other_store: Any) -> None:
    repo.publish(email(store))
    assert repo.get_template(store, "order-confirmation", "email", "de-AT").number == 1
    with pytest.raises(NotFound):
        repo.get_template(other_store, "order-confirmation", "email")


def test_sms_segment_limit_and_plain_text(store: Any) -> None:
    ok = repo.save_template(store, "cod-code", "sms", body_text="Your code for order {{ order.number }} is 123456")
    assert ok.number == 1
    with pytest.raises(ValidationError) as long:
        repo.save_template(store, "promo", "sms", body_text="Zoë 🎉 " * 80)
    assert long.value.code == "sms_too_long"
    with pytest.raises(ValidationError):
        repo.save_template(store, "promo", "sms", body_text="x", body_html="<p>x</p>")


def test_email_needs_a_subject_and_a_body(store: Any) -> None:
    with pytest.raises(ValidationError):
        email(store, subject="")
    with pytest.raises(ValidationError):
        email(store, body_text="", body_html="")
    assert not MessageTemplate.objects.exists() or not TemplateVersion.objects.exists()


def test_whatsapp_template_parameters_are_rendered(store: Any) -> None:
    version = repo.save_template(store, "shipped", "whatsapp", body_text="Shipped {{ order.number }}",
                                 wa_template_name="order_update", wa_language="en_US",
                                 wa_parameters=["{{ contact.first_name }}", "{{ order.number }}"])  # fmt: skip
    assert repo.preview(version).wa_parameters == ("Zoë", "1042")


@pytest.mark.parametrize(
    ("parameter", "error"),
    [
        ("", "renders empty with sample data; WhatsApp refuses empty parameters"),
        (
            "{{ contact.first_name }}\n{{ order.number }}",
            "WhatsApp parameters cannot hold new lines, tabs or more than four spaces in a row",
        ),
        (
            "{{ contact.first_name }}\t!",
            "WhatsApp parameters cannot hold new lines, tabs or more than four spaces in a row",
        ),
        (
            "{{ contact.first_name }}     !",
            "WhatsApp parameters cannot hold new lines, tabs or more than four spaces in a row",
        ),
        ("{{ 'x' * 1025 }}", "renders to 1025 characters with sample data; at most 1024"),
    ],
)
def test_whatsapp_template_parameters_meta_would_refuse_are_refused_at_save_time(
    store: Any, parameter: str, error: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        repo.save_template(store, "shipped", "whatsapp", body_text="Shipped", wa_template_name="order_update",
                           wa_language="en_US", wa_parameters=["{{ order.number }}", parameter])  # fmt: skip
    assert (exc.value.code, exc.value.details) == ("invalid_template", [{"field": "wa_parameters[1]", "error": error}])
    assert not TemplateVersion.objects.exists()
    # Four spaces in a row are fine, as is a long value within the limit.
    repo.save_template(store, "shipped", "whatsapp", body_text="Shipped", wa_template_name="order_update",
                       wa_language="en_US", wa_parameters=["a    b", "{{ 'x' * 1024 }}"])  # fmt: skip


def test_loops_nested_too_deep_are_refused_at_save_time(store: Any) -> None:
    source = "{% for a in order.lines %}{% for b in a %}{% for c in b %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"
    with pytest.raises(ValidationError) as exc:
        email(store, body_text="line one\n" + source)
    assert "loops may be nested at most 2 deep" in exc.value.message
    assert "line 2" in exc.value.message
    assert not TemplateVersion.objects.exists()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        # range is no declared variable, so nested million-step loops cannot even be saved
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "unknown variable 'range'",
        ),
        ("{{ 'x' * 1000000000 }}", "results longer than 10000"),
        ("{{ [1] * 100000 }}", "results longer than 10000"),
        ("{{ 9 ** 99999999 }}", "exponents above 64"),
    ],
)
def test_templates_cannot_tie_up_a_worker(store: Any, source: str, error: str) -> None:
    """Bounded work per render: these are refused (at save time, via the sample render, or at send)."""
    with pytest.raises(ValidationError) as exc:
        version = repo.save_template(store, "big", "email", subject="s", body_text=source, body_html="")
        repo.render_template(version, {"contact": {}, "order": {}, "store": {}})
    assert error in exc.value.message
    assert exc.value.code == "invalid_template"


def test_small_loops_and_products_still_work(store: Any) -> None:
    version = repo.save_template(
        store, "fine", "email", subject="s",
        body_text="{% for i in order.lines %}{{ i }}{% endfor %} {{ '-' * 5 }} {{ 2 ** 10 }}", body_html="",
    )  # fmt: skip
    out = repo.render_template(version, {"contact": {}, "order": {"lines": [0, 1, 2]}, "store": {}})
    assert out.text == "012 ----- 1024"


def test_filters_reading_public_attributes_by_name_are_fine(store: Any) -> None:
    source = (
        "{{ order.lines|map(attribute='name')|join(', ') }}|"
        "{{ order.lines|sort(attribute='name')|first|attr('get') is defined }}"
    )
    version = email(store, body_text=source)
    order = {"number": 7, "lines": [{"name": "Mug"}, {"name": "Tea"}]}
    out = repo.render_template(version, {"contact": {"first_name": "Zoë"}, "store": {}, "order": order})
    assert out.text == "Mug, Tea|True"
