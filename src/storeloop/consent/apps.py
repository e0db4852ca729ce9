from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "storeloop.consent"
    label = "consent"
