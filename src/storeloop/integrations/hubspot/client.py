"""HubSpot CRM v3 / Associations v4 adapter: ``HubSpotClient`` implements ``HubSpotPort``.

Pure Python (no Django). How each object type stays idempotent:

- contacts: ``batch/upsert`` with ``idProperty=email`` (HubSpot keeps e-mails unique).
- deals: ``batch/upsert`` with ``idProperty=storeloop_order_ref``, a property created with
  ``hasUniqueValue=true``, so HubSpot itself refuses a second deal for one order.
- line items: HubSpot offers unique properties on contacts, companies, deals, tickets and custom
  objects only, so line items cannot be upserted. Each carries ``storeloop_line_ref`` and hangs off
  one deal; we read the deal's line items through its associations (consistent right after a write,
  unlike search), update the ones found and create the rest *with* the deal association in the same
  call. A create that fails ambiguously (timeout/5xx) is never blindly resent: the deal is re-read
  first. Duplicates (e.g. two workers racing on one order) are archived on the next upsert.
- associations: v4 PUT-like semantics; re-associating an existing pair is a no-op.

Batch upserts are POSTs but idempotent: the input names its record by a unique value, so sending it
twice leaves one record with the same values (the second answer says ``new: false``). That is why
the transport retries them after timeouts and 5xx like any GET.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from storeloop.core.ports import RateLimiter
from storeloop.integrations.crm import RecordOutcome

from .batch import (
    Slot,
    chunks,
    context_values,
    error_slot,
    error_text,
    errors_of,
    id_sort,
    map_associations,
    map_batch,
    next_after,
    no_associations,
    props_of,
    results_of,
    run_chunks,
)
from .errors import (
    HubSpotConflict,
    HubSpotTransientError,
    HubSpotValidationError,
)
from .models import (
    CONTACTS,
    CUSTOM_PROPERTIES,
    DEALS,
    LINE_ITEM_TO_DEAL,
    LINE_ITEMS,
    LINE_REF,
    MAX_BATCH,
    ORDER_REF,
    PROPERTY_GROUP,
    PROPERTY_GROUP_LABEL,
    ContactInput,
    DealInput,
    LineItemInput,
    PropertySpec,
    normalize_email,
    pair_key,
)
from .port import HubSpotPort
from .transport import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, Transport

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "HubSpotClient", "HubSpotPort"]

logger = logging.getLogger("storeloop.integrations.hubspot")

_ASSOC_PAGE = 500


def _identity(value: str) -> str:
    return value


def _outcome(key: str, slot: Slot) -> RecordOutcome:
    if slot.error is not None:
        return RecordOutcome(key=key, error=slot.error, transient=slot.transient)
    return RecordOutcome(key=key, remote_id=slot.remote_id, created=slot.created)


class HubSpotClient(HubSpotPort):
    """httpx implementation of :class:`HubSpotPort` for one HubSpot account (private app token).

    ``limiter`` is shared by every client of the same account (the burst limit is per account).
    One pooled ``httpx.Client`` is reused; call :meth:`close` or use the client as a context manager.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._t = Transport(
            token,
            base_url=base_url,
            limiter=limiter,
            timeout=timeout,
            max_retries=max_retries,
            transport=transport,
            sleep=sleep,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            rng=rng,
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the token
        return f"HubSpotClient({self._t.base_url!r})"

    def _post(self, path: str, body: Any, *, idempotent: bool = True) -> Any:
        return self._t.request("POST", path, body=body, idempotent=idempotent)[1]

    # --- setup -------------------------------------------------------------------------------------

    def check_token(self) -> None:
        self._t.request("GET", "/crm/v3/objects/contacts", params={"limit": 1, "archived": "false"})

    def ensure_properties(self) -> None:
        by_type: dict[str, list[PropertySpec]] = {}
        for spec in CUSTOM_PROPERTIES:
            by_type.setdefault(spec.object_type, []).append(spec)
        for object_type, specs in by_type.items():
            _, data = self._t.request("GET", f"/crm/v3/properties/{object_type}")
            existing = {str(p.get("name")): p for p in results_of(data)}
            missing = [s for s in specs if s.name not in existing]
            for spec in specs:
                if spec.name in existing:
                    self._check_unique(spec, existing[spec.name])
            if missing:
                self._ensure_group(object_type)
            for spec in missing:
                try:
                    self._post(f"/crm/v3/properties/{object_type}", spec.body())
                except HubSpotConflict:  # created meanwhile by another worker
                    _, found = self._t.request("GET", f"/crm/v3/properties/{object_type}/{spec.name}")
                    self._check_unique(spec, found if isinstance(found, Mapping) else {})
                else:
                    logger.info("hubspot: created property %s.%s", object_type, spec.name)

    def _ensure_group(self, object_type: str) -> None:
        body = {"name": PROPERTY_GROUP, "label": PROPERTY_GROUP_LABEL, "displayOrder": -1}
        with contextlib.suppress(HubSpotConflict):  # 409: already there
            self._post(f"/crm/v3/properties/{object_type}/groups", body)

    @staticmethod
    def _check_unique(spec: PropertySpec, found: Mapping[str, Any]) -> None:
        if spec.unique and found.get("hasUniqueValue") is not True:
            # HubSpot only makes *new* properties unique; upserts by this one would be refused.
            raise HubSpotValidationError(
                f"HubSpot property {spec.object_type}.{spec.name} exists without 'require unique "
                "values'; HubSpot cannot make an existing property unique. Delete it in HubSpot "
                "(Settings > Properties) and run the setup again.",
                category="STORELOOP_SETUP",
            )

    # --- upserts -----------------------------------------------------------------------------------

    def upsert_contacts(self, inputs: Sequence[ContactInput]) -> list[RecordOutcome]:
        items = [(i.key, normalize_email(i.email), i.hubspot_properties()) for i in inputs]
        return self._upsert(CONTACTS, "email", items, normalize_email)

    def upsert_deals(self, inputs: Sequence[DealInput]) -> list[RecordOutcome]:
        items = [(i.key, i.order_ref, i.hubspot_properties()) for i in inputs]
        return self._upsert(DEALS, ORDER_REF, items, _identity)

    def _upsert(
        self,
        object_type: str,
        id_property: str,
        items: Sequence[tuple[str, str, dict[str, str]]],
        norm: Callable[[str], str],
    ) -> list[RecordOutcome]:
        """``items`` = (outcome key, unique id value, properties); later duplicates merge over earlier."""
        merged: dict[str, dict[str, str]] = {}
        key_to_id: dict[str, str] = {}
        for key, id_value, props in items:
            key_to_id.setdefault(key, id_value)
            if id_value:
                merged[id_value] = {**merged.get(id_value, {}), **props}
        entries = list(merged.items())

        def send(chunk: Sequence[tuple[str, dict[str, str]]]) -> list[Slot]:
            body = {
                "inputs": [
                    {"idProperty": id_property, "id": id_value, "properties": props, "objectWriteTraceId": str(i)}
                    for i, (id_value, props) in enumerate(chunk)
                ]
            }
            # An idempotent POST (see the module docstring): the transport retries it like a GET.
            data = self._post(f"/crm/v3/objects/{object_type}/batch/upsert", body)
            index = {norm(id_value): i for i, (id_value, _) in enumerate(chunk)}

            def result_index(result: Mapping[str, Any]) -> int | None:
                value = props_of(result).get(id_property)
                return index.get(norm(value)) if isinstance(value, str) else None

            def error_indices(error: Mapping[str, Any]) -> list[int]:
                values = context_values(error, "ids", id_property)
                return [index[norm(v)] for v in values if norm(v) in index]

            return map_batch(
                data,
                len(chunk),
                result_index=result_index,
                error_indices=error_indices,
                created=lambda r: r["new"] if isinstance(r.get("new"), bool) else None,
            )

        slots = dict(zip(merged, run_chunks(entries, send, MAX_BATCH), strict=True))
        missing_key = Slot(error=error_text("VALIDATION_ERROR", f"empty {id_property}"))
        outcomes = [_outcome(key, slots.get(id_value, missing_key)) for key, id_value in key_to_id.items()]
        logger.debug(
            "hubspot upsert %s: %d records, %d failed",
            object_type,
            len(outcomes),
            sum(o.error is not None for o in outcomes),
        )
        return outcomes

    # --- line items --------------------------------------------------------------------------------

    def upsert_line_items(self, inputs: Sequence[LineItemInput]) -> list[RecordOutcome]:
        latest: dict[str, LineItemInput] = {}
        for item in inputs:
            previous = latest.get(item.line_ref)
            if previous is not None and previous.deal_id == item.deal_id:
                item = LineItemInput(item.line_ref, item.deal_id, {**previous.properties, **item.properties})
            latest[item.line_ref] = item
        valid = [i for i in latest.values() if i.line_ref and i.deal_id]
        existing = self._line_items_of({i.deal_id for i in valid})
        updates: list[tuple[LineItemInput, str]] = []
        creates: list[LineItemInput] = []
        extras: list[str] = []
        for item in valid:
            ids = existing.get(item.deal_id, {}).get(item.line_ref)
            if ids:
                updates.append((item, ids[0]))
                extras.extend(ids[1:])  # duplicates from an earlier race: keep the oldest
            else:
                creates.append(item)
        slots: dict[str, Slot] = {}
        if updates:
            done = run_chunks(updates, self._send_line_item_updates, MAX_BATCH)
            slots.update((item.line_ref, slot) for (item, _), slot in zip(updates, done, strict=True))
        if creates:
            slots.update(self._create_line_items(creates, extras))
        if extras:
            self.archive_line_items(extras)
        invalid = Slot(error=error_text("VALIDATION_ERROR", "line_ref and deal_id are required"))
        return [_outcome(ref, slots.get(ref, invalid)) for ref in latest]

    def _send_line_item_updates(self, chunk: Sequence[tuple[LineItemInput, str]]) -> list[Slot]:
        body = {
            "inputs": [
                {"id": remote_id, "properties": item.hubspot_properties(), "objectWriteTraceId": str(i)}
                for i, (item, remote_id) in enumerate(chunk)
            ]
        }
        data = self._post(f"/crm/v3/objects/{LINE_ITEMS}/batch/update", body)
        index = {remote_id: i for i, (_, remote_id) in enumerate(chunk)}
        slots = map_batch(
            data,
            len(chunk),
            result_index=lambda r: index.get(str(r.get("id"))),
            error_indices=lambda e: [index[v] for v in context_values(e, "ids") if v in index],
            created=lambda r: False,
        )
        # Archived since we read it: the next upsert will not find it and creates it again.
        return [s._replace(transient=True) if s.error and s.error.startswith("OBJECT_NOT_FOUND") else s for s in slots]

    def _send_line_item_creates(self, chunk: Sequence[LineItemInput]) -> list[Slot]:
        to_deal = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": LINE_ITEM_TO_DEAL}]
        body = {
            "inputs": [
                {
                    "properties": item.hubspot_properties(),
                    "associations": [{"to": {"id": item.deal_id}, "types": to_deal}],
                    "objectWriteTraceId": str(i),
                }
                for i, item in enumerate(chunk)
            ]
        }
        data = self._post(f"/crm/v3/objects/{LINE_ITEMS}/batch/create", body, idempotent=False)
        index = {item.line_ref: i for i, item in enumerate(chunk)}
        return map_batch(
            data,
            len(chunk),
            result_index=lambda r: index.get(str(props_of(r).get(LINE_REF))),
            error_indices=lambda e: [],
            created=lambda r: True,
        )

    def _create_line_items(self, items: list[LineItemInput], extras: list[str]) -> dict[str, Slot]:
        """Create, reconciling after an ambiguous failure instead of resending blindly."""
        done: dict[str, Slot] = {}
        pending = items
        attempt = 0
        while pending:
            try:
                slots = run_chunks(pending, self._send_line_item_creates, MAX_BATCH)
            except HubSpotTransientError as exc:
                if not exc.maybe_applied or attempt >= self._t.max_retries:
                    raise
                self._t.sleep(self._t.backoff(attempt))
                attempt += 1
                found = self._line_items_of({i.deal_id for i in pending})
                still: list[LineItemInput] = []
                for item in pending:
                    ids = found.get(item.deal_id, {}).get(item.line_ref)
                    if ids:  # the failed call did create it
                        done[item.line_ref] = Slot(remote_id=ids[0], created=True)
                        extras.extend(ids[1:])
                    else:
                        still.append(item)
                logger.warning(
                    "hubspot line item create failed ambiguously; %d of %d were applied, resending %d",
                    len(pending) - len(still),
                    len(pending),
                    len(still),
                )
                pending = still
            else:
                done.update((item.line_ref, slot) for item, slot in zip(pending, slots, strict=True))
                pending = []
        return done

    def deal_line_items(self, deal_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        return {
            deal: {ref: ids[0] for ref, ids in refs.items()}
            for deal, refs in self._line_items_of(set(deal_ids)).items()
        }

    def _line_items_of(self, deal_ids: set[str]) -> dict[str, dict[str, list[str]]]:
        """``{deal_id: {line_ref: [line item ids, oldest first]}}`` via the deals' associations."""
        linked: dict[str, list[str]] = {}
        for chunk in chunks(sorted(deal_ids), MAX_BATCH):
            data = self._post(
                f"/crm/v4/associations/{DEALS}/{LINE_ITEMS}/batch/read", {"inputs": [{"id": d} for d in chunk]}
            )
            for error in errors_of(data):
                if not no_associations(error):
                    # Unknown state: creating now could duplicate line items. Try again later.
                    slot = error_slot(error)
                    raise HubSpotTransientError(f"reading deal line items failed: {slot.error}")
            for result in results_of(data):
                source = result.get("from")
                deal = str(source.get("id")) if isinstance(source, Mapping) else ""
                targets = result.get("to")
                ids = linked.setdefault(deal, [])
                for target in targets if isinstance(targets, list) else []:
                    if isinstance(target, Mapping) and target.get("toObjectId") is not None:
                        ids.append(str(target["toObjectId"]))
                if next_after(result):
                    ids.extend(self._more_associations(deal, str(next_after(result))))
        refs: dict[str, str] = {}
        all_ids = sorted({i for ids in linked.values() for i in ids}, key=id_sort)
        for id_chunk in chunks(all_ids, MAX_BATCH):
            body = {"inputs": [{"id": i} for i in id_chunk], "properties": [LINE_REF]}
            data = self._post(f"/crm/v3/objects/{LINE_ITEMS}/batch/read", body)
            for result in results_of(data):  # errors = archived/unknown ids: not ours any more
                ref = props_of(result).get(LINE_REF)
                if isinstance(ref, str) and ref:
                    refs[str(result.get("id"))] = ref
        out: dict[str, dict[str, list[str]]] = {}
        for deal, ids in linked.items():
            for line_id in sorted(set(ids), key=id_sort):
                if line_id in refs:
                    out.setdefault(deal, {}).setdefault(refs[line_id], []).append(line_id)
        return out

    def _more_associations(self, deal: str, after: str) -> list[str]:
        ids: list[str] = []
        cursor: str | None = after
        while cursor:
            params: dict[str, str | int] = {"limit": _ASSOC_PAGE, "after": cursor}
            _, data = self._t.request("GET", f"/crm/v4/objects/{DEALS}/{deal}/associations/{LINE_ITEMS}", params=params)
            ids.extend(str(r["toObjectId"]) for r in results_of(data) if r.get("toObjectId") is not None)
            cursor = next_after(data)
        return ids

    def archive_line_items(self, ids: Iterable[str]) -> None:
        for chunk in chunks(sorted(set(ids), key=id_sort), MAX_BATCH):
            self._post(f"/crm/v3/objects/{LINE_ITEMS}/batch/archive", {"inputs": [{"id": i} for i in chunk]})

    # --- associations ------------------------------------------------------------------------------

    def associate(
        self,
        from_type: str,
        to_type: str,
        pairs: Sequence[tuple[str, str]],
        *,
        association_type_id: int | None = None,
    ) -> list[RecordOutcome]:
        distinct = list(dict.fromkeys((str(f), str(t)) for f, t in pairs))
        base = f"/crm/v4/associations/{from_type}/{to_type}/batch"

        def send(chunk: Sequence[tuple[str, str]]) -> list[Slot]:
            inputs: list[dict[str, Any]] = [{"from": {"id": f}, "to": {"id": t}} for f, t in chunk]
            if association_type_id is None:
                data = self._post(f"{base}/associate/default", {"inputs": inputs})
            else:
                spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": association_type_id}]
                data = self._post(f"{base}/create", {"inputs": [{**i, "types": spec} for i in inputs]})
            return map_associations(data, chunk)

        slots = run_chunks(distinct, send, MAX_BATCH)
        return [_outcome(pair_key(f, t), slot) for (f, t), slot in zip(distinct, slots, strict=True)]

    # --- lookups -----------------------------------------------------------------------------------

    def search_deals_by_ref(self, refs: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(refs)), MAX_BATCH):
            after: str | None = None
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [
                        {"filters": [{"propertyName": ORDER_REF, "operator": "IN", "values": list(chunk)}]}
                    ],
                    "properties": [ORDER_REF],
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "limit": MAX_BATCH,
                }
                if after:
                    body["after"] = after
                data = self._post(f"/crm/v3/objects/{DEALS}/search", body)
                for result in results_of(data):
                    ref = props_of(result).get(ORDER_REF)
                    if isinstance(ref, str):
                        found.setdefault(ref, str(result.get("id")))
                after = next_after(data)
                if not after:
                    break
        return found

    def get_deals_by_ref(self, refs: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(refs)), MAX_BATCH):
            body = {"idProperty": ORDER_REF, "inputs": [{"id": r} for r in chunk], "properties": [ORDER_REF]}
            data = self._post(f"/crm/v3/objects/{DEALS}/batch/read", body)
            for result in results_of(data):  # errors = refs without a deal
                ref = props_of(result).get(ORDER_REF)
                if isinstance(ref, str):
                    found[ref] = str(result.get("id"))
        return found
