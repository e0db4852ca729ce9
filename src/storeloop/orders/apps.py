from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "storeloop.orders"
    label = "orders"
