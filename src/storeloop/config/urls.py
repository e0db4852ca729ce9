from django.contrib import admin
from django.urls import path

from storeloop.config.api import api
from storeloop.consent.views import preferences, unsubscribe
from storeloop.inbox.views import woocommerce_webhook
from storeloop.system.views import healthz, index

admin.site.site_header = "Storeloop"
admin.site.site_title = "Storeloop admin"

urlpatterns = [
    path("", index, name="index"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("webhooks/woocommerce/<int:store_id>", woocommerce_webhook, name="woocommerce-webhook"),
    path("u/<str:token>", unsubscribe, name="unsubscribe"),
    path("preferences/<str:token>", preferences, name="preferences"),
]
