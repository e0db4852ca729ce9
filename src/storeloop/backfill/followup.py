"""What happens after a backfill completes."""

from __future__ import annotations

import logging

from storeloop.backfill.models import BackfillJob

logger = logging.getLogger("storeloop.backfill")


def run_followup(job_id: int) -> str:
    job = BackfillJob.objects.filter(pk=job_id).first()
    if job is None:
        return "gone"
    # Metrics recompute and optional CRM sync are wired here as those components land.
    return "ok"
