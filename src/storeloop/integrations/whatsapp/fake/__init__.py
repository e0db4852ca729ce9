"""A fake WhatsApp Cloud API (one business phone number) speaking real HTTP on loopback.

    with FakeWhatsApp(templates={"order_update": ("en_US", 2)}) as wa:
        client = WhatsAppClient(wa.access_token, wa.phone_number_id, base_url=wa.url)
        ...

Run standalone: ``python -m storeloop.integrations.whatsapp.fake --port 8300``.
"""

from .core import FakeWhatsApp
from .state import Faults, RequestRecord, SentRecord, TemplateSpec
from .webhooks import Delivery, GraphError

__all__ = ["Delivery", "FakeWhatsApp", "Faults", "GraphError", "RequestRecord", "SentRecord", "TemplateSpec"]
