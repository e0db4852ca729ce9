from django.apps import AppConfig


class StoresConfig(AppConfig):
    name = "storeloop.stores"
    label = "stores"
