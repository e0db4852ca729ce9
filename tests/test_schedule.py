from __future__ import annotations

from typing import Any


def test_the_declared_schedule_has_the_required_jobs(settings: Any) -> None:
    from storeloop.config.schedule import recurring_jobs

    jobs = {job.name: job for job in recurring_jobs()}
    assert {"reap_expired_leases", "reconcile_all_stores", "prune_task_rows"} <= set(jobs)
    assert jobs["reconcile_all_stores"].every_seconds == settings.RECONCILE_INTERVAL_SECONDS == 300
