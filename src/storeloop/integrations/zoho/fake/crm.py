"""In-memory Zoho CRM org: field metadata, records, unique indexes and the upsert algorithm.

Upsert follows the v8 contract: for each record (in input order) the ``duplicate_check_fields`` are
tried in order; the first existing record whose field value matches is updated (``action: update``,
``duplicate_field``), otherwise the record is inserted (``action: insert``, ``duplicate_field: null``).
Mandatory fields are checked on insert (MANDATORY_NOT_FOUND), values by data type (INVALID_DATA),
user-defined unique fields are enforced (DUPLICATE_DATA), lookups must point at existing records.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

ORDER_REF = "Storeloop_Order_Ref"
USER = {"name": "Fake Admin", "id": "4150868000000225013"}
# System-defined duplicate-check fields (v8 OAS): usable in duplicate_check_fields without being unique.
SYSTEM_DUPLICATE_FIELDS = {
    "Contacts": "Email",
    "Deals": "Deal_Name",
    "Sales_Orders": "Subject",
    "Products": "Product_Name",
}
# The field each module is keyed on by Storeloop; ``duplicates()`` counts collisions on it.
KEY_FIELDS = {"Contacts": "Email", "Deals": ORDER_REF, "Sales_Orders": ORDER_REF, "Products": "Product_Code"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ZohoApiError(Exception):
    """A top-level error answer: ``status`` and the Zoho envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details or {}, "message": message, "status": "error"}


@dataclass
class FieldDef:
    api_name: str
    data_type: str  # text, email, phone, currency, double, integer, date, picklist, boolean, lookup, subform
    label: str = ""
    mandatory: bool = False
    unique: bool = False
    custom: bool = False
    lookup: str | None = None  # target module of a lookup
    length: int = 255
    id: str = ""

    def metadata(self) -> dict[str, Any]:
        label = self.label or self.api_name.replace("_", " ")
        return {
            "api_name": self.api_name,
            "field_label": label,
            "display_label": label,
            "data_type": self.data_type,
            "id": self.id,
            "length": self.length,
            "system_mandatory": self.mandatory and not self.custom,
            "custom_field": self.custom,
            "unique": {"case_sensitive": False} if self.unique else {},
            "lookup": {"module": {"api_name": self.lookup}} if self.lookup else {},
            "read_only": False,
            "visible": True,
        }


def _default_fields() -> dict[str, list[FieldDef]]:
    def f(*args: Any, **kwargs: Any) -> FieldDef:
        return FieldDef(*args, **kwargs)

    return {
        "Contacts": [
            f("Last_Name", "text", mandatory=True, length=80),
            f("First_Name", "text", length=40),
            f("Email", "email", length=100),
            f("Phone", "phone", length=30),
            f("Mobile", "phone", length=30),
            f("Lead_Source", "picklist"),
        ],
        "Deals": [
            f("Deal_Name", "text", mandatory=True, length=120),
            f("Stage", "picklist", mandatory=True),
            f("Closing_Date", "date", mandatory=True),
            f("Amount", "currency"),
            f("Pipeline", "picklist"),
            f("Contact_Name", "lookup", lookup="Contacts"),
            f("Currency", "picklist"),
            f(ORDER_REF, "text", label="Storeloop Order Ref", unique=True, custom=True, length=64),
        ],
        "Sales_Orders": [
            f("Subject", "text", mandatory=True, length=255),
            f("Status", "picklist"),
            f("Contact_Name", "lookup", lookup="Contacts"),
            f("Deal_Name", "lookup", lookup="Deals"),
            f("Ordered_Items", "subform", mandatory=True),
            f("Currency", "picklist"),
            f(ORDER_REF, "text", label="Storeloop Order Ref", unique=True, custom=True, length=64),
        ],
        "Products": [
            f("Product_Name", "text", mandatory=True, length=120),
            f("Product_Code", "text", unique=True, length=100),
            f("Unit_Price", "currency"),
            f("Product_Active", "boolean"),
        ],
    }


