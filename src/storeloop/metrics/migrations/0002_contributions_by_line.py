# Contributions keyed by order id / line id (the rowid on SQLite) with one covering index each.
# Derived data: the old tables are dropped and the new ones created empty, and the aggregates are
# emptied with them so that "aggregates == GROUP BY over the contributions" holds from here on.
# Run `recalculate_store_metrics` (or OrderMetricsUpdater.recalculate_customer_metrics) per store
# to fill them again.

import django.db.models.deletion
from django.db import migrations, models


def empty_aggregates(apps, schema_editor):
    for name in ("ContactMetrics", "DailyMetrics", "ProductMetrics"):
        apps.get_model("metrics", name).objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0001_initial"),
        ("metrics", "0001_initial"),
        ("stores", "0001_initial"),
    ]

    operations = [
        migrations.DeleteModel(name="OrderContribution"),
        migrations.DeleteModel(name="OrderProductContribution"),
        migrations.RunPython(empty_aggregates, migrations.RunPython.noop),
        migrations.CreateModel(
            name="OrderContribution",
            fields=[
                ("order_id", models.BigAutoField(primary_key=True, serialize=False)),
                ("currency", models.CharField(max_length=3)),
                ("created", models.DateTimeField(help_text="The order's date_created (UTC)")),
                ("day", models.DateField(help_text="UTC day of date_created")),
                ("gross_e4", models.BigIntegerField()),
                ("refunds_e4", models.BigIntegerField()),
                (
                    "contact",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="contacts.contact",
                    ),
                ),
                (
                    "store",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="stores.store",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["store", "contact", "currency", "day", "created", "gross_e4", "refunds_e4"],
                        name="metrics_oc_by_contact",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="OrderLineContribution",
            fields=[
                ("line_id", models.BigAutoField(primary_key=True, serialize=False)),
                ("order_id", models.BigIntegerField(db_index=True)),
                ("product_external_id", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                ("units", models.BigIntegerField()),
                ("revenue_e4", models.BigIntegerField()),
                ("refunds_e4", models.BigIntegerField()),
                (
                    "contact",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="contacts.contact",
                    ),
                ),
                (
                    "store",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="stores.store",
                    ),
                ),
            ],
        ),
    ]
