"""The CRM v3 object endpoints of the fake HubSpot (single, batch, search) over ``ObjectStore``.

Batch semantics: when every input carries ``objectWriteTraceId`` (and ``Faults.multi_status`` is
on) record-level failures come back as 207 with ``errors[].context.objectWriteTraceId``; without
trace ids one bad record fails the whole batch with 400 and nothing is written, like HubSpot's
batch create without multi-status. Results come back in random order, as HubSpot does not promise
any; they echo ``objectWriteTraceId`` in multi-status mode (as the current API reference shows) and
not otherwise (older v3 result models have no such field), so clients must match by value too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from .associations import AssociationGraph
from .schema import ASSOCIATION_TYPES, LABELS, OBJECT_TYPE_IDS, CrmError, record_error
from .store import ObjectStore, Record, now_iso

Reply = tuple[int, Any]
# (object type, properties of one input, multi-status?) -> an injected per-record error or None
RecordFault = Callable[[str, Mapping[str, str], bool], "dict[str, Any] | None"]
MAX_INPUTS = 100


class FakeCrm:
    def __init__(self, rng: random.Random, *, strict_properties: bool = True, portal_id: int = 0) -> None:
        self.objects = ObjectStore(rng, strict_properties=strict_properties)
        self.graph = AssociationGraph(self.objects)
        self.portal_id = portal_id

    # --- plumbing ----------------------------------------------------------------------------------

    @staticmethod
    def _inputs(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, Mapping) for i in inputs):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: inputs must be a list of objects")
        if len(inputs) > MAX_INPUTS:
            raise CrmError(400, "VALIDATION_ERROR", f"Batch input limit is {MAX_INPUTS} inputs, got {len(inputs)}")
        return inputs

    @staticmethod
    def _properties(item: Mapping[str, Any]) -> dict[str, str]:
        props = item.get("properties")
        if not isinstance(props, Mapping):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: properties is required")
        return {str(k): v for k, v in props.items()}

    @staticmethod
    def _traced(inputs: list[Mapping[str, Any]], multi_status: bool) -> bool:
        return multi_status and bool(inputs) and all(i.get("objectWriteTraceId") for i in inputs)

    @staticmethod
    def _fail_whole(errors: list[tuple[Mapping[str, Any], dict[str, Any]]]) -> CrmError:
        _, first = errors[0]
        return CrmError(400, str(first["category"]), str(first["message"]), errors=first.get("errors"))

    @staticmethod
    def _with_trace(item: Mapping[str, Any], error: dict[str, Any]) -> dict[str, Any]:
        context = dict(error.get("context", {}))
        if item.get("objectWriteTraceId"):
            context["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
        return {"status": "error", **error, "context": context}

    @staticmethod
    def _trace(item: Mapping[str, Any], traced: bool) -> dict[str, str]:
        return {"objectWriteTraceId": str(item["objectWriteTraceId"])} if traced else {}

    def _answer(self, status: int, results: list[Any], errors: list[dict[str, Any]]) -> Reply:
        self.objects.rng.shuffle(results)
        now = now_iso()
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
            return 207, body
        return status, body

    def _drop(self, object_type: str, record: Record) -> None:
        self.objects.archive(object_type, record)
        self.graph.drop_object(object_type, record.id)

    # --- batch endpoints ---------------------------------------------------------------------------

    def batch_upsert(self, object_type: str, body: Mapping[str, Any], multi_status: bool, fault: RecordFault) -> Reply:
        objects = self.objects
        inputs = self._inputs(body)
        seen: set[str] = set()
        for item in inputs:
            id_prop, id_value = str(item.get("idProperty") or ""), item.get("id")
            if id_prop not in objects.unique_props(object_type):
                raise CrmError(
                    400,
                    "VALIDATION_ERROR",
                    f"Unable to perform update/upsert by non-unique {OBJECT_TYPE_IDS[object_type]} property "
                    f"{id_prop} in portal ID {self.portal_id}",
                )
            if not isinstance(id_value, str) or not id_value:
                raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: id is required")
            if objects.norm(id_prop, id_value) in seen:
                raise CrmError(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: [{id_value}]")
            seen.add(objects.norm(id_prop, id_value))
        traced = self._traced(inputs, multi_status)
        plan: list[tuple[Mapping[str, Any], Record | None, dict[str, str]]] = []
        errors: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for item in inputs:
            id_prop, id_value = str(item["idProperty"]), str(item["id"])
            props = {**self._properties(item), id_prop: objects.norm(id_prop, id_value)}
            existing = objects.find_unique(object_type, id_prop, id_value)
            error = fault(object_type, props, traced) or objects.check(
                object_type, props, existing.id if existing else None
            )
            if error is not None:
                errors.append((item, error))
            else:
                plan.append((item, existing, props))
        if errors and not traced:
            raise self._fail_whole(errors)
        results = []
        for item, existing, props in plan:
            record = existing or objects.create(object_type, props)
            if existing is not None:
                objects.write(object_type, existing, props)
            results.append({**record.view(list(props)), "new": existing is None, **self._trace(item, traced)})
        return self._answer(200, results, [self._with_trace(i, e) for i, e in errors])

    def _association_error(self, object_type: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
        for assoc in item.get("associations") or []:
            to_id = str((assoc.get("to") or {}).get("id") or "")
            types = [int(t.get("associationTypeId", -1)) for t in assoc.get("types") or []]
            targets = [t for (f, t), (_, ids) in ASSOCIATION_TYPES.items() if f == object_type and set(types) <= ids]
            if not types or not targets:
                return record_error("VALIDATION_ERROR", f"Invalid association types {types} for {object_type}")
            if self.objects.get_live(targets[0], to_id) is None:
                return self.graph.invalid(targets[0], to_id)
        return None

    def _associate_new(self, object_type: str, record: Record, item: Mapping[str, Any]) -> None:
        """Inline ``associations`` of a create (validated by ``_association_error`` beforehand)."""
        for assoc in item.get("associations") or []:
            for spec in assoc.get("types") or []:
                type_id = int(spec["associationTypeId"])
                to_type = next(
                    t for (f, t), (_, ids) in ASSOCIATION_TYPES.items() if f == object_type and type_id in ids
                )
                self.graph.add(object_type, record.id, to_type, str(assoc["to"]["id"]), type_id)

    def batch_create(self, object_type: str, body: Mapping[str, Any], multi_status: bool, fault: RecordFault) -> Reply:
        objects = self.objects
        inputs = self._inputs(body)
        traced = self._traced(inputs, multi_status)
        plan: list[tuple[Mapping[str, Any], dict[str, str]]] = []
        errors: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for item in inputs:
            props = self._properties(item)
            error = (
                fault(object_type, props, traced)
                or objects.check(object_type, props, None)
                or self._association_error(object_type, item)
            )
            if error is not None:
                errors.append((item, error))
            else:
                plan.append((item, props))
        if errors and not traced:
            raise self._fail_whole(errors)
        results = []
        for item, props in plan:
            if objects.check(object_type, props, None) is not None:  # unique value taken earlier in this batch
                errors.append((item, objects.check(object_type, props, None) or {}))
                continue
            record = objects.create(object_type, props)
            self._associate_new(object_type, record, item)
            results.append({**record.view(list(props)), **self._trace(item, traced)})
        return self._answer(201, results, [self._with_trace(i, e) for i, e in errors])

    def batch_update(self, object_type: str, body: Mapping[str, Any], multi_status: bool, fault: RecordFault) -> Reply:
        objects = self.objects
        inputs = self._inputs(body)
        traced = self._traced(inputs, multi_status)
        plan: list[tuple[Mapping[str, Any], Record, dict[str, str]]] = []
        errors: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for item in inputs:
            props = self._properties(item)
            record_id, id_prop = str(item.get("id") or ""), item.get("idProperty")
            record = (
                objects.find_unique(object_type, str(id_prop), record_id)
                if id_prop
                else objects.get_live(object_type, record_id)
            )
            error: dict[str, Any] | None
            if record is None:
                error = record_error("OBJECT_NOT_FOUND", "Object not found.", context={"ids": [record_id]})
            else:
                error = fault(object_type, props, traced) or objects.check(object_type, props, record.id)
            if error is not None:
                errors.append((item, error))
            elif record is not None:
                plan.append((item, record, props))
        if errors and not traced:
            raise self._fail_whole(errors)
        results = []
        for item, record, props in plan:
            objects.write(object_type, record, props)
            results.append({**record.view(list(props)), **self._trace(item, traced)})
        return self._answer(200, results, [self._with_trace(i, e) for i, e in errors])

    def batch_read(self, object_type: str, body: Mapping[str, Any]) -> Reply:
        objects = self.objects
        id_prop = body.get("idProperty")
        if id_prop and str(id_prop) not in objects.unique_props(object_type):
            raise CrmError(400, "VALIDATION_ERROR", f"{id_prop} is not a unique property of {object_type}")
        names = [str(n) for n in body.get("properties") or []] or None
        results, missing = [], []
        for item in self._inputs(body):
            wanted = str(item.get("id") or "")
            record = (
                objects.find_unique(object_type, str(id_prop), wanted)
                if id_prop
                else objects.get_live(object_type, wanted)
            )
            if record is None:
                missing.append(wanted)
            else:
                results.append(record.view(names))
        errors = []
        if missing:
            errors.append(
                record_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {LABELS[object_type]} objects, they may be deleted or not exist. "
                    "Check that ids are valid.",
                    context={"ids": missing},
                )
            )
        return self._answer(200, results, errors)

    def batch_archive(self, object_type: str, body: Mapping[str, Any]) -> Reply:
        for item in self._inputs(body):
            record = self.objects.get_live(object_type, str(item.get("id") or ""))
            if record is not None:
                self._drop(object_type, record)
        return 204, None

    # --- single-object endpoints -------------------------------------------------------------------

    def create(self, object_type: str, body: Mapping[str, Any]) -> Reply:
        props = self._properties(body)
        error = self.objects.check(object_type, props, None)
        if error is not None:
            taken = next((e for e in error.get("errors", []) if e.get("code") == "DUPLICATE_UNIQUE_VALUE"), None)
            if taken is not None:  # HubSpot answers a unique collision on create with 409
                owner = str(error["message"]).rsplit(" ", 1)[-1]
                label = LABELS[object_type].replace("_", " ").title()
                raise CrmError(409, "CONFLICT", f"{label} already exists. Existing ID: {owner}")
            raise CrmError(400, str(error["category"]), str(error["message"]), errors=error.get("errors"))
        if (bad := self._association_error(object_type, body)) is not None:
            raise CrmError(400, "VALIDATION_ERROR", str(bad["message"]), context=bad.get("context"))
        record = self.objects.create(object_type, props)
        self._associate_new(object_type, record, body)
        return 201, record.view(None)

    def get(self, object_type: str, record_id: str, id_prop: str | None, names: list[str] | None) -> Reply:
        objects = self.objects
        record = (
            objects.find_unique(object_type, id_prop, record_id)
            if id_prop
            else objects.get_live(object_type, record_id)
        )
        if record is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
        return 200, record.view(names)

    def list(self, object_type: str, limit: int, after: int, names: list[str] | None) -> Reply:
        if not 1 <= limit <= 100:
            raise CrmError(400, "VALIDATION_ERROR", "limit must be between 1 and 100")
        live = sorted(self.objects.live(object_type), key=lambda r: int(r.id))
        page = [r.view(names) for r in live if int(r.id) > after][:limit]
        body: dict[str, Any] = {"results": page}
        if page and len([r for r in live if int(r.id) > after]) > limit:
            body["paging"] = {"next": {"after": page[-1]["id"], "link": ""}}
        return 200, body
