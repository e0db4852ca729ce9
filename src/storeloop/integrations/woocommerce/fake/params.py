"""Query-string handling with WordPress REST semantics, and WooCommerce's permission errors."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from .core import ShopError

Params = list[tuple[str, str]]


def invalid_param(name: str, reason: str) -> ShopError:
    return ShopError(400, "rest_invalid_param", f"Invalid parameter(s): {name}", {name: reason})


class QueryParams:
    """Query-string access with WP REST semantics: ``name`` or ``name[]``, comma lists, validation."""

    def __init__(self, pairs: Params, site_tz: tzinfo) -> None:
        self.pairs = pairs
        self.tz = site_tz

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k in (name, f"{name}[]")]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def integer(
        self, name: str, default: int | None, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = self.first(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid_param(name, f"{name} is not of type integer.") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            if maximum is not None:
                raise invalid_param(name, f"{name} must be between {minimum} (inclusive) and {maximum} (inclusive)")
            raise invalid_param(name, f"{name} must be greater than or equal to {minimum}")
        return value

    def listing(self, name: str) -> list[str] | None:
        raw = self.values(name)
        if not raw:
            return None
        return [part.strip() for value in raw for part in value.split(",") if part.strip()]

    def ids(self, name: str) -> list[int] | None:
        items = self.listing(name)
        if items is None:
            return None
        try:
            return [int(i) for i in items]
        except ValueError:
            raise invalid_param(name, f"{name}[0] is not of type integer.") from None

    def choice(self, name: str, default: str, allowed: set[str] | frozenset[str]) -> str:
        value = self.first(name) or default
        if value not in allowed:
            raise invalid_param(name, f"{name} is not one of {', '.join(sorted(allowed))}.")
        return value

    def flag(self, name: str) -> bool:
        return (self.first(name) or "").lower() in ("1", "true", "yes")

    def date(self, name: str) -> int | None:
        raw = self.first(name)
        if not raw:
            return None
        try:
            parsed = datetime.fromisoformat(raw.replace(" ", "T"))
        except ValueError:
            raise invalid_param(name, "Invalid date.") from None
        if parsed.tzinfo is None:
            # Zone-less dates are site-local unless dates_are_gmt=true (a classic sync bug).
            parsed = parsed.replace(tzinfo=UTC if self.flag("dates_are_gmt") else self.tz)
        return int(parsed.timestamp())

    def paging(self) -> tuple[int, int, int]:
        page = self.integer("page", 1, minimum=1) or 1
        per_page = self.integer("per_page", 10, minimum=1, maximum=100) or 10
        offset = self.integer("offset", None, minimum=0)
        return page, per_page, (offset if offset is not None else (page - 1) * per_page)


def cannot_error(method: str, *, collection: bool) -> ShopError:
    if method == "GET":
        message = "Sorry, you cannot list resources." if collection else "Sorry, you cannot view this resource."
        return ShopError(401, "woocommerce_rest_cannot_view", message)
    if method == "DELETE":
        return ShopError(401, "woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource.")
    if method == "POST" and collection:
        return ShopError(401, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources.")
    return ShopError(401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.")
