"""The JSON API at /api/v1/: mounts each app's router and renders every error one way."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from storeloop.backfill.api import router as backfill_router
from storeloop.config.auth import StoreApiKey
from storeloop.consent.api import consent_router, suppressions_router
from storeloop.contacts.api import router as contacts_router
from storeloop.core.errors import ApplicationError
from storeloop.crm.api import crm_router
from storeloop.crm.api import router as crm_order_router
from storeloop.inbox.api import router as inbox_router
from storeloop.messaging.api import messages_router, templates_router
from storeloop.messaging.campaigns.api import router as campaigns_router
from storeloop.metrics.api import contact_metrics_router
from storeloop.metrics.api import router as metrics_router
from storeloop.orders.api import router as orders_router
from storeloop.system.api import router as system_router

logger = logging.getLogger("storeloop.api")

api = NinjaAPI(
    title="Storeloop API",
    version="1",
    description="Orders, contacts and the webhook inbox of your WooCommerce shop. "
    "Authenticate with `Authorization: Bearer <key>` (create one with `storeloop apikey create`).",
    auth=StoreApiKey(),
    urls_namespace="api",
)
api.add_router("/orders", orders_router)
api.add_router("/contacts", contacts_router)
api.add_router("/inbox", inbox_router)
api.add_router("/system", system_router)
api.add_router("/metrics", metrics_router)
api.add_router("/contacts", contact_metrics_router)  # GET /contacts/{id}/metrics
api.add_router("/orders", crm_order_router)  # GET/POST /orders/{id}/sync
api.add_router("/crm", crm_router)
api.add_router("/backfills", backfill_router)
api.add_router("/campaigns", campaigns_router)
api.add_router("/templates", templates_router)
api.add_router("/messages", messages_router)
api.add_router("/contacts", consent_router)  # GET/POST /contacts/{id}/consent
api.add_router("/suppressions", suppressions_router)


def _body(code: str, message: str, details: object = None) -> dict[str, object]:
    return {"code": code, "message": message, "details": details}


@api.exception_handler(ApplicationError)
def _application_error(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    return api.create_response(request, exc.as_dict(), status=exc.status_code)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    fields = [
        {"field": ".".join(str(p) for p in err.get("loc", [])[1:]) or None, "error": err.get("msg")}
        for err in exc.errors
    ]
    names = ", ".join(f["field"] or "body" for f in fields)  # type: ignore[misc]
    return api.create_response(request, _body("validation_error", f"invalid input: {names}", fields), status=422)


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request,
        _body("unauthorized", "send a valid API key as 'Authorization: Bearer <key>'"),
        status=401,
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, _body("not_found", str(exc) or "not found"), status=404)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, _body("http_error", str(exc)), status=exc.status_code)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error on %s", request.path)
    return api.create_response(
        request, _body("internal_error", "something went wrong on our side; it has been logged"), status=500
    )
