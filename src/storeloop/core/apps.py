from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "storeloop.core"
    label = "core"
    verbose_name = "Work engine"
