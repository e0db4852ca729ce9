"""Associations v4 of the fake HubSpot: an edge store plus the batch endpoints the client uses.

Every association is stored in both directions (HubSpot creates the inverse type automatically),
and creating one that exists is a no-op. Archiving an object drops its edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schema import ASSOCIATION_TYPES, INVERSE_TYPE, LABELS, OBJECT_TYPE_IDS, CrmError, record_error
from .store import ObjectStore

Edges = dict[str, dict[str, set[int]]]  # from id -> to id -> type ids


class AssociationGraph:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.edges: dict[tuple[str, str], Edges] = {pair: {} for pair in ASSOCIATION_TYPES}
        self.page_size = 500

    def add(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        self.edges[(from_type, to_type)].setdefault(from_id, {}).setdefault(to_id, set()).add(type_id)
        inverse = INVERSE_TYPE.get(type_id)
        if inverse is not None:
            self.edges[(to_type, from_type)].setdefault(to_id, {}).setdefault(from_id, set()).add(inverse)

    def drop_object(self, object_type: str, object_id: str) -> None:
        for (from_type, to_type), edges in self.edges.items():
            if from_type == object_type:
                edges.pop(object_id, None)
            if to_type == object_type:
                for targets in edges.values():
                    targets.pop(object_id, None)

    def targets(self, from_type: str, from_id: str, to_type: str) -> dict[str, set[int]]:
        return self.edges.get((from_type, to_type), {}).get(from_id, {})

    def flat(self) -> dict[tuple[str, str, str, str], frozenset[int]]:
        return {
            (f_type, f_id, t_type, t_id): frozenset(types)
            for (f_type, t_type), edges in self.edges.items()
            for f_id, targets in edges.items()
            for t_id, types in targets.items()
        }

    def invalid(self, object_type: str, object_id: str) -> dict[str, Any]:
        label = LABELS[object_type]
        return record_error(
            "VALIDATION_ERROR",
            "One or more associations are invalid",
            context={
                "INVALID_OBJECT_IDS": [f"{label}={object_id} is not valid"],
                "objectId": [object_id],
                "objectType": [label],
            },
        )

    def _pair(self, from_type: str, to_type: str) -> tuple[int, frozenset[int]]:
        found = ASSOCIATION_TYPES.get((from_type, to_type))
        if found is None:
            raise CrmError(400, "VALIDATION_ERROR", f"No association types exist from {from_type} to {to_type}.")
        return found

    def _check_ends(self, from_type: str, to_type: str, item: Any) -> tuple[str, str, dict[str, Any] | None]:
        if not isinstance(item, Mapping):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: each input must be an object")
        f = str((item.get("from") or {}).get("id") or "")
        t = str((item.get("to") or {}).get("id") or "")
        if self.objects.get_live(from_type, f) is None:
            return f, t, self.invalid(from_type, f)
        if self.objects.get_live(to_type, t) is None:
            return f, t, self.invalid(to_type, t)
        return f, t, None

    @staticmethod
    def _inputs(body: Mapping[str, Any]) -> list[Any]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: inputs is required")
        if len(inputs) > 100:  # documented v4 batch limits are higher; 100 keeps the fake strict
            raise CrmError(400, "VALIDATION_ERROR", "Batch input limit is 100 inputs")
        return inputs

    @staticmethod
    def _answer(status: int, results: list[Any], errors: list[dict[str, Any]], now: str) -> tuple[int, Any]:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
            return 207, body
        return status, body

    def associate_default(self, from_type: str, to_type: str, body: Mapping[str, Any], now: str) -> tuple[int, Any]:
        default, _ = self._pair(from_type, to_type)
        inverse = INVERSE_TYPE.get(default, default)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in self._inputs(body):
            f, t, error = self._check_ends(from_type, to_type, item)
            if error is not None:
                errors.append(error)
                continue
            self.add(from_type, f, to_type, t, default)
            spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": default}
            back = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": inverse}
            results.append({"from": {"id": f}, "to": {"id": t}, "associationSpec": spec})
            results.append({"from": {"id": t}, "to": {"id": f}, "associationSpec": back})
        self.objects.rng.shuffle(results)
        return self._answer(200, results, errors, now)

    def create_labeled(self, from_type: str, to_type: str, body: Mapping[str, Any], now: str) -> tuple[int, Any]:
        _, valid = self._pair(from_type, to_type)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in self._inputs(body):
            f, t, error = self._check_ends(from_type, to_type, item)
            types = [x for x in item.get("types") or [] if isinstance(x, Mapping)]
            type_ids = [int(x.get("associationTypeId", -1)) for x in types]
            if error is None and (not type_ids or any(i not in valid for i in type_ids)):
                error = record_error(
                    "VALIDATION_ERROR",
                    f"Invalid association type for {from_type} to {to_type}: {type_ids}",
                    context={"fromObjectId": [f], "toObjectId": [t]},
                )
            if error is not None:
                errors.append(error)
                continue
            for type_id in type_ids:
                self.add(from_type, f, to_type, t, type_id)
            results.append(
                {
                    "fromObjectTypeId": OBJECT_TYPE_IDS[from_type],
                    "fromObjectId": int(f),
                    "toObjectTypeId": OBJECT_TYPE_IDS[to_type],
                    "toObjectId": int(t),
                    "labels": [],
                }
            )
        self.objects.rng.shuffle(results)
        return self._answer(201, results, errors, now)

    def read(self, from_type: str, to_type: str, body: Mapping[str, Any], now: str) -> tuple[int, Any]:
        self._pair(from_type, to_type)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in self._inputs(body):
            f = str(item.get("id") or "") if isinstance(item, Mapping) else ""
            page, after = self.page(from_type, f, to_type, 0)
            if not page:
                errors.append(
                    record_error(
                        "OBJECT_NOT_FOUND",
                        f"No {to_type} is associated with {from_type} {f}.",
                        subCategory="crm.associations.NO_ASSOCIATIONS_FOUND",
                        context={"fromObjectId": [f]},
                    )
                )
                continue
            result: dict[str, Any] = {"from": {"id": f}, "to": page}
            if after is not None:
                result["paging"] = {"next": {"after": after, "link": ""}}
            results.append(result)
        return self._answer(200, results, errors, now)

    def page(self, from_type: str, from_id: str, to_type: str, offset: int) -> tuple[list[dict[str, Any]], str | None]:
        targets = sorted(self.targets(from_type, from_id, to_type).items(), key=lambda kv: int(kv[0]))
        chunk = targets[offset : offset + self.page_size]
        rows = [
            {
                "toObjectId": int(t),
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None} for type_id in sorted(types)
                ],
            }
            for t, types in chunk
        ]
        more = offset + self.page_size < len(targets)
        return rows, (str(offset + self.page_size) if more else None)
