"""``FakeHubSpot``: an in-memory HubSpot account served over real HTTP on loopback.

    with FakeHubSpot(token="pat-test", rate_limit=190, window_seconds=10.0) as hub:
        client = HubSpotClient(hub.token, base_url=hub.url)
        ...
        assert hub.duplicates() == 0

State: ``crm.py``/``store.py``/``associations.py``; HTTP: ``server.py``. Faults and limits can be
changed at runtime through attributes or ``POST /__fake__/faults`` / ``POST /__fake__/limits``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .crm import FakeCrm
from .schema import DEDUP_KEYS, record_error


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    status: int
    at: float  # time.monotonic() when answered


@dataclass
class Faults:
    """Fault switches, read on every request so they can be flipped at runtime."""

    latency_ms: int = 0  # added to every API request
    error_rate: float = 0.0  # fraction of API requests answered 500/502/503/504
    fail_next: int = 0  # the next N API requests fail with fail_next_status
    fail_next_status: int = 503
    fail_next_path: str = ""  # only requests whose path contains this count towards fail_next
    fail_next_after_apply: bool = False  # process the request, then answer the failure (lost reply)
    retry_after: bool = True  # 429s carry Retry-After (off: only the X-HubSpot-RateLimit-* headers)
    reject_emails: set[str] = field(default_factory=set)  # per-record VALIDATION_ERROR (207)
    reject_refs: set[str] = field(default_factory=set)  # order refs / line refs, same
    transient_record_errors: int = 0  # the next N written records fail with a 429-like error (207)
    multi_status: bool = True  # off: ignore objectWriteTraceId, one bad record fails the batch (400)
    search_lag_ms: int = 0  # writes become visible to search this much later

    def update(self, values: Mapping[str, Any]) -> None:
        """Validate every value first, then apply them all (used by ``POST /__fake__/faults``)."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            current = getattr(self, name)
            if isinstance(current, set):
                if not isinstance(value, list | set | tuple) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"fault {name!r} must be a list of strings")
                clean[name] = {v.lower() if name == "reject_emails" else v for v in value}
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise ValueError(f"fault {name!r} must be a string")
                clean[name] = value
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"fault {name!r} must be a boolean")
                clean[name] = value
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fault {name!r} must be a non-negative integer")
                clean[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ValueError(f"fault {name!r} must be a number between 0 and 1")
                clean[name] = float(value)
        for name, value in clean.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, set) else v for k, v in vars(self).items()}


