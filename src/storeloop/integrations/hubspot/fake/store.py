"""In-memory CRM objects and properties of the fake HubSpot, with HubSpot's uniqueness rules.

Unique values (``email`` on contacts, and every property created with ``hasUniqueValue``) are
enforced on every write path, as HubSpot does, so a duplicate can only appear under a key HubSpot
does not enforce (e.g. ``storeloop_line_ref`` on line items) or through a plain create before the
unique property existed. The caller (``FakeHubSpot``) holds the lock around every call.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .schema import (
    DEFAULT_GROUPS,
    DEFAULT_PROPERTIES,
    OBJECT_TYPE_IDS,
    PROPERTY_TYPES,
    READ_ONLY,
    UNIQUE_CAPABLE,
    CrmError,
    check_value,
    invalid_value,
    validation_error,
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Record:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    indexed_at: float = field(default_factory=time.monotonic)  # when search can see this version
    archived: bool = False

    def view(self, names: list[str] | None = None) -> dict[str, Any]:
        props: dict[str, str | None] = dict(self.properties)
        if names is not None:
            props = {n: self.properties.get(n) for n in names}
        return {
            "id": self.id,
            "properties": {**props, "hs_object_id": self.id},
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": self.archived,
        }


def _property_def(object_type: str, name: str, type_: str, field_type: str, **extra: Any) -> dict[str, Any]:
    now = now_iso()
    return {
        "name": name,
        "label": extra.pop("label", name.replace("_", " ").title()),
        "type": type_,
        "fieldType": field_type,
        "description": extra.pop("description", ""),
        "groupName": extra.pop("groupName", DEFAULT_GROUPS[object_type]),
        "options": [],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": bool(extra.pop("hasUniqueValue", False)),
        "hidden": False,
        "formField": True,
        "hubspotDefined": extra.pop("hubspotDefined", False),
        "createdAt": now,
        "updatedAt": now,
        "archived": False,
    }


class ObjectStore:
    def __init__(self, rng: random.Random, *, strict_properties: bool = True) -> None:
        self.rng = rng
        self.strict_properties = strict_properties
        self.records: dict[str, dict[str, Record]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.properties: dict[str, dict[str, dict[str, Any]]] = {
            t: {n: _property_def(t, n, ty, ft, hubspotDefined=True) for n, (ty, ft) in props.items()}
            for t, props in DEFAULT_PROPERTIES.items()
        }
        self.groups: dict[str, dict[str, dict[str, Any]]] = {
            t: {g: {"name": g, "label": g, "displayOrder": -1, "archived": False}} for t, g in DEFAULT_GROUPS.items()
        }
        # (object type) -> unique property -> normalised value -> record id
        self.unique: dict[str, dict[str, dict[str, str]]] = {t: {} for t in OBJECT_TYPE_IDS}
        self.unique["contacts"]["email"] = {}
        self._ids = itertools.count(1_000_000 + rng.randrange(1000) * 1000)

    # --- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def norm(prop: str, value: str) -> str:
        return value.strip().lower() if prop == "email" else value

    def unique_props(self, object_type: str) -> dict[str, dict[str, str]]:
        return self.unique[object_type]

    def live(self, object_type: str) -> Iterator[Record]:
        return (r for r in self.records[object_type].values() if not r.archived)

    def get_live(self, object_type: str, record_id: str) -> Record | None:
        record = self.records[object_type].get(record_id)
        return record if record is not None and not record.archived else None

    def find_unique(self, object_type: str, prop: str, value: str) -> Record | None:
        owner = self.unique[object_type].get(prop, {}).get(self.norm(prop, value))
        return self.get_live(object_type, owner) if owner else None

    def check(self, object_type: str, props: Mapping[str, str], own_id: str | None) -> dict[str, Any] | None:
        """Validation of one record's properties: unknown names, bad values, unique collisions."""
        defs = self.properties[object_type]
        details: list[dict[str, Any]] = []
        for name, value in props.items():
            if not isinstance(value, str):
                details.append(invalid_value(name, "INVALID_TYPE", f"{name} must be a string."))
            elif name in READ_ONLY:
                details.append(invalid_value(name, "READ_ONLY_VALUE", f"{name} is a read only property"))
            elif name not in defs:
                if self.strict_properties:
                    details.append(invalid_value(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            elif (bad := check_value(name, str(defs[name]["type"]), value)) is not None:
                details.append(bad)
        if details:
            return validation_error(details)
        for prop, index in self.unique[object_type].items():
            wanted = props.get(prop)
            owner = index.get(self.norm(prop, wanted)) if wanted else None
            if owner is not None and owner != own_id:
                return {
                    "category": "VALIDATION_ERROR",
                    "message": f"A {object_type} record with {prop} {wanted} already exists. Existing ID: {owner}",
                    "errors": [{"message": "unique value taken", "code": "DUPLICATE_UNIQUE_VALUE", "in": prop}],
                }
        return None

    def create(self, object_type: str, props: Mapping[str, str]) -> Record:
        now = now_iso()
        record = Record(str(next(self._ids)), {"createdate": now}, now, now)
        self.records[object_type][record.id] = record
        self.write(object_type, record, props)
        return record

    def write(self, object_type: str, record: Record, props: Mapping[str, str]) -> None:
        for prop, index in self.unique[object_type].items():
            if prop in props:
                old = record.properties.get(prop)
                if old:
                    index.pop(self.norm(prop, old), None)
                if props[prop]:
                    index[self.norm(prop, props[prop])] = record.id
        record.properties.update((k, v) for k, v in props.items() if k not in READ_ONLY)
        record.updated_at = record.properties["hs_lastmodifieddate"] = now_iso()
        if object_type == "contacts":
            record.properties["lastmodifieddate"] = record.updated_at
        record.indexed_at = time.monotonic()

    def archive(self, object_type: str, record: Record) -> None:
        record.archived = True
        for prop, index in self.unique[object_type].items():
            value = record.properties.get(prop)
            if value and index.get(self.norm(prop, value)) == record.id:
                del index[self.norm(prop, value)]

    # --- properties API ----------------------------------------------------------------------------

    def create_property(self, object_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise CrmError(400, "VALIDATION_ERROR", f"Missing required fields: {', '.join(missing)}")
        name, type_ = str(body["name"]), str(body["type"])
        if name in self.properties[object_type]:
            raise CrmError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        if type_ not in PROPERTY_TYPES:
            raise CrmError(400, "VALIDATION_ERROR", f"Invalid property type: {type_}")
        if str(body["groupName"]) not in self.groups[object_type]:
            raise CrmError(400, "VALIDATION_ERROR", f"Property group {body['groupName']} does not exist.")
        unique = bool(body.get("hasUniqueValue"))
        if unique and object_type not in UNIQUE_CAPABLE:
            raise CrmError(400, "VALIDATION_ERROR", f"Unique value properties are not supported for {object_type}.")
        if unique and sum(p["hasUniqueValue"] for p in self.properties[object_type].values()) >= 10:
            raise CrmError(400, "VALIDATION_ERROR", "An object type can have at most 10 unique properties.")
        definition = _property_def(
            object_type,
            name,
            type_,
            str(body["fieldType"]),
            label=str(body["label"]),
            description=str(body.get("description") or ""),
            groupName=str(body["groupName"]),
            hasUniqueValue=unique,
        )
        self.properties[object_type][name] = definition
        if unique:  # only new properties can be unique, so no existing values to index
            self.unique[object_type][name] = {}
        return definition

    def get_property(self, object_type: str, name: str) -> dict[str, Any]:
        found = self.properties[object_type].get(name)
        if found is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} for object type {object_type}")
        return found

    def create_group(self, object_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not name or not body.get("label"):
            raise CrmError(400, "VALIDATION_ERROR", "Missing required fields: name, label")
        if name in self.groups[object_type]:
            raise CrmError(409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists.")
        group = {"name": name, "label": str(body["label"]), "displayOrder": body.get("displayOrder", -1)}
        self.groups[object_type][name] = {**group, "archived": False}
        return self.groups[object_type][name]

    # --- search ------------------------------------------------------------------------------------

    def search(self, object_type: str, body: Mapping[str, Any], lag: float) -> dict[str, Any]:
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or len(groups) > 5:
            raise CrmError(400, "VALIDATION_ERROR", "There can be at most 5 filterGroups.")
        filters_total = 0
        for group in groups:
            count = len(group.get("filters") or []) if isinstance(group, Mapping) else 0
            filters_total += count
            if count > 10:
                raise CrmError(400, "VALIDATION_ERROR", "There can be at most 10 filters in a filterGroup.")
        if filters_total > 25:
            raise CrmError(400, "VALIDATION_ERROR", "There can be at most 25 filters in a request.")
        limit = int(body.get("limit") or 10)
        if not 1 <= limit <= 200:
            raise CrmError(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
        offset = int(body.get("after") or 0)
        visible_before = time.monotonic() - lag
        matched = [
            r
            for r in self.live(object_type)
            if r.indexed_at <= visible_before and (not groups or any(self._match(r, g) for g in groups))
        ]
        matched.sort(key=lambda r: int(r.id))
        names = list(body.get("properties") or []) or ["createdate", "hs_lastmodifieddate"]
        page = matched[offset : offset + limit]
        out: dict[str, Any] = {"total": len(matched), "results": [r.view(names) for r in page]}
        if offset + limit < len(matched):
            out["paging"] = {"next": {"after": str(offset + limit), "link": ""}}
        return out

    @staticmethod
    def _match(record: Record, group: Mapping[str, Any]) -> bool:
        for flt in group.get("filters") or []:
            prop, op = str(flt.get("propertyName")), str(flt.get("operator", "EQ"))
            have = record.id if prop == "hs_object_id" else record.properties.get(prop)
            value = str(flt.get("value", "")).lower()
            values = {str(v).lower() for v in flt.get("values") or []}
            low = (have or "").lower()
            if op == "EQ":
                ok = have is not None and low == value
            elif op == "NEQ":
                ok = low != value
            elif op == "IN":
                ok = have is not None and low in values
            elif op == "NOT_IN":
                ok = low not in values
            elif op == "HAS_PROPERTY":
                ok = bool(have)
            elif op == "NOT_HAS_PROPERTY":
                ok = not have
            elif op == "CONTAINS_TOKEN":
                ok = value.strip("*") in low
            elif op in ("GT", "GTE", "LT", "LTE"):
                try:
                    a, b = float(have or "nan"), float(value)
                except ValueError:
                    return False
                ok = {"GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b}[op]
            else:
                raise CrmError(400, "VALIDATION_ERROR", f"Unsupported operator: {op}")
            if not ok:
                return False
        return True
