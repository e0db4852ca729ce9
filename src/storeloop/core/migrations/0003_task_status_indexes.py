"""Small partial indexes on django-tasks-db's table for the health figures.

The library indexes only READY rows. Counting RUNNING and FAILED rows otherwise scans every
finished task kept for the retention period, and ``/healthz`` (probed by load balancers) slowed
down as the table grew: 2.2 → 8.4 ms of CPU per check with 15,000 finished rows.
"""

from typing import Any

from django.db import migrations

INDEXES = {"storeloop_task_running_idx": "RUNNING", "storeloop_task_failed_idx": "FAILED"}


def _table(apps: Any, schema_editor: Any) -> str:
    return str(schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table))


def create(apps: Any, schema_editor: Any) -> None:
    table = _table(apps, schema_editor)
    for name, status in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} (status) WHERE status = '{status}'")


def drop(apps: Any, schema_editor: Any) -> None:
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_ratelimitbucket_ratelimitevent"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(create, drop)]
