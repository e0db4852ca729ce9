"""The `storeloop` command through its public interface."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.cli.main import main
from storeloop.core.tests import sample_tasks
from storeloop.stores.models import ApiKey
from tests.drain import drain

pytestmark = pytest.mark.django_db(transaction=True)


def run(capsys: Any, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "storeloop.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "web", "worker", "scheduler", "store", "apikey", "tasks", "inbox", "keys"):
        assert command in out


def test_apikey_create_prints_the_key_once_and_stores_a_hash(capsys: Any, store: Any) -> None:
    code, out = run(capsys, "apikey", "create", "--store", str(store.pk), "--json")
    assert code == 0
    key = json.loads(out)["key"]
    assert key.startswith("slk_")
    row = ApiKey.objects.get()
    assert key not in (row.key_hash, row.prefix)
    code, listing = run(capsys, "apikey", "list", "--json")
    assert key not in listing
    assert json.loads(listing)[0]["prefix"] == row.prefix


def test_apikey_for_a_missing_store_fails_cleanly(capsys: Any, db: None) -> None:
    assert main(["apikey", "create", "--store", "999"]) == 2
    assert "store_not_found" in capsys.readouterr().err
    assert not ApiKey.objects.exists()


def test_store_list_json(capsys: Any, store: Any) -> None:
    code, out = run(capsys, "store", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert [(s["id"], s["name"], s["url"]) for s in data] == [(store.pk, "Test shop", "https://shop.example")]
    assert "cs_test" not in out
    assert "whsec" not in out


def test_tasks_status_failed_and_retry(capsys: Any, tmp_path: Path) -> None:
    sample_tasks.terminal.enqueue(str(tmp_path / "log"))
    drain()
    code, out = run(capsys, "tasks", "status", "--json")
    assert json.loads(out)["queue"]["failed"] == 1
    code, out = run(capsys, "tasks", "failed", "--json")
    failed = json.loads(out)
    assert [f["task"] for f in failed] == ["storeloop.core.tests.sample_tasks.terminal"]
    assert failed[0]["error"] == "storeloop.core.errors.TerminalError"
    code, _ = run(capsys, "tasks", "retry", failed[0]["id"])
    assert code == 0
    assert DBTaskResult.objects.get().status == TaskResultStatus.READY


def test_keys_rotate_reencrypts_with_the_first_key(capsys: Any, store: Any, settings: Any) -> None:
    from cryptography.fernet import Fernet
    from django.db import connection

    old = settings.ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new, old]
    assert run(capsys, "keys", "rotate")[0] == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT consumer_secret FROM stores_store WHERE id = %s", [store.pk])
        token = cursor.fetchone()[0]
    assert Fernet(new.encode()).decrypt(token.encode()) == b"cs_test"
    assert "cs_test" not in token
