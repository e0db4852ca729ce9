"""``TemplateRepository``: per store, channel and locale, with immutable, publishable versions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Max

from storeloop.consent.models import Channel
from storeloop.core.errors import NotFound, ValidationError
from storeloop.messaging.models import MessageTemplate, TemplateVersion
from storeloop.messaging.templating import (
    ALLOWED_ROOTS,
    BUILTIN_NAMES,
    Rendered,
    TemplateProblem,
    check_source,
    names_used,
    render,
    render_sample,
)
from storeloop.stores.models import Store

MAX_SMS_SEGMENTS = 3
MAX_BODY_CHARS = 100_000
_KEY = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_LOCALE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,4})?")
# Column sizes: checked here so PostgreSQL never sees an over-long value (SQLite would store it).
_LIMITS = {"key": 100, "subject": 300, "description": 300, "wa_template_name": 200, "wa_language": 20}
SAMPLE_CONTEXT: dict[str, Any] = {
    "contact": {"first_name": "Zoë", "last_name": "Müller", "email": "zoe@example.com", "phone": "+4930123456"},
    "order": {"number": "1042", "total": "59.90", "currency": "EUR", "status": "processing", "items": 2},
    "store": {"name": "Demo shop", "url": "https://shop.example"},
    "custom": {},
    "unsubscribe_url": "https://storeloop.example/u/sample",
    "preferences_url": "https://storeloop.example/preferences/sample",
}


def _field_error(field: str, message: str, code: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", code=code, details=[{"field": field, "error": message}])


def _check_fields(key: str, locale: str, values: Mapping[str, str], bodies: Mapping[str, str]) -> None:
    if not _KEY.fullmatch(key):
        raise _field_error("key", "use lower-case letters, digits, '-' and '_' (e.g. order-confirmation)",
                           "invalid_key")  # fmt: skip
    if not _LOCALE.fullmatch(locale):
        raise _field_error("locale", "use a language code such as en, de or pt-BR", "invalid_locale")
    for field, value in values.items():
        if len(value) > _LIMITS[field]:
            raise _field_error(field, f"at most {_LIMITS[field]} characters", "too_long")
    for field, value in bodies.items():
        if len(value) > MAX_BODY_CHARS:
            raise _field_error(field, f"at most {MAX_BODY_CHARS:,} characters", "too_long")


def _problem(exc: TemplateProblem) -> ValidationError:
    return ValidationError(str(exc), code="invalid_template", details=[{"field": exc.field, "line": exc.line,
                                                                         "error": exc.message}])  # fmt: skip


# Meta refuses a template parameter that is empty (132012) or holds a new line, a tab or more than
# four spaces in a row (132018); a body parameter is also capped by the body's 1,024 characters.
_WA_PARAMETER_BREAKS = re.compile(r"[\n\t]| {5,}")
MAX_WA_PARAMETER_CHARS = 1024


def _check_wa_parameter(expression: str, field: str) -> None:
    """A WhatsApp template parameter rendered with sample data, against what Meta accepts."""
    try:
        value = render_sample(expression, SAMPLE_CONTEXT, field=field)
    except TemplateProblem as exc:
        raise _problem(exc) from None
    problem = ""
    if not value.strip():
        problem = "renders empty with sample data; WhatsApp refuses empty parameters"
    elif _WA_PARAMETER_BREAKS.search(value):
        problem = "WhatsApp parameters cannot hold new lines, tabs or more than four spaces in a row"
    elif len(value) > MAX_WA_PARAMETER_CHARS:
        problem = f"renders to {len(value)} characters with sample data; at most {MAX_WA_PARAMETER_CHARS}"
    if problem:
        raise ValidationError(f"{field}: {problem}", code="invalid_template",
                              details=[{"field": field, "error": problem}])  # fmt: skip


class TemplateRepository:
    """Save, publish, fetch and render message templates (design note 2C)."""

    def save_template(
        self,
        store: Store,
        key: str,
        channel: str,
        *,
        locale: str = "en",
        subject: str = "",
        body_text: str = "",
        body_html: str = "",
        variables: Sequence[str] = ("contact", "order", "store"),
        wa_template_name: str = "",
        wa_language: str = "",
        wa_parameters: Sequence[str] = (),
        description: str = "",
        created_by: str = "",
    ) -> TemplateVersion:
        """Validate and store a new draft version (publish it to use it)."""
        if channel not in Channel.values:
            raise ValidationError(f"unknown channel {channel!r}", code="invalid_channel")
        _check_fields(
            key, locale,
            {"key": key, "subject": subject, "description": description, "wa_template_name": wa_template_name,
             "wa_language": wa_language},
            {"body_text": body_text, "body_html": body_html},
        )  # fmt: skip
        unknown = set(variables) - ALLOWED_ROOTS
        if unknown:
            raise ValidationError(f"variables must be among {sorted(ALLOWED_ROOTS)}; got {sorted(unknown)}",
                                  code="invalid_variables", details=[{"field": "variables"}])  # fmt: skip
        declared = frozenset(variables)
        fields = {"subject": subject, "body_text": body_text, "body_html": body_html}
        try:
            for name, source in fields.items():
                check_source(source, field=name, declared=declared, html=name == "body_html")
            for index, expression in enumerate(wa_parameters):
                check_source(expression, field=f"wa_parameters[{index}]", declared=declared)
        except TemplateProblem as exc:
            raise _problem(exc) from None
        self._check_channel(channel, subject, body_text, body_html, wa_template_name, wa_parameters, declared)
        with transaction.atomic():
            template, _ = MessageTemplate.objects.get_or_create(
                store=store, key=key, channel=channel, locale=locale, defaults={"description": description}
            )
            template = MessageTemplate.objects.select_for_update().get(pk=template.pk)
            number = (template.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            return TemplateVersion.objects.create(
                template=template, number=number, variables=sorted(declared), subject=subject, body_text=body_text,
                body_html=body_html, wa_template_name=wa_template_name, wa_language=wa_language,
                wa_parameters=list(wa_parameters), created_by=created_by[:150],
            )  # fmt: skip

    def _check_channel(
        self, channel: str, subject: str, text: str, html: str, wa_name: str, wa_params: Sequence[str],
        declared: frozenset[str],
    ) -> None:  # fmt: skip
        if channel == Channel.EMAIL and not subject.strip():
            raise ValidationError("an email template needs a subject", code="invalid_template",
                                  details=[{"field": "subject", "error": "required"}])  # fmt: skip
        if channel == Channel.EMAIL and not (text.strip() or html.strip()):
            raise ValidationError("an email template needs a text or HTML body", code="invalid_template",
                                  details=[{"field": "body_text", "error": "required"}])  # fmt: skip
        if channel in (Channel.SMS, Channel.WHATSAPP) and html:
            raise ValidationError(f"{channel} templates are plain text", code="invalid_template",
                                  details=[{"field": "body_html", "error": "not allowed"}])  # fmt: skip
        if channel == Channel.SMS:
            from storeloop.integrations.twilio.segments import count_segments

            try:
                sample = render_sample(text, SAMPLE_CONTEXT, field="body_text")
            except TemplateProblem as exc:
                raise _problem(exc) from None
            info = count_segments(sample)
            if info.segments > MAX_SMS_SEGMENTS:
                raise ValidationError(
                    f"renders to {info.segments} SMS segments ({info.encoding}, {info.characters} characters) "
                    f"with sample data; at most {MAX_SMS_SEGMENTS}",
                    code="sms_too_long", details=[{"field": "body_text", "error": "too long"}],
                )  # fmt: skip
        if channel == Channel.WHATSAPP and wa_params and not wa_name:
            raise ValidationError("WhatsApp parameters need the approved template's name", code="invalid_template",
                                  details=[{"field": "wa_template_name", "error": "required"}])  # fmt: skip
        if channel == Channel.WHATSAPP:
            for index, expression in enumerate(wa_params):
                _check_wa_parameter(expression, f"wa_parameters[{index}]")
        if channel == Channel.WHATSAPP and not (text.strip() or wa_name):
            raise ValidationError("a WhatsApp template needs a text body or an approved template",
                                  code="invalid_template")  # fmt: skip

    def publish(self, version: TemplateVersion) -> MessageTemplate:
        """Make ``version`` the one in use. Publishing an older version is the rollback."""
        MessageTemplate.objects.filter(pk=version.template_id).update(published=version)
        return MessageTemplate.objects.get(pk=version.template_id)

    def get_template(self, store: Store, key: str, channel: str, locale: str = "en") -> TemplateVersion:
        """The published version for the locale, falling back to the language, then to English."""
        candidates = [locale, locale.split("-")[0].split("_")[0], "en"]
        for candidate in dict.fromkeys(candidates):
            template = (
                MessageTemplate.objects.filter(
                    store=store, key=key, channel=channel, locale=candidate, published__isnull=False
                )
                .select_related("published")
                .first()
            )
            if template is not None and template.published is not None:
                return template.published
        raise NotFound(f"no published {channel} template {key!r} for {locale}", code="template_not_found")

    @staticmethod
    def uses_links(version: TemplateVersion) -> bool:
        """Does the version show ``unsubscribe_url`` or ``preferences_url`` anywhere?"""
        sources = (version.subject, version.body_text, version.body_html, *version.wa_parameters)
        return any(names_used(source) & BUILTIN_NAMES for source in sources)

    def render_template(self, version: TemplateVersion, context: Mapping[str, Any]) -> Rendered:
        try:
            return Rendered(
                subject=render(version.subject, context, field="subject").strip(),
                text=render(version.body_text, context, field="body_text"),
                html=render(version.body_html, context, field="body_html", html=True),
                wa_parameters=tuple(
                    render(expr, context, field=f"wa_parameters[{i}]") for i, expr in enumerate(version.wa_parameters)
                ),
            )
        except TemplateProblem as exc:
            raise _problem(exc) from None

    def preview(self, version: TemplateVersion, sample: Mapping[str, Any] | None = None) -> Rendered:
        """Render with sample data; ``sample`` overrides the built-in sample field by field, so a
        preview that only sets ``contact.first_name`` still has an order number."""
        context = dict(SAMPLE_CONTEXT)
        for root, value in (sample or {}).items():
            base = context.get(root)
            context[root] = {**base, **value} if isinstance(base, dict) and isinstance(value, Mapping) else value
        return self.render_template(version, context)
