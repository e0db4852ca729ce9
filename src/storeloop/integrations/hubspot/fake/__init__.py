"""A fake HubSpot account speaking CRM v3 / Associations v4 over real HTTP on loopback.

    with FakeHubSpot(token="pat-test", rate_limit=190, window_seconds=10.0) as hub:
        client = HubSpotClient(hub.token, base_url=hub.url)
        ...

Run standalone: ``python -m storeloop.integrations.hubspot.fake --port 8200``.
"""

from .hub import FakeHubSpot, Faults, RequestRecord

__all__ = ["FakeHubSpot", "Faults", "RequestRecord"]