def _norm(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RecordError(Exception):
    """One record failed: ``item`` is the per-record error entry of ``data[]``."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.item = {"code": code, "details": details, "message": message, "status": "error"}


@dataclass
class ModuleState:
    fields: dict[str, FieldDef]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # field -> normalised value -> record ids; built on first use, kept current by put()
    indexes: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def ids_with(self, name: str, value: str) -> set[str]:
        index = self.indexes.get(name)
        if index is None:
            index = self.indexes[name] = {}
            for rid, record in self.records.items():
                if (key := _norm(record.get(name))) is not None:
                    index.setdefault(key, set()).add(rid)
        return index.get(value, set())

    def put(self, record_id: str, record: dict[str, Any]) -> None:
        old = self.records.get(record_id, {})
        for name, index in self.indexes.items():
            before, after = _norm(old.get(name)), _norm(record.get(name))
            if before == after:
                continue
            if before is not None:
                index.get(before, set()).discard(record_id)
            if after is not None:
                index.setdefault(after, set()).add(record_id)
        self.records[record_id] = record


class CrmStore:
    """The org's data. Every public method takes the store lock."""

    def __init__(self, *, seed: int, reject_email: Callable[[str], bool]) -> None:
        self._ids = itertools.count(4150868000000000000 + (seed % 997) * 10**9 + 1001)
        self._lock = threading.RLock()
        self._reject_email = reject_email
        self.modules: dict[str, ModuleState] = {}
        for name, defs in _default_fields().items():
            for d in defs:
                d.id = self._next_id()
            self.modules[name] = ModuleState({d.api_name: d for d in defs})

    def _next_id(self) -> str:
        return str(next(self._ids))

    def module(self, name: str) -> ModuleState:
        state = self.modules.get(name)
        if state is None:
            raise ZohoApiError(
                400, "INVALID_MODULE", "the module name given seems to be invalid", {"resource_path_index": 0}
            )
        return state

    # --- metadata ----------------------------------------------------------------------------------

    def fields_metadata(self, module: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d.metadata() for d in self.module(module).fields.values()]

    def create_field(self, module: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            state = self.module(module)
            label = spec.get("field_label") or spec.get("display_label")
            data_type = spec.get("data_type")
            if not isinstance(label, str) or not isinstance(data_type, str):
                return RecordError("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "field_label"}).item
            api_name = spec.get("api_name") if isinstance(spec.get("api_name"), str) else None
            api_name = api_name or re.sub(r"\W+", "_", label.strip()).strip("_")
            if api_name in state.fields:
                return RecordError("DUPLICATE_DATA", "duplicate data", {"api_name": "api_name"}).item
            unique = spec.get("unique")
            length = spec.get("length")
            d = FieldDef(
                api_name,
                data_type,
                label=label,
                unique=isinstance(unique, Mapping),
                custom=True,
                length=length if isinstance(length, int) else 255,
                id=self._next_id(),
            )
            state.fields[api_name] = d
            return {"code": "SUCCESS", "details": {"id": d.id}, "message": "field created", "status": "success"}

    def remove_field(self, module: str, api_name: str) -> None:
        with self._lock:
            self.module(module).fields.pop(api_name, None)

    def set_unique(self, module: str, api_name: str, unique: bool) -> None:
        with self._lock:
            self.module(module).fields[api_name].unique = unique

    # --- records -----------------------------------------------------------------------------------

    def get(self, module: str, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.module(module).records.get(record_id)
            return _copy(record) if record is not None else None

    def all(self, module: str) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy(r) for r in self.module(module).records.values()]

    def count(self, module: str) -> int:
        with self._lock:
            return len(self.module(module).records)

    def duplicates(self) -> int:
        """Records sharing a key-field value with an earlier record, over all modules (must be 0)."""
        with self._lock:
            total = 0
            for name, key in KEY_FIELDS.items():
                seen: set[str] = set()
                for record in self.modules[name].records.values():
                    value = _norm(record.get(key))
                    if value is None:
                        continue
                    total += value in seen
                    seen.add(value)
            return total

    def insert(self, module: str, values: Mapping[str, Any]) -> str:
        """Create a record directly (test setup), bypassing validation."""
        with self._lock:
            record_id = self._next_id()
            self.module(module).put(record_id, self._stamp({"id": record_id, **values}, created=True))
            return record_id

    def upsert(self, module: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /{module}/upsert``: HTTP 200 all succeeded, 207 mixed, 400 all failed."""
        with self._lock:
            state = self.module(module)
            data = body.get("data")
            if not isinstance(data, list) or not data:
                raise ZohoApiError(
                    400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data", "json_path": "$.data"}
                )
            if len(data) > 100:
                raise ZohoApiError(400, "LIMIT_EXCEEDED", "the data limit exceeded", {"limit": 100, "api_name": "data"})
            check = body.get("duplicate_check_fields")
            check_fields = [SYSTEM_DUPLICATE_FIELDS[module]] if check is None else check
            for n, name in enumerate(check_fields if isinstance(check_fields, list) else [None]):
                known = isinstance(name, str) and name in state.fields
                if not known or not (state.fields[name].unique or name == SYSTEM_DUPLICATE_FIELDS[module]):
                    raise ZohoApiError(
                        400,
                        "INVALID_DATA",
                        "invalid data",
                        {"api_name": "duplicate_check_fields", "json_path": f"$.duplicate_check_fields[{n}]"},
                    )
            answers: list[dict[str, Any]] = []
            for index, item in enumerate(data):
                try:
                    answers.append(self._upsert_one(module, state, index, item, check_fields))
                except RecordError as error:
                    answers.append(error.item)
            ok = sum(1 for a in answers if a["status"] == "success")
            status = 200 if ok == len(answers) else 207 if ok else 400
            return status, {"data": answers}

    def _upsert_one(
        self, module: str, state: ModuleState, index: int, item: Any, check_fields: Iterable[str]
    ) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            raise RecordError("INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})
        values = self._validate(module, state, index, item)
        match_id: str | None = None
        matched_on: str | None = None
        for name in check_fields:
            wanted = _norm(values.get(name))
            if wanted is None:
                continue
            match_id = min(state.ids_with(name, wanted), default=None)  # oldest match, like Zoho
            if match_id is not None:
                matched_on = name
                break
        if match_id is None:
            for d in state.fields.values():
                if d.mandatory and d.api_name not in values:
                    path = f"$.data[{index}].{d.api_name}"
                    raise RecordError(
                        "MANDATORY_NOT_FOUND", "required field not found", {"api_name": d.api_name, "json_path": path}
                    )
        self._check_unique(state, index, values, match_id)
        if match_id is None:
            record_id = self._next_id()
            state.put(record_id, self._stamp({"id": record_id, **values}, created=True))
            action, message = "insert", "record added"
        else:
            record_id = match_id
            state.put(record_id, self._stamp({**state.records[record_id], **values}, created=False))
            action, message = "update", "record updated"
        record = state.records[record_id]
        details = {
            "Modified_Time": record["Modified_Time"],
            "Modified_By": dict(USER),
            "Created_Time": record["Created_Time"],
            "id": record_id,
            "Created_By": dict(USER),
        }
        return {
            "code": "SUCCESS",
            "duplicate_field": matched_on,
            "action": action,
            "details": details,
            "message": message,
            "status": "success",
        }

    def _check_unique(self, state: ModuleState, index: int, values: Mapping[str, Any], own_id: str | None) -> None:
        for d in state.fields.values():
            wanted = _norm(values.get(d.api_name)) if d.unique else None
            if wanted is None:
                continue
            clash = min(state.ids_with(d.api_name, wanted) - {own_id}, default=None)
            if clash is not None:
                raise RecordError(
                    "DUPLICATE_DATA",
                    "duplicate data",
                    {
                        "api_name": d.api_name,
                        "json_path": f"$.data[{index}].{d.api_name}",
                        "id": clash,
                        "duplicate_record": {"id": clash, "Owner": dict(USER)},
                        "more_records": False,
                    },
                )

    def _validate(self, module: str, state: ModuleState, index: int, item: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, stored copy of the known fields (unknown keys are ignored, as Zoho does)."""
        values: dict[str, Any] = {}
        for name, value in item.items():
            d = state.fields.get(name)
            if d is None:
                continue
            path = f"$.data[{index}].{name}"
            if value is None or (isinstance(value, str) and not value.strip()):
                if d.mandatory:
                    raise RecordError(
                        "MANDATORY_NOT_FOUND", "required field not found", {"api_name": name, "json_path": path}
                    )
                values[name] = None
                continue
            values[name] = self._check_value(module, d, value, path)
        return values

    def _invalid(self, d: FieldDef, path: str, expected: str | None = None) -> RecordError:
        details: dict[str, Any] = {"api_name": d.api_name, "json_path": path}
        if expected:
            details["expected_data_type"] = expected
        return RecordError("INVALID_DATA", "invalid data", details)

    def _check_value(self, module: str, d: FieldDef, value: Any, path: str) -> Any:
        kind = d.data_type
        if kind in ("text", "phone", "picklist"):
            if not isinstance(value, str):
                raise self._invalid(d, path, "text")
            if len(value) > d.length:
                raise RecordError(
                    "INVALID_DATA",
                    "invalid data",
                    {"api_name": d.api_name, "json_path": path, "maximum_length": d.length},
                )
            return value
        if kind == "email":
            if not isinstance(value, str) or not _EMAIL.match(value.strip()):
                raise self._invalid(d, path, "email")
            if module == "Contacts" and self._reject_email(value):
                raise self._invalid(d, path)
            return value.strip()
        if kind in ("currency", "double", "integer"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._invalid(d, path, "double")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise self._invalid(d, path, "boolean")
            return value
        if kind == "date":
            if not isinstance(value, str) or not _DATE.match(value):
                raise self._invalid(d, path, "date")
            try:
                date.fromisoformat(value)
            except ValueError:
                raise self._invalid(d, path, "date") from None
            return value
        if kind == "lookup":
            return self._lookup(d.lookup or "", d, value, path)
        if kind == "subform":
            return self._subform(d, value, path)
        return value

    def _lookup(self, target: str, d: FieldDef, value: Any, path: str) -> dict[str, Any]:
        record_id = value.get("id") if isinstance(value, Mapping) else None
        record = self.modules[target].records.get(str(record_id)) if record_id else None
        if record is None:
            raise RecordError(
                "INVALID_DATA",
                "the related id given seems to be invalid",
                {"api_name": d.api_name, "json_path": f"{path}.id", "id": str(record_id or "")},
            )
        name_field = {"Contacts": "Last_Name", "Deals": "Deal_Name", "Products": "Product_Name"}.get(target, "id")
        return {"id": str(record_id), "name": record.get(name_field)}

    def _subform(self, d: FieldDef, rows: Any, path: str) -> list[dict[str, Any]]:
        if not isinstance(rows, list) or not rows:
            raise self._invalid(d, path, "jsonarray")
        product = FieldDef("Product_Name", "lookup", lookup="Products")
        stored: list[dict[str, Any]] = []
        for n, row in enumerate(rows):
            row_path = f"{path}[{n}]"
            if not isinstance(row, Mapping):
                raise self._invalid(d, row_path, "jsonobject")
            if not row.get("Product_Name"):
                raise RecordError(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "Product_Name", "json_path": f"{row_path}.Product_Name"},
                )
            quantity = row.get("Quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
                raise self._invalid(FieldDef("Quantity", "double"), f"{row_path}.Quantity", "double")
            stored.append(
                {
                    **{k: v for k, v in row.items() if k in ("List_Price", "Discount", "Description")},
                    "id": self._next_id(),
                    "Product_Name": self._lookup("Products", product, row["Product_Name"], f"{row_path}.Product_Name"),
                    "Quantity": quantity,
                }
            )
        return stored

    def _stamp(self, record: dict[str, Any], *, created: bool) -> dict[str, Any]:
        now = _now()
        if created:
            record.update(Created_Time=now, Created_By=dict(USER), Owner=dict(USER))
        record.update(Modified_Time=now, Modified_By=dict(USER))
        return record


def _copy(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in record.items()}
