"""Records and fault switches of the fake WhatsApp Cloud."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    language: str
    params: int
    category: str = "UTILITY"  # UTILITY / MARKETING / AUTHENTICATION


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    status: int  # 0 when the connection was dropped without an answer
    at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class SentRecord:
    wamid: str
    to: str  # wa_id (digits)
    type: str  # "text" or "template"
    text: str | None
    template: str | None
    language: str | None
    parameters: tuple[str, ...]
    callback_data: str | None
    at: float  # the fake's clock (unix seconds)
    failed_code: int | None = None  # set when reported as a failed status webhook (async errors)


@dataclass
class Faults:
    """Fault switches, read on every request so they can be flipped at runtime."""

    latency_ms: int = 0  # added to every API request
    error_rate: float = 0.0  # fraction of API requests refused with 500/131000 or 503/131016 (never applied)
    fail_next: int = 0  # the next N API requests fail with fail_next_code
    fail_next_code: int = 131000
    fail_next_status: int = 0  # 0: Meta's status for that code; 502/504: a proxy's HTML page, no envelope
    accept_then_drop: int = 0  # the next N sends are accepted, then the connection drops without an answer
    async_errors: bool = False  # 131047/131050 come as 200 + a failed status webhook instead of an error
    webhook_delay_ms: int = 5  # before each status webhook
    duplicate_webhooks: bool = False  # every webhook is delivered twice (receivers must dedupe)

    def update(self, values: Mapping[str, Any]) -> None:
        """Validate every value first, then apply them all (used by ``POST /__fake__/faults``)."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"fault {name!r} must be a boolean")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fault {name!r} must be a non-negative integer")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"fault {name!r} must be a number between 0 and 1")
            clean[name] = float(value) if isinstance(current, float) else value
        for name, value in clean.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())
