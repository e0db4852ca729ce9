"""``FakeZoho``: a Zoho accounts server + CRM v8 org served over real HTTP on loopback.

State lives in ``crm.py`` (records, fields, upsert) and ``oauth.py`` (tokens); HTTP parsing and the
control surface in ``server.py``; fault switches in ``faults.py``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .crm import CrmStore
from .faults import Faults, RollingWindow
from .oauth import TokenAuthority
from .server import FakeServer

ORG_ID = "4150868000000000001"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    status: int  # 0 = the answer was dropped (fault drop_next)


class FakeZoho:
    """A deterministic Zoho CRM org. ``start()`` binds 127.0.0.1 on a random port.

    ``accounts_url`` and ``api_url`` are the same loopback base (token URL
    ``accounts_url + /oauth/v2/token``, API ``api_url + /crm/v8``). Faults: ``zoho.faults.<name>``
    or ``POST /__fake__/faults``. State for assertions: ``records(module)``, ``refresh_count``,
    ``requests``, ``duplicates()``.
    """

    def __init__(
        self,
        *,
        client_id: str = "zid",
        client_secret: str = "zsecret",  # noqa: S107 - the fake's well-known test secret
        refresh_token: str = "1000.refresh",  # noqa: S107
        access_token_ttl: float = 3600,
        seed: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.faults = Faults()
        self.oauth = TokenAuthority(
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            access_token_ttl=access_token_ttl,
            seed=seed,
            clock=clock,
        )
        self.crm = CrmStore(seed=seed, reject_email=lambda email: email.strip().lower() in self.faults.reject_emails)
        self._rate = RollingWindow(60.0)
        self._fault_rng = random.Random(seed * 7 + 2)
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._server: FakeServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeZoho:
        if self._server is None:
            self._server = FakeServer(self, host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeZoho:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeZoho is not started")
        return self._server.url

    @property
    def accounts_url(self) -> str:
        return self.url

    @property
    def api_url(self) -> str:
        return self.url

    # --- switches ----------------------------------------------------------------------------------

    def revoke_refresh_token(self) -> None:
        """The user revoked the app: the token endpoint now answers ``{"error": "invalid_code"}``."""
        self.oauth.revoke()

    def expire_access_tokens(self) -> None:
        """Every issued access token now gets 401 INVALID_TOKEN."""
        self.oauth.expire_all()

    def remove_field(self, module: str, api_name: str) -> None:
        """E.g. ``remove_field("Deals", "Storeloop_Order_Ref")`` to exercise the setup error."""
        self.crm.remove_field(module, api_name)

    def set_field_unique(self, module: str, api_name: str, unique: bool) -> None:
        self.crm.set_unique(module, api_name, unique)

    # --- state for tests ---------------------------------------------------------------------------

    @property
    def refresh_count(self) -> int:
        return self.oauth.refresh_count

    def records(self, module: str) -> list[dict[str, Any]]:
        return self.crm.all(module)

    def record(self, module: str, record_id: str) -> dict[str, Any] | None:
        return self.crm.get(module, record_id)

    def create_record(self, module: str, **fields: Any) -> str:
        """Seed a record directly (no validation), e.g. a Product for Ordered_Items."""
        return self.crm.insert(module, fields)

    def duplicates(self) -> int:
        """Records that share their key field (Email / Storeloop_Order_Ref / Product_Code); must stay 0."""
        return self.crm.duplicates()

    def log_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path, status))

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (keep-alive clients reuse one)."""
        return self._server.accepted if self._server is not None else 0

    def api_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.startswith("/crm/")]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def state(self) -> dict[str, Any]:
        return {
            "records": {m: self.crm.count(m) for m in self.crm.modules},
            "refresh_count": self.refresh_count,
            "live_access_tokens": self.oauth.live_tokens,
            "refresh_token_revoked": self.oauth.revoked,
            "requests": len(self.requests),
            "duplicates": self.duplicates(),
            "faults": self.faults.as_dict(),
        }

    def org(self) -> dict[str, Any]:
        return {
            "id": ORG_ID,
            "company_name": "Storeloop Fake Org",
            "domain_name": "org-fake",
            "iso_code": "EUR",
            "currency": "Euro - EUR",
            "time_zone": "Europe/Berlin",
            "type": "production",
            "primary_zuid": "71562802",
            "zgid": "74822955",
            "mc_status": False,
            "license_details": {"paid": True, "paid_type": "enterprise", "users_license_purchased": 5},
        }

    def current_user(self) -> dict[str, Any]:
        return {
            "id": "4150868000000225013",
            "full_name": "Fake Admin",
            "role": {"name": "CEO", "id": "4150868000000026005"},
            "profile": {"name": "Administrator", "id": "4150868000000026011"},
            "status": "active",
        }

    # --- used by the server ------------------------------------------------------------------------

    def roll_fault(self) -> int | None:
        """The status a faulty API request should get now, or None for a normal answer."""
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        with self._lock:
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return faults.fail_next_status
            if faults.error_rate and self._fault_rng.random() < faults.error_rate:
                return self._fault_rng.choice((500, 502, 503))
        return None

    def admit_rate(self) -> float | None:
        # Every API request counts, so a limit switched on mid-test sees the last minute's traffic.
        return self._rate.admit(self.faults.rate_limit)

    def take_drop(self) -> bool:
        with self._lock:
            if self.faults.drop_next > 0:
                self.faults.drop_next -= 1
                return True
            return False

    def take_token_fault(self) -> bool:
        with self._lock:
            if self.faults.token_fail_next > 0:
                self.faults.token_fail_next -= 1
                return True
            return False
