from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "storeloop.inbox"
    label = "inbox"
