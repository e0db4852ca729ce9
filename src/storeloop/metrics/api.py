from __future__ import annotations

from ninja import Router

router = Router(tags=["metrics"])
contact_metrics_router = Router(tags=["metrics"])
