from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "storeloop.metrics"
    label = "metrics"
