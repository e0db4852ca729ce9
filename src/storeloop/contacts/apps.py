from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "storeloop.contacts"
    label = "contacts"
