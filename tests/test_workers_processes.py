"""Real worker processes: a worker killed mid-task, and two workers sharing one queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.models import TaskLease
from storeloop.core.tasks import enqueue_on_commit
from storeloop.core.tasks.reaper import reap_expired_leases
from storeloop.core.tests import sample_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def start_worker(db_url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STORELOOP_DATABASE_URL": db_url, "STORELOOP_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "storeloop.cli.main", "worker", "--interval", "0.05", *extra],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_worker_killed_mid_task_is_reaped_and_the_task_completes_exactly_once(
    tmp_path: Path, sqlite_or_pg_url: str
) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    sample_tasks.slow_effect.enqueue(str(log), str(gate))
    first = start_worker(sqlite_or_pg_url, "--lease-seconds", "2")
    try:
        wait_for(lambda: lines(log) == ["started"])
        os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the row stays RUNNING with its lease
        first.wait()
        assert DBTaskResult.objects.get().status == TaskResultStatus.RUNNING
        assert TaskLease.objects.count() == 1
        wait_for(lambda: reap_expired_leases() == 1, timeout=15)
        assert DBTaskResult.objects.get().status == TaskResultStatus.READY
        gate.touch()
        second = start_worker(sqlite_or_pg_url, "--batch")
        assert second.wait(60) == 0
    finally:
        stop(first)
    row = DBTaskResult.objects.get()
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert row.return_value == "done"
    assert len(row.worker_ids) == 2
    assert lines(log) == ["started", "started", "done"]
    assert not TaskLease.objects.exists()


def test_two_concurrent_workers_never_run_a_task_twice(tmp_path: Path, sqlite_or_pg_url: str) -> None:
    log = tmp_path / "log"
    total = 300
    with transaction.atomic():
        for n in range(total):
            enqueue_on_commit(sample_tasks.mark, str(log), n)
    workers = [start_worker(sqlite_or_pg_url, "--batch", "--worker-id", f"w{i}") for i in range(2)]
    try:
        for proc in workers:
            assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else b""
    finally:
        for proc in workers:
            stop(proc)
    counts = Counter(lines(log))
    assert len(counts) == total
    assert set(counts.values()) == {1}
    assert DBTaskResult.objects.filter(status=TaskResultStatus.SUCCESSFUL).count() == total
    # Both workers took part (otherwise this proves nothing about concurrency).
    by_worker = Counter(w for ids in DBTaskResult.objects.values_list("worker_ids", flat=True) for w in ids)
    assert set(by_worker) == {"w0", "w1"}
