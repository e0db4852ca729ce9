from __future__ import annotations

from storeloop.core.errors import Conflict, NotFound


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


class CampaignStateError(Conflict):
    """The campaign is in a state that does not allow this (e.g. resuming a completed one)."""

    code = "campaign_state"
