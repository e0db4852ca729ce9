from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "storeloop.messaging.campaigns"
    label = "campaigns"
    verbose_name = "Campaigns"
