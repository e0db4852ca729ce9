from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "storeloop.messaging"
    label = "messaging"
