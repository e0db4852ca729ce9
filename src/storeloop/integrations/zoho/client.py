"""Zoho CRM v8 adapter: the ``ZohoPort`` protocol and its httpx implementation.

Pure Python (no Django). The client refreshes its OAuth access token through a shared
``TokenStore``, upserts Contacts/Deals/Sales_Orders/Products in batches of at most 100 keyed by a
unique field, and maps every answer onto one ``RecordOutcome`` per input key.

Retries: 429, 5xx, timeouts and connection errors are retried here with exponential back-off and
full jitter (bounded by ``max_retries``), honouring a ``Retry-After`` header or the body's
``details.retry_after``. Upserts are idempotent (they match on the unique field), so a retried
upsert whose first attempt did land updates the record instead of inserting a second one. A 401
INVALID_TOKEN refreshes the token once and repeats the call; a revoked refresh token raises
``ZohoAuthRevoked`` before any API call is made.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
import orjson

from storeloop.core.ports import RateLimiter
from storeloop.integrations.crm import RecordOutcome

from .auth import (
    ZOHO_DATA_CENTERS,
    CachedToken,
    MemoryTokenStore,
    TokenManager,
    TokenStore,
    parse_token_response,
    resolve_data_center,
)
from .errors import (
    REFRESHABLE_401_CODES,
    ZohoAuthError,
    ZohoError,
    ZohoPayloadError,
    ZohoRateLimited,
    ZohoSetupError,
    ZohoTransientError,
    ZohoValidationError,
    error_from_response,
    parse_retry_after,
)
from .models import (
    CONTACTS,
    DEALS,
    MAX_UPSERT_BATCH,
    MODULES,
    ORDER_REF_FIELD,
    PRODUCTS,
    SALES_ORDERS,
    ContactRecord,
    DealRecord,
    ModuleSpec,
    ProductRecord,
    SalesOrderRecord,
    Upsertable,
    ZohoOrg,
    dedupe_by_key,
    outcomes_from_answer,
)

__all__ = ["API_PREFIX", "DEFAULT_TIMEOUT", "ZOHO_DATA_CENTERS", "ZohoClient", "ZohoPort"]

logger = logging.getLogger(__name__)

API_PREFIX = "/crm/v8"
TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a URL path, not a secret
DEFAULT_TIMEOUT = httpx.Timeout(15, connect=5)
DEFAULT_USER_AGENT = "Storeloop/0.1 (zoho-client)"
ORDER_REF_LABEL = "Storeloop Order Ref"
ORDER_REF_LENGTH = 64
DEFAULT_CHECK_MODULES: tuple[str, ...] = ("Deals",)


class ZohoPort(Protocol):
    """What Storeloop needs from a Zoho CRM org. Errors: ``storeloop.integrations.zoho.errors``."""

    def check(self, *, modules: Sequence[str] = DEFAULT_CHECK_MODULES) -> None: ...

    def get_org(self) -> ZohoOrg: ...

    def ensure_fields(self, modules: Sequence[str] = ("Deals", "Sales_Orders")) -> list[str]: ...

    def upsert_contacts(self, records: Sequence[ContactRecord]) -> list[RecordOutcome]: ...

    def upsert_deals(self, records: Sequence[DealRecord]) -> list[RecordOutcome]: ...

    def upsert_sales_orders(self, records: Sequence[SalesOrderRecord]) -> list[RecordOutcome]: ...

    def upsert_products(self, records: Sequence[ProductRecord]) -> list[RecordOutcome]: ...

    def get_record(self, module: str, record_id: str) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _is_unique(field: Mapping[str, Any]) -> bool:
    # Field metadata shows ``"unique": {}`` for ordinary fields and ``{"case_sensitive": ...}`` once
    # "Do not allow duplicate values" is on (the shape the create-field API takes).
    unique = field.get("unique")
    return unique is True or (isinstance(unique, Mapping) and bool(unique))


def _mentions(error: ZohoError, name: str) -> bool:
    where = (error.details.get("api_name"), error.details.get("json_path"))
    return any(isinstance(v, str) and name in v for v in where)


class ZohoClient:
    """httpx implementation of :class:`ZohoPort` for one Zoho CRM org.

    ``dc`` picks the data centre (``com``, ``eu``, ``in``, ``com.au``, ``jp``, ``ca``, ``cn``, ``sa``);
    explicit ``accounts_url``/``api_url`` override it (tests point them at ``FakeZoho``). Without an
    explicit ``api_url`` the token's ``api_domain`` is used. Pass the same ``token_store`` to every
    client of one connection so they share one access token. ``limiter.acquire()`` runs before every
    API request (not token refreshes) and ``limiter.penalize()`` on every 429.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        dc: str = "com",
        accounts_url: str | None = None,
        api_url: str | None = None,
        token_store: TokenStore | None = None,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
        trigger: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not (client_id and client_secret and refresh_token):
            raise ValueError("client_id, client_secret and refresh_token are required")
        dc_accounts, dc_api = resolve_data_center(dc)
        self.accounts_url = (accounts_url or dc_accounts).rstrip("/")
        self._explicit_api_url = api_url.rstrip("/") if api_url else None
        self._default_api_url = self._explicit_api_url or dc_api
        self._credentials = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        self._limiter = limiter
        self._max_retries = max_retries
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        # None = Zoho's default (workflows/approvals/blueprints run); [] = run none of them.
        self._trigger = list(trigger) if trigger is not None else None
        self._clock = clock
        self.tokens = TokenManager(token_store or MemoryTokenStore(), self._fetch_token, clock=clock)
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ZohoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows credentials or tokens
        return f"ZohoClient(accounts_url={self.accounts_url!r}, api_url={self._default_api_url!r})"

    @property
    def api_url(self) -> str:
        """The API host in use: the explicit one, else the stored token's ``api_domain``."""
        if self._explicit_api_url:
            return self._explicit_api_url
        cached = self.tokens.store.load()
        return cached.api_domain if cached is not None else self._default_api_url

    # --- transport ---------------------------------------------------------------------------------

    def _backoff_delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * (2**attempt))
        delay = self._rng.uniform(0, ceiling)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max))
        return delay

    def _fetch_token(self) -> CachedToken:
        """``POST {accounts}/oauth/v2/token`` with the refresh grant; retries 5xx/network only."""
        attempt = 0
        while True:
            error: ZohoTransientError
            try:
                response = self._http.post(self.accounts_url + TOKEN_PATH, data=self._credentials)
            except httpx.TransportError as exc:  # the exception text may quote the URL, never the body
                error = ZohoTransientError(
                    f"Zoho accounts server unreachable ({type(exc).__name__})", code="connection_error"
                )
            else:
                logger.debug("zoho token refresh -> %s (attempt %s)", response.status_code, attempt + 1)
                try:
                    return parse_token_response(
                        response.status_code,
                        _decode(response),
                        default_api_domain=self._default_api_url,
                        now=self._clock(),
                    )
                except ZohoRateLimited:
                    raise  # the refresh throttle lasts minutes: let the task engine wait
                except ZohoTransientError as exc:
                    error = exc
            if attempt >= self._max_retries:
                raise error
            self._sleep(self._backoff_delay(attempt, error.retry_after))
            attempt += 1

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        records_on_400: bool = False,
    ) -> tuple[int, Any]:
        """One API call with auth, limiter, retries; returns ``(status, decoded body)``."""
        content = orjson.dumps(json_body) if json_body is not None else None
        attempt = 0
        stale: str | None = None
        refreshed = False
        while True:
            token = self.tokens.token(stale=stale)
            stale = None
            url = (self._explicit_api_url or token.api_domain) + API_PREFIX + path
            headers = {"Authorization": f"Zoho-oauthtoken {token.access_token}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if self._limiter is not None:
                self._limiter.acquire()
            error: ZohoError
            try:
                response = self._http.request(method, url, params=params, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                error = ZohoTransientError(f"Zoho timed out ({type(exc).__name__}) on {method} {path}", code="timeout")
                retryable = idempotent or isinstance(exc, httpx.ConnectTimeout)
            except httpx.TransportError as exc:
                error = ZohoTransientError(
                    f"Zoho connection failed ({type(exc).__name__}) on {method} {path}", code="connection_error"
                )
                retryable = idempotent or isinstance(exc, httpx.ConnectError)
            else:
                status = response.status_code
                payload = _decode(response)
                logger.debug("zoho %s %s -> %s (attempt %s)", method, path, status, attempt + 1)
                if 200 <= status < 300:
                    return status, payload
                if records_on_400 and status == 400 and isinstance(payload, Mapping) and "data" in payload:
                    return status, payload  # every record failed: per-record errors inside data[]
                code = payload.get("code") if isinstance(payload, Mapping) else None
                if status == 401 and code in REFRESHABLE_401_CODES:
                    if not refreshed:
                        refreshed, stale = True, token.access_token
                        logger.info("zoho access token rejected (%s); refreshing once", code)
                        continue  # not counted as a retry attempt
                    raise ZohoAuthError("Zoho rejected a freshly refreshed access token", status=401, code=str(code))
                error = error_from_response(
                    status, payload, retry_after=parse_retry_after(response.headers.get("Retry-After"))
                )
                if not isinstance(error, ZohoTransientError):
                    raise error
                retryable = idempotent or status in (429, 503)
            assert isinstance(error, ZohoTransientError)
            delay = self._backoff_delay(attempt, error.retry_after)
            if isinstance(error, ZohoRateLimited) and self._limiter is not None:
                self._limiter.penalize(error.retry_after if error.retry_after is not None else delay)
            if not retryable or attempt >= self._max_retries:
                raise error
            logger.warning(
                "zoho %s %s failed transiently (status=%s code=%s); retry %s/%s in %.2fs",
                method,
                path,
                error.status,
                error.code,
                attempt + 1,
                self._max_retries,
                delay,
            )
            self._sleep(delay)
            attempt += 1

    # --- org and setup -----------------------------------------------------------------------------

    def get_org(self) -> ZohoOrg:
        """``GET /crm/v8/org`` (scope ZohoCRM.org.READ); also proves the token works."""
        _, payload = self._call("GET", "/org")
        orgs = payload.get("org") if isinstance(payload, Mapping) else None
        if not isinstance(orgs, list) or not orgs or not isinstance(orgs[0], Mapping):
            raise ZohoPayloadError("Zoho answered GET /org without an org")
        org = orgs[0]
        return ZohoOrg(
            id=str(org.get("id") or ""),
            company_name=str(org.get("company_name") or ""),
            currency_code=str(org.get("iso_code") or ""),
            time_zone=str(org.get("time_zone") or ""),
        )

    def check(self, *, modules: Sequence[str] = DEFAULT_CHECK_MODULES) -> None:
        """Refresh if needed, make one cheap authenticated call, verify the unique fields exist.

        Raises ``ZohoAuthRevoked``/``ZohoAuthError`` for credential problems and ``ZohoSetupError``
        naming the field to create when ``Storeloop_Order_Ref`` (Deals, Sales_Orders) or a unique
        ``Product_Code`` (Products) is missing. Scopes: ZohoCRM.org.READ, ZohoCRM.settings.fields.READ.
        """
        self.get_org()
        for name in modules:
            spec = self._spec(name)
            if spec is not CONTACTS:  # Email is Zoho's system duplicate-check field
                self._verify_unique_field(spec)

    def _spec(self, module: str) -> ModuleSpec:
        try:
            return MODULES[module]
        except KeyError:
            raise ValueError(f"unsupported module {module!r}; expected one of {sorted(MODULES)}") from None

    def _fields(self, module: str) -> list[Mapping[str, Any]]:
        _, payload = self._call("GET", "/settings/fields", params={"module": module})
        fields = payload.get("fields") if isinstance(payload, Mapping) else None
        if not isinstance(fields, list):
            raise ZohoPayloadError(f"Zoho answered GET /settings/fields?module={module} without fields")
        return [f for f in fields if isinstance(f, Mapping)]

    def _field_state(self, spec: ModuleSpec) -> str:
        """``"ok"``, ``"missing"`` or ``"not_unique"`` for the module's duplicate-check field."""
        for field in self._fields(spec.api_name):
            if field.get("api_name") == spec.duplicate_field:
                return "ok" if _is_unique(field) else "not_unique"
        return "missing"

    def _verify_unique_field(self, spec: ModuleSpec) -> None:
        state = self._field_state(spec)
        if state == "missing":
            raise ZohoSetupError(
                f"Zoho module {spec.api_name} has no field {spec.duplicate_field}: create a single-line "
                f"field '{ORDER_REF_LABEL}' (API name {spec.duplicate_field}) with 'Do not allow duplicate "
                "values' enabled, or call ensure_fields()",
                code="FIELD_MISSING",
                details={"api_name": spec.duplicate_field},
            )
        if state == "not_unique":
            raise ZohoSetupError(
                f"Zoho field {spec.api_name}.{spec.duplicate_field} allows duplicates: enable 'Do not "
                "allow duplicate values' on it (upserts match on it)",
                code="FIELD_NOT_UNIQUE",
                details={"api_name": spec.duplicate_field},
            )

    def ensure_fields(self, modules: Sequence[str] = ("Deals", "Sales_Orders")) -> list[str]:
        """Create the unique ``Storeloop_Order_Ref`` text field where missing; returns what it created.

        Needs scope ZohoCRM.settings.fields.CREATE. Standard fields (``Product_Code``) cannot be
        created; they are only verified.
        """
        created: list[str] = []
        for name in modules:
            spec = self._spec(name)
            if spec is CONTACTS:
                continue
            state = self._field_state(spec)
            if state == "missing" and spec.custom_field:
                self._create_order_ref_field(spec)
                created.append(f"{spec.api_name}.{spec.duplicate_field}")
                state = self._field_state(spec)
            if state != "ok":
                self._verify_unique_field(spec)
        return created

    def _create_order_ref_field(self, spec: ModuleSpec) -> None:
        body = {
            "fields": [
                {
                    "api_name": ORDER_REF_FIELD,
                    "field_label": ORDER_REF_LABEL,
                    "data_type": "text",
                    "length": ORDER_REF_LENGTH,
                    "unique": {"case_sensitive": False},
                }
            ]
        }
        # Not idempotent: never retried after the request may have reached Zoho.
        _, payload = self._call(
            "POST", "/settings/fields", params={"module": spec.api_name}, json_body=body, idempotent=False
        )
        answers = payload.get("fields") if isinstance(payload, Mapping) else None
        first = answers[0] if isinstance(answers, list) and answers else None
        if not isinstance(first, Mapping) or first.get("code") != "SUCCESS":
            code = first.get("code") if isinstance(first, Mapping) else None
            raise ZohoSetupError(
                f"Zoho did not create {spec.api_name}.{ORDER_REF_FIELD} ({code or 'no answer'}); create it in "
                "Setup > Modules and Fields with 'Do not allow duplicate values'",
                code=str(code) if code else "FIELD_CREATE_FAILED",
                details={"api_name": ORDER_REF_FIELD},
            )
        logger.info("zoho created unique field %s.%s", spec.api_name, ORDER_REF_FIELD)

    # --- records -----------------------------------------------------------------------------------

    def _upsert(self, spec: ModuleSpec, records: Sequence[Upsertable]) -> list[RecordOutcome]:
        unique = dedupe_by_key(records)
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(unique), MAX_UPSERT_BATCH):
            chunk = unique[start : start + MAX_UPSERT_BATCH]
            body: dict[str, Any] = {
                "data": [record.to_zoho() for record in chunk],
                "duplicate_check_fields": [spec.duplicate_field],
            }
            if self._trigger is not None:
                body["trigger"] = self._trigger
            try:
                _, payload = self._call("POST", f"/{spec.api_name}/upsert", json_body=body, records_on_400=True)
            except ZohoValidationError as exc:
                if _mentions(exc, "duplicate_check_fields") or _mentions(exc, spec.duplicate_field):
                    raise ZohoSetupError(
                        f"Zoho cannot upsert {spec.api_name} on {spec.duplicate_field}: the field is missing "
                        "or not unique (run check() / ensure_fields())",
                        status=exc.status,
                        code=exc.code,
                        details={"api_name": spec.duplicate_field},
                    ) from exc
                raise
            data = payload.get("data") if isinstance(payload, Mapping) else None
            outcomes.extend(outcomes_from_answer(spec, chunk, data))
        created = sum(1 for o in outcomes if o.ok and o.created)
        failed = sum(1 for o in outcomes if not o.ok)
        logger.info(
            "zoho %s upsert: %s records, %s inserted, %s updated, %s failed",
            spec.api_name,
            len(outcomes),
            created,
            len(outcomes) - created - failed,
            failed,
        )
        return outcomes

    def upsert_contacts(self, records: Sequence[ContactRecord]) -> list[RecordOutcome]:
        """Upsert Contacts matched on ``Email``; one outcome per distinct email (the key)."""
        return self._upsert(CONTACTS, records)

    def upsert_deals(self, records: Sequence[DealRecord]) -> list[RecordOutcome]:
        """Upsert Deals matched on the unique ``Storeloop_Order_Ref``; key = order ref."""
        return self._upsert(DEALS, records)

    def upsert_sales_orders(self, records: Sequence[SalesOrderRecord]) -> list[RecordOutcome]:
        """Upsert Sales_Orders matched on ``Storeloop_Order_Ref``; the products must exist already."""
        return self._upsert(SALES_ORDERS, records)

    def upsert_products(self, records: Sequence[ProductRecord]) -> list[RecordOutcome]:
        """Upsert Products matched on ``Product_Code`` (which must be marked unique); key = code."""
        return self._upsert(PRODUCTS, records)

    def get_record(self, module: str, record_id: str) -> dict[str, Any] | None:
        """``GET /crm/v8/{module}/{id}``; None when Zoho has no such record (204)."""
        if not str(record_id).isdigit():
            raise ValueError("Zoho record ids are numeric strings")
        status, payload = self._call("GET", f"/{self._spec(module).api_name}/{record_id}")
        if status == 204 or payload is None:
            return None
        data = payload.get("data") if isinstance(payload, Mapping) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], Mapping):
            raise ZohoPayloadError(f"Zoho answered GET /{module}/<id> without data")
        return dict(data[0])
