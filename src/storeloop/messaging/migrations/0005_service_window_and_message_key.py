import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0004_message_held"),
        ("stores", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="CustomerServiceWindow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("address", models.CharField(help_text="E.164 phone number", max_length=20)),
                ("last_inbound_at", models.DateTimeField()),
                (
                    "store",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="stores.store"),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("store", "address"), name="service_window_once"),
                ],
            },
        ),
        migrations.AlterField(
            model_name="messagingconnection",
            name="messages_per_second",
            field=models.FloatField(default=10.0, help_text="Send rate of the store on this channel"),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["idempotency_key"], name="msg_key_idx"),
        ),
    ]
