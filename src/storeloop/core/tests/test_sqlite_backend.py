"""The SQLite backend: writers queue on the file lock, and WAL checkpoints happen off the commit.

These open their own database file under a separate alias, so they run (and mean the same)
whichever database the rest of the suite uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction

ALIAS = "sqlite_queue_test"


@pytest.fixture
def alias(tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock():
        yield from _database(tmp_path)


def _database(tmp_path: Path) -> Iterator[str]:
    connections.settings[ALIAS] = {
        "ENGINE": "storeloop.core.sqlite_backend",
        "NAME": str(tmp_path / "queue.sqlite3"),
        # A busy timeout of 10 ms: without the queue a second writer fails almost at once.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 0.01,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;",
        },
        "TEST": {},
        "ATOMIC_REQUESTS": False,
        "AUTOCOMMIT": True,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
    }
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, who TEXT, pad TEXT)")
    yield ALIAS
    connections[ALIAS].close()
    del connections[ALIAS]
    del connections.settings[ALIAS]


def _write(alias: str, who: str, hold: float = 0.0, fail: bool = False) -> None:
    try:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO item (who, pad) VALUES (%s, '')", [who])
            time.sleep(hold)
            if fail:
                raise RuntimeError("roll back")
    finally:
        connections[alias].close()


def _rows(alias: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT who FROM item ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_a_second_writer_waits_for_the_first_instead_of_failing(alias: str) -> None:
    first_in = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO item (who, pad) VALUES ('first', '')")
            first_in.set()
            time.sleep(0.3)  # 30 times SQLite's busy timeout
        connections[alias].close()

    def second() -> None:
        first_in.wait(5)
        try:
            _write(alias, "second")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert _rows(alias) == ["first", "second"]
    assert time.monotonic() - started >= 0.3


def test_a_rolled_back_writer_releases_the_queue(alias: str) -> None:
    with pytest.raises(RuntimeError):
        _write(alias, "rolled back", fail=True)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (_write(alias, "after"), done.set()))
    thread.start()
    assert done.wait(5), "the writer after a rollback never got the lock"
    thread.join()
    assert _rows(alias) == ["after"]


def test_without_the_queue_the_same_race_fails(tmp_path: Path, alias: str) -> None:
    """The control: the stock backend, same file and timeout, gives 'database is locked'."""
    stock = dict(connections.settings[ALIAS], ENGINE="django.db.backends.sqlite3")
    connections.settings["sqlite_stock_test"] = stock
    try:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO item (who, pad) VALUES ('holder', '')")
            outcome: list[BaseException] = []
            thread = threading.Thread(target=lambda: _capture(outcome, "sqlite_stock_test"))
            thread.start()
            thread.join(5)
        assert len(outcome) == 1
        assert isinstance(outcome[0], OperationalError)
        assert "locked" in str(outcome[0])
    finally:
        connections["sqlite_stock_test"].close()
        del connections["sqlite_stock_test"]
        del connections.settings["sqlite_stock_test"]
    assert _rows(alias) == ["holder"]


def _capture(outcome: list[BaseException], alias: str) -> None:
    try:
        _write(alias, "stock")
    except BaseException as exc:
        outcome.append(exc)


def test_wal_is_checkpointed_in_the_background(alias: str) -> None:
    """Auto-checkpoints are off here: only the backend's thread can move the WAL into the file."""
    database = Path(connections.settings[ALIAS]["NAME"])
    size_before = database.stat().st_size
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.executemany("INSERT INTO item (who, pad) VALUES (%s, %s)", [(str(i), "x" * 1000) for i in range(2000)])
    deadline = time.monotonic() + 5
    while database.stat().st_size < size_before + 2_000_000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert database.stat().st_size >= size_before + 2_000_000
