from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.models import TaskLease
from storeloop.core.tasks import enqueue_on_commit
from storeloop.core.tasks.backoff import retry_delay
from storeloop.core.tasks.reaper import reap_expired_leases
from storeloop.core.tasks.worker import LeasedWorker, LeaseHeartbeat, retry_dead_letter
from storeloop.core.tests import sample_tasks

pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(**kwargs: Any) -> LeasedWorker:
    options: dict[str, Any] = {
        "queue_names": ["*"],
        "interval": 0,
        "batch": True,
        "backend_name": "default",
        "startup_delay": False,
        "max_tasks": None,
        "worker_id": f"test-{uuid.uuid4().hex[:8]}",
        "excluded_queue_names": [],
        "lease_seconds": 30,
    }
    options.update(kwargs)
    return LeasedWorker(**options)


def drain_due() -> None:
    """Run the worker until nothing is due, making retry delays due at once."""
    for _ in range(20):
        DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=timezone.now())
        make_worker().run()
        if not DBTaskResult.objects.filter(status=TaskResultStatus.READY).exists():
            return


def the_row() -> DBTaskResult:
    return DBTaskResult.objects.get()


def test_transient_failures_are_retried_until_success(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_tasks.flaky.enqueue(str(log), 2)
    drain_due()
    row = the_row()
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert row.return_value == "ok"
    assert log.read_text().splitlines() == ["attempt"] * 3
    assert len(row.worker_ids) == 3
    assert not TaskLease.objects.exists()


def test_exhausted_retries_become_a_dead_letter(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_tasks.flaky.enqueue(str(log), 10)
    drain_due()
    row = the_row()
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path == "storeloop.core.errors.TransientError"
    assert log.read_text().splitlines() == ["attempt"] * 4  # max_attempts=4, then it stops


def test_terminal_failure_stops_at_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_tasks.terminal.enqueue(str(log))
    drain_due()
    row = the_row()
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path == "storeloop.core.errors.TerminalError"
    assert log.read_text().splitlines() == ["attempt"]


def test_retry_after_is_a_floor_for_the_next_attempt(tmp_path: Path) -> None:
    sample_tasks.rate_limited.enqueue(str(tmp_path / "log"))
    before = timezone.now()
    make_worker().run()
    row = the_row()
    assert row.status == TaskResultStatus.READY
    assert row.run_after >= before + dt.timedelta(seconds=119)


def test_dead_letter_can_be_retried_with_a_fresh_budget(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_tasks.flaky.enqueue(str(log), 4)
    drain_due()
    row = the_row()
    assert row.status == TaskResultStatus.FAILED
    assert retry_dead_letter(row.id) is True
    assert retry_dead_letter(row.id) is False  # no longer failed
    drain_due()
    row.refresh_from_db()
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert log.read_text().splitlines() == ["attempt"] * 5


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(3)
    ceilings = [min(60.0, 2.0 * 2 ** (n - 1)) for n in range(1, 10)]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delays = [retry_delay(attempt, base=2.0, cap=60.0, rng=rng) for _ in range(200)]
        assert min(delays) >= 0
        assert max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # full jitter reaches near the ceiling
    assert retry_delay(1, base=2.0, cap=60.0, retry_after=30, rng=rng) >= 30
    assert retry_delay(1, base=2.0, cap=60.0, retry_after=600, rng=rng) == 60


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_outcome(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.touch()
    sample_tasks.slow_effect.enqueue(str(log), str(gate))
    stale = make_worker()
    claimed = stale.claim_next()
    assert claimed is not None
    db_task, token = claimed
    # The worker stalls; its lease runs out and the reaper hands the task back.
    TaskLease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert reap_expired_leases() == 1
    assert the_row().status == TaskResultStatus.READY
    # A second worker completes it.
    make_worker().run()
    assert the_row().status == TaskResultStatus.SUCCESSFUL
    # The stale worker wakes up and tries to record a failure: the fence discards it.
    stale.finish(db_task, token, None, RuntimeError("late"))
    row = the_row()
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert row.return_value == "done"
    assert log.read_text().splitlines() == ["started", "done"]


def test_heartbeat_renews_the_lease_and_notices_loss() -> None:
    task_id, token = uuid.uuid4(), uuid.uuid4()
    start = timezone.now()
    TaskLease.objects.create(task_id=task_id, token=token, worker_id="w", claimed_at=start, expires_at=start)
    with LeaseHeartbeat(task_id, token, lease_seconds=0.3) as beat:
        deadline = timezone.now() + dt.timedelta(seconds=5)
        while TaskLease.objects.get(task_id=task_id).expires_at == start and timezone.now() < deadline:
            pass
        assert TaskLease.objects.get(task_id=task_id).expires_at > start
        TaskLease.objects.filter(task_id=task_id).delete()
        assert beat.lost.wait(5)


def test_reaper_dead_letters_a_task_out_of_attempts(tmp_path: Path) -> None:
    sample_tasks.slow_effect.enqueue(str(tmp_path / "log"), str(tmp_path / "gate"))
    row = the_row()
    DBTaskResult.objects.filter(pk=row.pk).update(
        status=TaskResultStatus.RUNNING, worker_ids=["a", "b", "c"], started_at=timezone.now()
    )
    TaskLease.objects.create(
        task_id=row.pk,
        worker_id="c",
        claimed_at=timezone.now(),
        expires_at=timezone.now() - dt.timedelta(seconds=1),
    )
    assert reap_expired_leases() == 1
    row.refresh_from_db()
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path.endswith("WorkerLost")


def test_reaper_leaves_live_leases_alone(tmp_path: Path) -> None:
    sample_tasks.slow_effect.enqueue(str(tmp_path / "log"), str(tmp_path / "gate"))
    worker = make_worker()
    assert worker.claim_next() is not None
    assert reap_expired_leases() == 0
    assert the_row().status == TaskResultStatus.RUNNING


def test_enqueue_on_commit_rejects_non_id_arguments() -> None:
    with pytest.raises(TypeError, match="ids"):
        enqueue_on_commit(sample_tasks.terminal, {"email": "a@b.c"})  # type: ignore[arg-type]
    assert not DBTaskResult.objects.exists()


def test_enqueue_on_commit_rolls_back_with_the_transaction(tmp_path: Path) -> None:
    from django.db import transaction

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        enqueue_on_commit(sample_tasks.terminal, str(tmp_path / "log"))
        raise Boom
    assert not DBTaskResult.objects.exists()
    with transaction.atomic():
        enqueue_on_commit(sample_tasks.terminal, str(tmp_path / "log"))
    assert DBTaskResult.objects.count() == 1


@pytest.mark.parametrize("run_after", [None, dt.datetime(2031, 5, 4, 3, 2, 1, tzinfo=dt.UTC)])
def test_enqueue_on_commit_writes_the_row_the_backend_writes(run_after: dt.datetime | None) -> None:
    """The prepared INSERT must stay identical to django-tasks-db's own enqueue (an upgrade that
    changes the table fails here, not in production)."""
    bound = sample_tasks.flaky.using(run_after=run_after) if run_after else sample_tasks.flaky
    theirs = DBTaskResult.objects.get(id=bound.enqueue("/tmp/x", 2).id)
    enqueue_on_commit(sample_tasks.flaky, "/tmp/x", 2, run_after=run_after)
    ours = DBTaskResult.objects.exclude(id=theirs.id).get()
    skip = {"id", "enqueued_at"}
    fields = [f.attname for f in DBTaskResult._meta.concrete_fields if f.attname not in skip]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert ours.args_kwargs == {"args": ["/tmp/x", 2], "kwargs": {}}
    assert abs(ours.enqueued_at - theirs.enqueued_at) < dt.timedelta(seconds=5)
    assert isinstance(ours.id, uuid.UUID)
    # And the library reads it back as the same task.
    assert ours.task_result.task.module_path == theirs.task_result.task.module_path
    assert ours.task_result.args == ["/tmp/x", 2]