class FakeHubSpot:
    """A deterministic fake HubSpot account. ``start()`` serves it on loopback; ``url`` is the base URL.

    ``rate_limit`` requests per ``window_seconds`` (rolling, per token) like a private app's burst
    limit; search has its own ``search_rate_limit`` per second. ``strict_properties`` rejects
    unknown property names the way HubSpot does (``PROPERTY_DOESNT_EXIST``).
    """

    def __init__(
        self,
        *,
        token: str = "pat-test",  # noqa: S107 - the fake account's well-known test token
        rate_limit: int = 190,
        window_seconds: float = 10.0,
        seed: int = 1,
        search_rate_limit: int = 5,
        daily_limit: int = 650_000,
        strict_properties: bool = True,
        extra_tokens: Iterable[str] = (),
        portal_id: int = 12345678,
    ) -> None:
        self.token = token
        self.tokens = {token, *extra_tokens}
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self.search_rate_limit = search_rate_limit
        self.daily_limit = daily_limit
        self.seed = seed
        self.portal_id = portal_id
        self.strict_properties = strict_properties
        self.faults = Faults()
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed * 7919 + 1)
        self.crm = FakeCrm(random.Random(seed * 31 + 7), strict_properties=strict_properties, portal_id=portal_id)
        self._windows: dict[str, deque[float]] = {}
        self._search_windows: dict[str, deque[float]] = {}
        self._daily: dict[str, int] = {}
        self._requests: list[RequestRecord] = []
        self.count_429 = 0
        self._server: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeHubSpot:
        from .server import FakeServer  # local import: the server depends on this module

        if self._server is None:
            self._server = FakeServer(self, host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeHubSpot:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHubSpot is not started")
        return str(self._server.url)

    def reset(self) -> None:
        """Forget every record, association, custom property, request and fault."""
        with self.lock:
            self.crm = FakeCrm(
                random.Random(self.seed * 31 + 7), strict_properties=self.strict_properties, portal_id=self.portal_id
            )
            self.faults = Faults()
            self._windows.clear()
            self._search_windows.clear()
            self._requests.clear()
            self.count_429 = 0

    # --- inspection --------------------------------------------------------------------------------

    def _objects(self, object_type: str) -> dict[str, dict[str, str]]:
        with self.lock:
            return {r.id: dict(r.properties) for r in self.crm.objects.live(object_type)}

    @property
    def contacts(self) -> dict[str, dict[str, str]]:
        """Live contacts: ``{id: properties}`` (a snapshot)."""
        return self._objects("contacts")

    @property
    def deals(self) -> dict[str, dict[str, str]]:
        return self._objects("deals")

    @property
    def line_items(self) -> dict[str, dict[str, str]]:
        return self._objects("line_items")

    @property
    def associations(self) -> dict[tuple[str, str, str, str], frozenset[int]]:
        """``{(from_type, from_id, to_type, to_id): type ids}``, both directions of every pair."""
        with self.lock:
            return self.crm.graph.flat()

    def properties(self, object_type: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self.crm.objects.properties[object_type].items()}

    def duplicate_groups(self) -> dict[str, dict[str, list[str]]]:
        """``{object_type: {key value: [ids]}}`` for live records sharing a dedup key."""
        out: dict[str, dict[str, list[str]]] = {}
        with self.lock:
            for object_type, prop in DEDUP_KEYS.items():
                seen: dict[str, list[str]] = {}
                for record in self.crm.objects.live(object_type):
                    value = record.properties.get(prop)
                    if value:
                        seen.setdefault(self.crm.objects.norm(prop, value), []).append(record.id)
                groups = {k: ids for k, ids in seen.items() if len(ids) > 1}
                if groups:
                    out[object_type] = groups
        return out

    def duplicates(self) -> int:
        """Extra records sharing a key (email / order ref / line ref): must stay 0."""
        return sum(len(ids) - 1 for groups in self.duplicate_groups().values() for ids in groups.values())

    @property
    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self.lock:
            return len(self._requests)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()
            self.count_429 = 0

    def state(self) -> dict[str, Any]:
        with self.lock:
            objects = self.crm.objects
            return {
                "contacts": sum(1 for _ in objects.live("contacts")),
                "deals": sum(1 for _ in objects.live("deals")),
                "line_items": sum(1 for _ in objects.live("line_items")),
                "associations": len(self.crm.graph.flat()),
                "request_count": len(self._requests),
                "count_429": self.count_429,
                "duplicates": self.duplicates(),
                "rate_limit": self.rate_limit,
                "window_seconds": self.window_seconds,
            }

    # --- used by the server ------------------------------------------------------------------------

    def correlation_id(self) -> str:
        with self.lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self._requests.append(RequestRecord(method, path, status, time.monotonic()))
            if status == 429:
                self.count_429 += 1

    def admit(self, token: str, *, search: bool) -> tuple[float | None, dict[str, str]]:
        """Count one request; ``(seconds until allowed, None if allowed now; rate limit headers)``."""
        now = time.monotonic()
        with self.lock:
            if search:  # separate per-second limit; search answers carry no rate limit headers
                window, limit, windows, headers = 1.0, self.search_rate_limit, self._search_windows, False
            else:
                window, limit, windows, headers = self.window_seconds, self.rate_limit, self._windows, True
            sent = windows.setdefault(token, deque())
            while sent and sent[0] <= now - window:
                sent.popleft()
            wait: float | None = None
            if len(sent) >= limit:
                wait = max(sent[0] + window - now, 0.001)
            else:
                sent.append(now)
                self._daily[token] = self._daily.get(token, 0) + 1
            if not headers:
                return wait, {}
            return wait, {
                "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(self.daily_limit - self._daily.get(token, 0), 0)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
                "X-HubSpot-RateLimit-Max": str(limit),
                "X-HubSpot-RateLimit-Remaining": str(max(limit - len(sent), 0)),
            }

    def roll_latency(self) -> None:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)

    def roll_fault(self, path: str) -> int | None:
        """The status an API request should fail with now, or None for a normal answer."""
        faults = self.faults
        with self.lock:
            if faults.fail_next > 0 and faults.fail_next_path in path:
                faults.fail_next -= 1
                return faults.fail_next_status
            if faults.error_rate and self._fault_rng.random() < faults.error_rate:
                return self._fault_rng.choice((500, 502, 503, 504))
        return None

    def record_fault(self, object_type: str, props: Mapping[str, str], traced: bool) -> dict[str, Any] | None:
        """Injected per-record error for one input of a batch write (lock held by the caller).

        Transient record errors only exist in multi-status answers (``traced``).
        """
        faults = self.faults
        email = str(props.get("email", "")).lower()
        ref = props.get("storeloop_order_ref") or props.get("storeloop_line_ref")
        if (email and email in faults.reject_emails) or (ref and ref in faults.reject_refs):
            return {
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid: [rejected by the fake]",
                "errors": [{"message": "rejected by the fake", "code": "INVALID_OPTION"}],
            }
        if traced and faults.transient_record_errors > 0:
            faults.transient_record_errors -= 1
            return record_error("RATE_LIMITS", "You have reached your ten_secondly_rolling limit.")
        return None
