"""A fake Zoho CRM (accounts server + CRM v8 API) speaking the real contract over loopback HTTP.

    with FakeZoho() as zoho:   # 127.0.0.1, random port
        client = ZohoClient(client_id="zid", client_secret="zsecret", refresh_token="1000.refresh",
                            accounts_url=zoho.accounts_url, api_url=zoho.api_url)
        ...

Run standalone: ``python -m storeloop.integrations.zoho.fake --port 8200``.
"""

from .crm import ORDER_REF
from .faults import Faults
from .zoho import FakeZoho, RequestRecord

__all__ = ["ORDER_REF", "FakeZoho", "Faults", "RequestRecord"]
