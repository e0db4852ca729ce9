from django.contrib import admin
from django.urls import path

from storeloop.config.api import api
from storeloop.consent.views import confirm, preferences, unsubscribe
from storeloop.inbox.views import woocommerce_webhook
from storeloop.messaging.inbound.views import email_events, twilio_inbound, twilio_status, whatsapp_webhook
from storeloop.system.views import healthz, index

admin.site.site_header = "Storeloop"
admin.site.site_title = "Storeloop admin"

urlpatterns = [
    path("", index, name="index"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("webhooks/woocommerce/<int:store_id>", woocommerce_webhook, name="woocommerce-webhook"),
    path("webhooks/twilio/<int:store_id>/status", twilio_status, name="twilio-status-webhook"),
    path("webhooks/twilio/<int:store_id>/inbound", twilio_inbound, name="twilio-inbound-webhook"),
    path("webhooks/whatsapp/<int:store_id>", whatsapp_webhook, name="whatsapp-webhook"),
    path("webhooks/email/<int:store_id>", email_events, name="email-webhook"),
    path("u/<str:token>", unsubscribe, name="unsubscribe"),
    path("preferences/<str:token>", preferences, name="preferences"),
    path("confirm/<str:token>", confirm, name="confirm-consent"),
]
