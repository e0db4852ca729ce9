"""Drop single-column indexes that a composite index or unique constraint already starts with.

Each index costs every insert, and the historical backfill writes a million orders. Only the
indexes go (``DROP INDEX``): a plain ``AlterField`` would rebuild the whole table on SQLite.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

TARGETS = [("order", "store"), ("order", "status"), ("orderline", "order"), ("orderrefund", "order")]


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    for model_name, field_name in TARGETS:
        model = apps.get_model("orders", model_name)
        column = model._meta.get_field(field_name).column
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
        for name, info in constraints.items():
            # PostgreSQL also has a ``_like`` index for the text column: same single column, dropped too.
            if info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]:
                schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_indexes(apps: Any, schema_editor: Any) -> None:
    for model_name, field_name in TARGETS:
        model = apps.get_model("orders", model_name)  # the state before this migration: db_index=True
        for sql in schema_editor._field_indexes_sql(model, model._meta.get_field(field_name)):
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("stores", "0002_api_key_operator"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="status",
                    field=models.CharField(max_length=40),
                ),
                migrations.AlterField(
                    model_name="order",
                    name="store",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="orders",
                        to="stores.store",
                    ),
                ),
                migrations.AlterField(
                    model_name="orderline",
                    name="order",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="lines",
                        to="orders.order",
                    ),
                ),
                migrations.AlterField(
                    model_name="orderrefund",
                    name="order",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="refunds",
                        to="orders.order",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
