"""Build the adapter (and its client, limiter and token store) for a connection."""

from __future__ import annotations

import orjson

from storeloop.core.ratelimit import DatabaseRateLimiter
from storeloop.crm.adapters.base import CrmAdapter
from storeloop.crm.models import CrmConnection

# HubSpot allows 190 requests per rolling 10 s per account (Professional/Enterprise private apps);
# we take 180 so clock skew between our grant and their count never earns a 429.
HUBSPOT_BUDGET = (180, 10.0)
# Zoho counts API credits per day and concurrency per org; a per-minute cap keeps bursts polite.
ZOHO_BUDGET = (100, 60.0)


def credentials(connection: CrmConnection) -> dict[str, str]:
    data: dict[str, str] = orjson.loads(connection.credentials)
    return data


def adapter_for(connection: CrmConnection) -> CrmAdapter:
    creds = credentials(connection)
    if connection.provider == CrmConnection.Provider.HUBSPOT:
        from storeloop.crm.adapters.hubspot import HubSpotAdapter
        from storeloop.integrations.hubspot.client import HubSpotClient

        limiter = DatabaseRateLimiter(connection.budget_key, *HUBSPOT_BUDGET)
        client = HubSpotClient(
            creds["token"], base_url=connection.base_url or "https://api.hubapi.com", limiter=limiter
        )
        return HubSpotAdapter(connection, client)
    from storeloop.crm.adapters.zoho import DatabaseTokenStore, ZohoAdapter
    from storeloop.integrations.zoho.client import ZohoClient

    client_z = ZohoClient(
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        refresh_token=creds["refresh_token"],
        dc=connection.data_center or "com",
        accounts_url=connection.accounts_url or None,
        api_url=connection.base_url or None,
        token_store=DatabaseTokenStore(connection.pk),
        limiter=DatabaseRateLimiter(connection.budget_key, *ZOHO_BUDGET),
    )
    return ZohoAdapter(connection, client_z)
