from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "storeloop.crm"
    label = "crm"
