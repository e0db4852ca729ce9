"""Registered customers of the fake shop: generated on demand from their id, stored once changed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from .orders_gen import CUSTOMER_BASE_ID, PeopleBook
from .people import Person, billing_of, shipping_of
from .util import h, set_date

AVATAR = "https://secure.gravatar.com/avatar/?s=96&d=mm&r=g"


@dataclass
class CustomerRecord:
    data: dict[str, Any]  # REST shape minus _links
    created_ts: int
    modified_ts: int | None  # WooCommerce returns null for users never edited

    @property
    def id(self) -> int:
        return int(self.data["id"])


class CustomerDirectory:
    """Not thread-safe by itself: the shop calls it under its lock."""

    def __init__(self, *, seed: int, people: PeopleBook, start_ts: int, tz: tzinfo) -> None:
        self.seed = seed
        self.people = people
        self.tz = tz
        self.count = people.registered_count
        window = 30 * 86400
        self._created_base = start_ts - window
        self._created_step = window // max(1, self.count)
        self.records: dict[int, CustomerRecord] = {}
        self.deleted: set[int] = set()
        self.next_id = CUSTOMER_BASE_ID + self.count
        self._name_order: list[int] | None = None

    def build(self, person: Person, customer_id: int, created_ts: int, modified_ts: int | None) -> CustomerRecord:
        username = re.sub(r"[^a-z0-9._-]", "", person.email.split("@")[0].lower()) or f"user{customer_id}"
        billing = billing_of(person, None)
        data: dict[str, Any] = {
            "id": customer_id,
            "date_created": None,
            "date_created_gmt": None,
            "date_modified": None,
            "date_modified_gmt": None,
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "role": "customer",
            "username": username,
            "billing": billing,
            "shipping": shipping_of(person),
            "is_paying_customer": True,
            "avatar_url": AVATAR,
            "meta_data": [],
        }
        set_date(data, "date_created", created_ts, self.tz)
        set_date(data, "date_modified", modified_ts, self.tz)
        return CustomerRecord(data, created_ts, modified_ts)

    def _generated(self, customer_id: int) -> CustomerRecord:
        idx = customer_id - CUSTOMER_BASE_ID
        created = self._created_base + idx * self._created_step
        # About a third were never edited after registering: WooCommerce sends date_modified null.
        modified = None if h(self.seed, 13, idx) % 3 == 0 else created + 3600
        return self.build(self.people.registered(idx), customer_id, created, modified)

    def get(self, customer_id: int) -> CustomerRecord | None:
        if customer_id in self.deleted:
            return None
        record = self.records.get(customer_id)
        if record is not None:
            return record
        if CUSTOMER_BASE_ID <= customer_id < CUSTOMER_BASE_ID + self.count:
            return self._generated(customer_id)
        return None

    def materialise(self, customer_id: int) -> CustomerRecord | None:
        record = self.get(customer_id)
        if record is not None and customer_id not in self.records:
            self.records[customer_id] = record
        self._name_order = None
        return record

    def add(self, record: CustomerRecord) -> None:
        self.records[record.id] = record
        self._name_order = None

    def ids(self) -> list[int]:
        """All existing customer ids, ascending."""
        generated = [i for i in range(CUSTOMER_BASE_ID, CUSTOMER_BASE_ID + self.count) if i not in self.deleted]
        extra = sorted(i for i in self.records if i >= CUSTOMER_BASE_ID + self.count)
        return generated + extra

    def find_email(self, email: str) -> CustomerRecord | None:
        wanted = email.strip().lower()
        for customer_id in self.ids():
            record = self.get(customer_id)
            if record is not None and str(record.data["email"]).lower() == wanted:
                return record
        return None

    def by_name(self) -> list[int]:
        if self._name_order is None:
            names: list[tuple[str, int]] = []
            for customer_id in self.ids():
                record = self.get(customer_id)
                if record is not None:
                    names.append((f"{record.data['first_name']} {record.data['last_name']}".lower(), customer_id))
            self._name_order = [customer_id for _, customer_id in sorted(names)]
        return self._name_order
