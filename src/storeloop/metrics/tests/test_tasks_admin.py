"""The scheduled refresh through the real worker, and the read-only admin pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult
from tests.drain import drain

from storeloop.core.tasks import enqueue_on_commit
from storeloop.metrics.models import ClvModel, ContactMetrics, DailyMetrics
from storeloop.metrics.tasks import recalculate_store_metrics, refresh_all_store_metrics
from storeloop.metrics.tests.builders import build_shop

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_nightly_job_refreshes_every_store(store: Any, other_store: Any) -> None:
    build_shop(store)
    build_shop(other_store)
    with transaction.atomic():
        enqueue_on_commit(refresh_all_store_metrics)
    drain()
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {TaskResultStatus.SUCCESSFUL}
    assert DBTaskResult.objects.count() == 3  # the fan-out and one refresh per store
    assert sorted(ClvModel.objects.values_list("store_id", "currency", "quality")) == [
        (store.pk, "EUR", "too_thin"),
        (store.pk, "USD", "too_thin"),
        (other_store.pk, "EUR", "too_thin"),
        (other_store.pk, "USD", "too_thin"),
    ]


def test_the_recalculation_task_rebuilds_a_store(store: Any) -> None:
    build_shop(store)
    ContactMetrics.objects.all().delete()
    DailyMetrics.objects.all().delete()
    with transaction.atomic():
        enqueue_on_commit(recalculate_store_metrics, str(store.pk))
    drain()
    result = DBTaskResult.objects.get()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert (ContactMetrics.objects.count(), DailyMetrics.objects.count()) == (3, 3)


def test_metric_admin_pages_load_read_only(store: Any) -> None:
    build_shop(store)
    get_user_model().objects.create_superuser("root", "", "a-long-password-1")
    client = Client()
    client.login(username="root", password="a-long-password-1")
    row = ContactMetrics.objects.first()
    assert row is not None
    for path in [
        "/admin/metrics/contactmetrics/",
        f"/admin/metrics/contactmetrics/{row.pk}/change/",
        "/admin/metrics/dailymetrics/",
        "/admin/metrics/productmetrics/",
        "/admin/metrics/rfmthresholds/",
        "/admin/metrics/clvmodel/",
    ]:
        assert client.get(path).status_code == 200, path
    assert client.get("/admin/metrics/contactmetrics/add/").status_code == 403
    response = client.post(f"/admin/metrics/contactmetrics/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert ContactMetrics.objects.filter(pk=row.pk).exists()
