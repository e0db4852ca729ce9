from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django_tasks_db.models import DBTaskResult

from storeloop.core.models import ScheduledRun, SchedulerLock
from storeloop.core.tasks.scheduler import RecurringJob, acquire_lock, release_lock, run_due
from storeloop.core.tests import sample_tasks

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_each_slot_runs_once_and_the_next_slot_runs_again() -> None:
    calls: list[int] = []
    jobs = [
        RecurringJob("inline", every_seconds=60, inline=lambda: calls.append(1)),
        RecurringJob("queued", every_seconds=60, task=sample_tasks.prune_probe),
    ]
    assert run_due(jobs, now=T0) == ["inline", "queued"]
    assert run_due(jobs, now=T0 + dt.timedelta(seconds=30)) == []
    assert calls == [1]
    assert DBTaskResult.objects.count() == 1
    assert run_due(jobs, now=T0 + dt.timedelta(seconds=61)) == ["inline", "queued"]
    assert calls == [1, 1]
    assert DBTaskResult.objects.count() == 2
    assert ScheduledRun.objects.count() == 4


def test_a_failing_inline_job_does_not_stop_the_others() -> None:
    def boom() -> None:
        raise RuntimeError("nope")

    jobs = [RecurringJob("bad", 60, inline=boom), RecurringJob("good", 60, task=sample_tasks.prune_probe)]
    assert run_due(jobs, now=T0) == ["bad", "good"]
    assert DBTaskResult.objects.count() == 1


def test_only_one_scheduler_is_active_and_a_standby_takes_over_after_expiry() -> None:
    with time_machine.travel(T0, tick=False):
        assert acquire_lock("a", ttl_seconds=15) is True
        assert acquire_lock("b", ttl_seconds=15) is False
        assert acquire_lock("a", ttl_seconds=15) is True  # renewal
    with time_machine.travel(T0 + dt.timedelta(seconds=10), tick=False):
        assert acquire_lock("b", ttl_seconds=15) is False
    with time_machine.travel(T0 + dt.timedelta(seconds=16), tick=False):
        assert acquire_lock("b", ttl_seconds=15) is True
        assert SchedulerLock.objects.get().holder == "b"
        assert acquire_lock("a", ttl_seconds=15) is False
    release_lock("b")
    assert not SchedulerLock.objects.exists()
