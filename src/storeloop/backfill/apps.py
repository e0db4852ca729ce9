from django.apps import AppConfig


class BackfillConfig(AppConfig):
    name = "storeloop.backfill"
    label = "backfill"
