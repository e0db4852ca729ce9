from __future__ import annotations

from storeloop.backfill.services import OrderBackfillManager
from storeloop.core.tasks import durable_task


@durable_task(queue="sync", max_attempts=5)
def run_backfill(job_id: str) -> dict[str, object]:
    """Run a backfill in a worker. Safe to run twice: it resumes from the slices' checkpoints."""
    status = OrderBackfillManager().run(int(job_id))
    return {"state": status.state, "done": status.done}


@durable_task(queue="maintenance", max_attempts=3)
def backfill_followup(job_id: str) -> str:
    """After a completed backfill: recompute the store's metrics (CRM sync wired by the crm app)."""
    from storeloop.backfill.followup import run_followup

    return run_followup(int(job_id))
