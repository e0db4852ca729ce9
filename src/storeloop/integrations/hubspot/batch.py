"""Turning HubSpot batch answers (200/201/207) into one outcome per input.

Matching never relies on response order (HubSpot does not promise it). Every input carries
``objectWriteTraceId`` = its index in the chunk: HubSpot echoes it in the error ``context``
(``{"objectWriteTraceId": ["3"]}``) of a 207 multi-status answer, and newer API versions echo it on
results too. When it is missing the caller's fallback matchers use what each endpoint does return
(the upsert id property value, ``context.ids``, association object ids).

A whole-batch 400 (what HubSpot does for record-level problems without multi-status) is isolated
by bisection, bounded by ``BISECT_BUDGET`` extra requests per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from .errors import HubSpotValidationError, scrub
from .models import pair_key

T = TypeVar("T")

# Per-record error categories worth retrying. CONFLICT inside an upsert/association batch means a
# concurrent write raced ours on the same unique value; the retry then finds the record and updates.
TRANSIENT_CATEGORIES = frozenset(
    {
        "RATE_LIMITS",
        "RATE_LIMIT",
        "INTERNAL_ERROR",
        "SERVICE_UNAVAILABLE",
        "TIMEOUT",
        "GATEWAY_TIMEOUT",
        "LOCKED",
        "CONFLICT",
        "CONCURRENT_MODIFICATION",
    }
)
NO_RESULT = "HubSpot returned no result for this record"
BISECT_BUDGET = 32


class Slot(NamedTuple):
    """What happened to one input of a chunk (a ``RecordOutcome`` without its key)."""

    remote_id: str | None = None
    created: bool | None = None
    error: str | None = None
    transient: bool = False


def results_of(data: Any) -> list[Mapping[str, Any]]:
    found = data.get("results") if isinstance(data, Mapping) else None
    return [r for r in found if isinstance(r, Mapping)] if isinstance(found, list) else []


def errors_of(data: Any) -> list[Mapping[str, Any]]:
    found = data.get("errors") if isinstance(data, Mapping) else None
    return [e for e in found if isinstance(e, Mapping)] if isinstance(found, list) else []


def props_of(result: Mapping[str, Any]) -> Mapping[str, Any]:
    props = result.get("properties")
    return props if isinstance(props, Mapping) else {}


def next_after(data: Any) -> str | None:
    paging = data.get("paging") if isinstance(data, Mapping) else None
    nxt = paging.get("next") if isinstance(paging, Mapping) else None
    after = nxt.get("after") if isinstance(nxt, Mapping) else None
    return str(after) if after not in (None, "") else None


def no_associations(error: Mapping[str, Any]) -> bool:
    """v4 batch read reports a deal without line items (or an unknown deal) as a per-input error."""
    sub = str(error.get("subCategory") or "")
    return str(error.get("category")) == "OBJECT_NOT_FOUND" or "NO_ASSOCIATIONS" in sub.upper()


def id_sort(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def error_text(category: str | None, message: str | None) -> str:
    return scrub(f"{category or 'ERROR'}: {message or 'no message'}")


def error_is_transient(error: Mapping[str, Any]) -> bool:
    category = error.get("category") or error.get("errorType")
    if isinstance(category, str) and category.upper() in TRANSIENT_CATEGORIES:
        return True
    status = str(error.get("status") or "")
    return status.isdigit() and (int(status) == 429 or int(status) >= 500)


def error_slot(error: Mapping[str, Any]) -> Slot:
    category = error.get("category") or error.get("errorType")
    message = error.get("message")
    return Slot(
        error=error_text(category if isinstance(category, str) else None, str(message or "")),
        transient=error_is_transient(error),
    )


def context_values(error: Mapping[str, Any], *names: str) -> list[str]:
    context = error.get("context")
    if not isinstance(context, Mapping):
        return []
    values: list[str] = []
    for name in names:
        found = context.get(name)
        if isinstance(found, list):
            values.extend(str(v) for v in found)
        elif isinstance(found, str | int):
            values.append(str(found))
    return values


def _trace_indices(values: list[str], n: int) -> list[int]:
    return [int(v) for v in values if v.isdigit() and int(v) < n]


def map_batch(
    data: Any,
    n: int,
    *,
    result_index: Callable[[Mapping[str, Any]], int | None],
    error_indices: Callable[[Mapping[str, Any]], list[int]],
    created: Callable[[Mapping[str, Any]], bool | None] = lambda r: None,
) -> list[Slot]:
    """One ``Slot`` per input (n of them) from a decoded batch response body."""
    slots: list[Slot | None] = [None] * n
    body: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    for result in body.get("results") or []:
        if not isinstance(result, Mapping):
            continue
        traced = _trace_indices([str(result.get("objectWriteTraceId", ""))], n)
        index = traced[0] if traced else result_index(result)
        if index is not None and slots[index] is None:
            remote = result.get("id")
            slots[index] = Slot(remote_id=str(remote) if remote is not None else None, created=created(result))
    unattributed: list[Slot] = []
    for error in body.get("errors") or []:
        if not isinstance(error, Mapping):
            continue
        indices = _trace_indices(context_values(error, "objectWriteTraceId"), n) or error_indices(error)
        slot = error_slot(error)
        if not indices:
            unattributed.append(slot)
        for index in indices:
            slots[index] = slot  # an error wins over a result for the same input
    fallback = unattributed[0] if unattributed else Slot(error=NO_RESULT, transient=True)
    return [slot if slot is not None else fallback for slot in slots]


def batch_wide(exc: HubSpotValidationError) -> bool:
    """A 400 every record would get again (schema/config problem): do not bisect, raise."""
    text = exc.message.lower()
    return (
        "PROPERTY_DOESNT_EXIST" in exc.codes
        or "non-unique" in text
        or "duplicate ids" in text
        or (exc.category not in (None, "VALIDATION_ERROR"))
    )


def run_chunks(items: Sequence[T], send: Callable[[Sequence[T]], list[Slot]], size: int) -> list[Slot]:
    """``send`` every chunk of ``size``; isolate record-level 400s by bisection."""
    out: list[Slot] = []
    for chunk in chunks(items, size):
        budget = [BISECT_BUDGET]
        out.extend(_bisect(chunk, send, budget))
    return out


def _bisect(chunk: Sequence[T], send: Callable[[Sequence[T]], list[Slot]], budget: list[int]) -> list[Slot]:
    try:
        return send(chunk)
    except HubSpotValidationError as exc:
        if batch_wide(exc):
            raise
        if len(chunk) == 1:
            return [Slot(error=error_text(exc.category or "VALIDATION_ERROR", exc.message))]
        if budget[0] < 2:
            # Not isolated: nothing in this chunk was applied; let the caller retry it later.
            return [Slot(error=error_text("NOT_SENT", f"batch rejected: {exc.message}"), transient=True)] * len(chunk)
        budget[0] -= 2
        mid = len(chunk) // 2
        return _bisect(chunk[:mid], send, budget) + _bisect(chunk[mid:], send, budget)


def map_associations(data: Any, chunk: Sequence[tuple[str, str]]) -> list[Slot]:
    """Slots for association pairs; results carry no id, so a success's ``remote_id`` is the pair key."""
    index = {pair: i for i, pair in enumerate(chunk)}

    def ends(result: Mapping[str, Any]) -> tuple[str, str]:
        # default: {"from": {"id"}, "to": {"id"}}; labeled: {"fromObjectId": 1, "toObjectId": 2}
        source, target = result.get("from"), result.get("to")
        f = source.get("id") if isinstance(source, Mapping) else result.get("fromObjectId")
        t = target.get("id") if isinstance(target, Mapping) else result.get("toObjectId")
        return str(f), str(t)

    def result_index(result: Mapping[str, Any]) -> int | None:
        f, t = ends(result)
        direct = index.get((f, t))
        return direct if direct is not None else index.get((t, f))  # default answers both ways

    def error_indices(error: Mapping[str, Any]) -> list[int]:
        ids = set(context_values(error, "objectId", "fromObjectId", "toObjectId", "ids"))
        return [i for i, (f, t) in enumerate(chunk) if f in ids or t in ids]

    results = results_of(data)
    # Prefer same-direction matches so a reverse-direction row never claims another pair first.
    results.sort(key=lambda r: ends(r) not in index)
    body = {"results": results, "errors": errors_of(data)}
    slots = map_batch(body, len(chunk), result_index=result_index, error_indices=error_indices)
    return [s._replace(remote_id=pair_key(*chunk[i])) if s.error is None else s for i, s in enumerate(slots)]
