"""``FakeWhatsApp``: one WhatsApp business phone number on a fake Cloud API, served over real HTTP.

    with FakeWhatsApp(templates={"order_update": ("en_US", 2)}) as wa:
        wa.webhook_url = receiver_url
        client = WhatsAppClient(wa.access_token, wa.phone_number_id, base_url=wa.url)
        wa.simulate_inbound("15551234567", "hi")  # opens the 24-hour window
        client.send_text("15551234567", "Your order shipped")

Rules it enforces like Meta: bearer token (190), the 24-hour customer-service window for anything
but templates (131047), approved templates by name + language (132001) and parameter count
(132000), marketing opt-outs (131050), throughput (130429). After each accepted send, signed status
webhooks (sent → delivered → read, or failed) go to ``webhook_url`` from a background thread.
Faults: ``faults`` attribute or ``POST /__fake__/faults``. HTTP front: ``server.py``.

Quirks kept on purpose: a ``sent`` webhook can reach the receiver before the client has read the
send's answer (Meta does not order them either); 131047/131050 are synchronous errors by default,
while ``faults.async_errors`` reports them the other way Meta does, as 200 + a ``failed`` webhook.
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from .state import Faults, RequestRecord, SentRecord, TemplateSpec, digits
from .webhooks import Deliverer, Delivery, GraphError, envelope, inbound_item, status_item

WINDOW_SECONDS = 24 * 3600
MAX_TEXT = 4096
OTHER_TYPES = frozenset(
    {"image", "audio", "video", "document", "sticker", "location", "contacts", "interactive", "reaction"}
)


class FakeWhatsApp:
    """A deterministic fake WhatsApp Cloud account. ``start()`` serves it on loopback; ``url`` is the base URL."""

    def __init__(
        self,
        *,
        access_token: str = "EAAG-test",  # noqa: S107 - the fake's well-known test token
        phone_number_id: str = "1234567890",
        app_secret: str = "app-secret",  # noqa: S107
        verify_token: str = "verify-me",  # noqa: S107
        rate_limit_per_second: float | None = None,
        seed: int = 1,
        templates: Mapping[str, tuple[str, int] | tuple[str, int, str]] | None = None,
        opted_out: Iterable[str] = (),
        fail_delivery: Iterable[str] = (),
        webhook_url: str | None = None,
        display_phone_number: str = "15550001111",
        verified_name: str = "Storeloop Test Shop",
        waba_id: str = "102290129340398",
        opt_out_marketing_only: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access_token = access_token
        self.expired_tokens: set[str] = set()  # answered 190 "Session has expired" (subcode 463)
        self.phone_number_id = phone_number_id
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.rate_limit_per_second = rate_limit_per_second
        self.seed = seed
        self.lock = threading.RLock()
        self.templates: dict[str, TemplateSpec] = {}
        for name, spec in (templates or {}).items():
            self.add_template(name, *spec)
        # Meta only blocks MARKETING templates for users who stopped marketing messages; by default the
        # fake blocks every send to them (simpler to test); opt_out_marketing_only=True is the real rule.
        self.opted_out = {digits(n) for n in opted_out}
        self.opt_out_marketing_only = opt_out_marketing_only
        self.fail_delivery = {digits(n) for n in fail_delivery}
        self.webhook_url = webhook_url
        self.display_phone_number = display_phone_number
        self.verified_name = verified_name
        self.quality_rating = "GREEN"
        self.waba_id = waba_id
        self.clock = clock
        self.faults = Faults()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed * 7919 + 1)
        self._last_inbound: dict[str, float] = {}
        self._messages: list[SentRecord] = []
        self._requests: list[RequestRecord] = []
        self._deliveries: list[Delivery] = []
        self._bucket_rate: float | None = None
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self.count_429 = 0
        self.deliverer = Deliverer(lambda: self.app_secret, self._record_delivery)
        self._server: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeWhatsApp:
        from .server import FakeServer  # local import: the server depends on this module

        if self._server is None:
            self.deliverer.start()
            self._server = FakeServer(self, host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.deliverer.stop()

    def __enter__(self) -> FakeWhatsApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeWhatsApp is not started")
        return str(self._server.url)

    def reset(self) -> None:
        """Forget messages, inbound times, requests, deliveries and faults (templates and sets stay)."""
        with self.lock:
            self.faults = Faults()
            self._last_inbound.clear()
            self._messages.clear()
            self._requests.clear()
            self._deliveries.clear()
            self.count_429 = 0

    # --- configuration -----------------------------------------------------------------------------

    def add_template(self, name: str, language: str, params: int, category: str = "UTILITY") -> None:
        with self.lock:
            self.templates[name] = TemplateSpec(language, params, category.upper())

    # --- inspection --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[SentRecord]:
        with self.lock:
            return list(self._messages)

    def sent_count(self, to: str) -> int:
        wa_id = digits(to)
        with self.lock:
            return sum(1 for m in self._messages if m.to == wa_id)

    @property
    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._requests)

    @property
    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self._deliveries)

    def last_inbound(self, number: str) -> float | None:
        with self.lock:
            return self._last_inbound.get(digits(number))

    def wait_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook has been attempted; False on timeout."""
        return self.deliverer.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": len(self._messages),
                "requests": len(self._requests),
                "deliveries": len(self._deliveries),
                "pending_webhooks": self.deliverer.pending,
                "count_429": self.count_429,
                "webhook_url": self.webhook_url,
                "templates": {
                    k: {"language": v.language, "params": v.params, "category": v.category}
                    for k, v in self.templates.items()
                },
            }

    # --- simulation (the customer's side) -------------------------------------------------------------

    def simulate_inbound(
        self,
        from_: str,
        text: str | None = None,
        *,
        button_payload: str | None = None,
        button_text: str | None = None,
        context_wamid: str | None = None,
        at: float | None = None,
        profile_name: str = "Test Customer",
        deliver: bool = True,
    ) -> str:
        """The customer writes to us: record the time (opens the 24-hour window), POST a signed webhook."""
        wa_id = digits(from_)
        when = self.clock() if at is None else at
        with self.lock:
            self._last_inbound[wa_id] = max(when, self._last_inbound.get(wa_id, when))
            wamid = self._wamid()
            url = self.webhook_url
        item = inbound_item(
            wamid,
            wa_id,
            when,
            text=text,
            button_payload=button_payload,
            button_text=button_text,
            context_wamid=context_wamid,
        )
        value = {"contacts": [{"profile": {"name": profile_name}, "wa_id": wa_id}], "messages": [item]}
        if deliver and url:
            self._enqueue("inbound", url, value, 0.0)
        return wamid

    def verify_webhook(self, url: str | None = None, *, verify_token: str | None = None) -> bool:
        """Meta's GET handshake against the receiver: True iff it answered 200 with exactly the challenge."""
        target = url or self.webhook_url
        if not target:
            raise ValueError("no webhook URL to verify")
        with self.lock:
            challenge = str(self._rng.randrange(10**9, 10**10))
        query = urlencode(
            {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token or self.verify_token}
        )
        status: int | None
        try:
            response = httpx.get(f"{target}{'&' if '?' in target else '?'}{query}", timeout=5.0)
            status, ok = response.status_code, response.status_code == 200 and response.text == challenge
        except httpx.HTTPError:
            status, ok = None, False
        self._record_delivery(Delivery("verify", target, status, b"", "", time.time()))
        return ok

    # --- used by the server ------------------------------------------------------------------------

    def fbtrace_id(self) -> str:
        with self.lock:
            return base64.urlsafe_b64encode(self._rng.randbytes(12)).decode().rstrip("=")

    def log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self._requests.append(RequestRecord(method, path, status, time.monotonic()))
            if status == 429:
                self.count_429 += 1

    def check_token(self, token: str | None) -> None:
        if token is None or not token:
            raise GraphError(190, "An active access token must be used", status=401)
        if token in self.expired_tokens:
            raise GraphError(190, "Error validating access token: Session has expired", subcode=463)
        if token != self.access_token:
            raise GraphError(190)

    def admit_send(self) -> None:
        """Token bucket of ``rate_limit_per_second`` messages (burst = max(1, rate)); 130429 when empty."""
        rate = self.rate_limit_per_second
        if not rate:
            return
        with self.lock:
            now = time.monotonic()
            if rate != self._bucket_rate:  # (re)configured: start with a full bucket
                self._bucket_rate, self._tokens, self._refilled = rate, max(1.0, rate), now
            self._tokens = min(max(1.0, rate), self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens < 1:
                raise GraphError(130429, "Cloud API message throughput has been reached.")
            self._tokens -= 1

    def roll_fault(self) -> GraphError | None:
        faults = self.faults
        with self.lock:
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return GraphError(faults.fail_next_code, status=faults.fail_next_status or None)
            if faults.error_rate and self._fault_rng.random() < faults.error_rate:
                return GraphError(self._fault_rng.choice((131000, 131016)))
        return None

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.accept_then_drop > 0:
                self.faults.accept_then_drop -= 1
                return True
        return False

    def phone_number(self, fields: list[str]) -> dict[str, Any]:
        known = {
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }
        chosen = [f for f in fields if f in known] or ["display_phone_number", "verified_name"]
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise GraphError(100, f"Tried accessing nonexisting field ({unknown[0]})")
        return {**{f: known[f] for f in chosen}, "id": self.phone_number_id}

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and accept one ``/messages`` body; raise ``GraphError`` like the Cloud API would."""
        if body.get("messaging_product") != "whatsapp":
            raise GraphError(100, "The parameter messaging_product is required.")
        to = body.get("to")
        wa_id = digits(to) if isinstance(to, str) else ""
        if not 7 <= len(wa_id) <= 15:
            raise GraphError(100, "Param to must be a valid phone number.")
        if body.get("recipient_type", "individual") != "individual":
            raise GraphError(100, "Param recipient_type must be individual.")
        kind = body.get("type", "text")
        text = template = language = None
        params: tuple[str, ...] = ()
        spec: TemplateSpec | None = None
        if kind == "text":
            text = self._text(body.get("text"))
        elif kind == "template":
            template, language, params, spec = self._template(body.get("template"))
        elif kind in OTHER_TYPES:
            raise GraphError(131051, f"Message type {kind} is not supported by this fake.")
        else:
            raise GraphError(100, f"Param type has an invalid value ({kind}).")
        callback = body.get("biz_opaque_callback_data")
        callback_data = callback if isinstance(callback, str) else None
        error: GraphError | None = None
        marketing = spec is not None and spec.category == "MARKETING"
        with self.lock:
            if wa_id in self.opted_out and (marketing or not self.opt_out_marketing_only):
                error = GraphError(131050, "This recipient has chosen to stop receiving marketing messages.")
            elif kind != "template" and not self._window_open(wa_id):
                error = GraphError(131047, "Message failed to send because more than 24 hours have passed.")
            if error is not None and not self.faults.async_errors:
                raise error
            if error is None and wa_id in self.fail_delivery:
                error = GraphError(131026, "Message undeliverable.")
            wamid = self._wamid()
            record = SentRecord(
                wamid,
                wa_id,
                str(kind),
                text,
                template,
                language,
                params,
                callback_data,
                self.clock(),
                error.code if error else None,
            )
            self._messages.append(record)
            url = self.webhook_url
        if url:
            self._schedule_statuses(url, record, error, (spec.category if spec else "SERVICE").lower())
        answer: dict[str, Any] = {"id": wamid}
        if kind == "template":
            answer["message_status"] = "accepted"
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [answer]}

    # --- internals ---------------------------------------------------------------------------------

    def _window_open(self, wa_id: str) -> bool:
        last = self._last_inbound.get(wa_id)
        return last is not None and self.clock() - last < WINDOW_SECONDS

    @staticmethod
    def _text(raw: Any) -> str:
        body = raw.get("body") if isinstance(raw, Mapping) else None
        if not isinstance(body, str) or not body.strip():
            raise GraphError(100, "Param text['body'] is required.")
        if len(body) > MAX_TEXT:
            raise GraphError(100, f"Param text['body'] must be at most {MAX_TEXT} characters long.")
        return body

    def _template(self, raw: Any) -> tuple[str, str, tuple[str, ...], TemplateSpec]:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise GraphError(100, "Param template['name'] is required.")
        lang = raw.get("language")
        code = lang.get("code") if isinstance(lang, Mapping) else None
        if not isinstance(code, str) or not code:
            raise GraphError(100, "Param template['language']['code'] is required.")
        name = raw["name"]
        spec = self.templates.get(name)
        if spec is None or spec.language != code:
            raise GraphError(132001, f"template name ({name}) does not exist in {code}")
        params: list[str] = []
        components = raw.get("components") or []
        if not isinstance(components, list):
            raise GraphError(100, "Param template['components'] must be an array.")
        for component in components:
            items = component.get("parameters") if isinstance(component, Mapping) else None
            for item in items if isinstance(items, list) else []:
                value = item.get("text") if isinstance(item, Mapping) and item.get("type") == "text" else None
                if not isinstance(value, str) or not value.strip():
                    raise GraphError(132012, "Parameter format does not match: expected non-empty text.")
                params.append(value)
        if len(params) != spec.params:
            raise GraphError(
                132000,
                f"body: number of localizable_params ({len(params)}) does not match "
                f"the expected number of params ({spec.params})",
            )
        return name, code, tuple(params), spec

    def _wamid(self) -> str:
        return "wamid." + base64.b64encode(self._rng.randbytes(27)).decode()

    def _enqueue(self, kind: str, url: str, value: dict[str, Any], delay: float) -> None:
        payload = envelope(self.waba_id, self.phone_number_id, self.display_phone_number, value)
        for _ in range(2 if self.faults.duplicate_webhooks else 1):
            self.deliverer.put(kind, url, payload, delay)

    def _schedule_statuses(self, url: str, record: SentRecord, error: GraphError | None, category: str) -> None:
        steps = ["failed"] if error is not None else ["sent", "delivered", "read"]
        delay = self.faults.webhook_delay_ms / 1000
        conversation = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
        for step in steps:
            item = status_item(
                record.wamid,
                step,
                record.to,
                self.clock(),
                category=category,
                conversation_id=conversation,
                callback_data=record.callback_data,
                error=error,
            )
            self._enqueue("status", url, {"statuses": [item]}, delay)

    def _record_delivery(self, delivery: Delivery) -> None:
        with self.lock:
            self._deliveries.append(delivery)
