from django.apps import AppConfig


class SystemConfig(AppConfig):
    name = "storeloop.system"
    label = "system"
