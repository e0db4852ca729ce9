"""A fake WooCommerce shop speaking the REST v3 and webhook contract over real HTTP on loopback.

    with FakeWooShop(initial_orders=500, seed=1) as shop:   # started on 127.0.0.1, random port
        client = WooCommerceClient(shop.url, shop.consumer_key, shop.consumer_secret)
        ...

Run standalone: ``python -m storeloop.integrations.woocommerce.fake --port 8100``.
"""

from .core import RequestRecord, ShopError
from .shop import FakeWooShop
from .store import OrderQuery
from .webhooks import DeliveryRecord, Faults

__all__ = ["DeliveryRecord", "FakeWooShop", "Faults", "OrderQuery", "RequestRecord", "ShopError"]
