"""The fake shop's product catalogue: simple and variable products, some unicode names, one draft."""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from .util import money, set_date

# name, category, price, sale price or None, variation axis (attribute, options) or None, flags
_CATALOGUE: tuple[tuple[str, str, str, str | None, tuple[str, tuple[str, ...]] | None, str], ...] = (
    ("Merino Wool Beanie", "Accessories", "24.90", None, None, ""),
    ("Organic Cotton T-Shirt", "Clothing", "19.90", None, ("Size", ("S", "M", "L", "XL")), ""),
    ("Zip Hoodie – Forest Green", "Clothing", "49.00", "39.00", ("Size", ("S", "M", "L")), ""),
    ("Café Crème Coffee Beans 1 kg", "Coffee", "18.50", None, None, ""),
    ("Crème Brûlée Torch", "Kitchen", "29.99", None, None, ""),
    ("Matcha Green Tea 抹茶 100 g", "Tea", "15.00", None, None, ""),
    ("Jalapeño Hot Sauce", "Pantry", "6.90", None, None, ""),
    ("Ceramic Mug – Ocean Blue", "Kitchen", "12.00", None, None, ""),
    ("Smørrebrød Cutting Board", "Kitchen", "34.00", None, None, ""),
    ("Leather Wallet", "Accessories", "39.00", None, ("Colour", ("Brown", "Black")), ""),
    ("Yoga Mat Pro", "Sports", "45.00", None, None, ""),
    ("Bluetooth Speaker Mini", "Electronics", "59.00", "49.00", None, ""),
    ("USB-C Charging Cable 2 m", "Electronics", "9.99", None, None, ""),
    ("E-book: Sourdough Basics", "Books", "7.99", None, None, "virtual,downloadable"),
    ("Gift Card €50", "Gift cards", "50.00", None, None, "virtual"),
    ("Açaí Bowl Mix", "Pantry", "11.50", None, None, ""),
    ("Kimchi Starter Kit 김치", "Pantry", "22.00", None, None, ""),
    ("Running Socks (3 pack)", "Sports", "14.00", None, ("Size", ("39–42", "43–46")), ""),
    ("Linen Napkins, Set of 4", "Home", "26.00", None, None, ""),
    ("Scented Candle – Fleur d'Oranger", "Home", "18.00", None, None, ""),
    ("Stainless Steel Water Bottle", "Sports", "21.00", None, ("Colour", ("Silver", "Black", "Mint")), ""),
    ("Notebook A5 Dotted", "Stationery", "8.50", None, None, ""),
    ("Fountain Pen Kōbō", "Stationery", "64.00", None, None, ""),
    ("Wireless Mouse", "Electronics", "24.00", None, None, ""),
    ("Olive Oil Extra Virgen 500 ml", "Pantry", "13.90", None, None, ""),
    ("Dark Chocolate 85 % Ecuador", "Pantry", "4.20", None, None, ""),
    ("Baby Romper – Ünicorn", "Clothing", "17.00", None, ("Size", ("62", "68", "74")), ""),
    ("Bamboo Toothbrush 4-pack", "Home", "7.50", None, None, ""),
    ("Phone Case — Clear", "Electronics", "15.00", None, None, ""),
    ("Herbal Tea Sampler", "Tea", "16.40", None, None, ""),
    ("Cast Iron Skillet 26 cm", "Kitchen", "42.00", None, None, ""),
    ("Beach Towel Ibiza", "Home", "28.00", None, None, ""),
    ("Draft Product (do not sell)", "Uncategorized", "", None, None, "draft"),
)
FIRST_PRODUCT_ID = 10


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "product"


@dataclass
class Product:
    """A product or variation: ``data`` is the REST shape minus ``_links``."""

    data: dict[str, Any]
    created_ts: int
    modified_ts: int

    @property
    def id(self) -> int:
        return int(self.data["id"])


@dataclass(frozen=True, slots=True)
class Sellable:
    """What an order line can point at."""

    product_id: int
    variation_id: int
    name: str
    sku: str
    price: Decimal
    virtual: bool


def _product_data(
    pid: int,
    name: str,
    sku: str,
    kind: str,
    status: str,
    price: str,
    sale: str | None,
    category: str,
    flags: str,
    parent_id: int,
) -> dict[str, Any]:
    regular = price
    current = sale or price
    slug = slugify(name)
    return {
        "id": pid,
        "name": name,
        "slug": slug,
        "permalink": f"/product/{slug}/",
        "date_created": None,
        "date_created_gmt": None,
        "date_modified": None,
        "date_modified_gmt": None,
        "type": kind,
        "status": status,
        "featured": False,
        "catalog_visibility": "visible",
        "description": f"<p>{name}</p>",
        "short_description": "",
        "sku": sku,
        "price": current,
        "regular_price": regular,
        "sale_price": sale or "",
        "on_sale": sale is not None,
        "purchasable": bool(current) and status == "publish",
        "total_sales": 0,
        "virtual": "virtual" in flags,
        "downloadable": "downloadable" in flags,
        "tax_status": "taxable",
        "tax_class": "",
        "manage_stock": False,
        "stock_quantity": None,
        "stock_status": "instock",
        "parent_id": parent_id,
        "categories": [] if parent_id else [{"id": 15, "name": category, "slug": slugify(category)}],
        "attributes": [],
        "variations": [],
        "meta_data": [],
    }


def build_catalogue(rng: random.Random, created_ts: int, tz: tzinfo) -> tuple[list[Product], list[Sellable]]:
    """All products and variations (ids from 10), plus what can be sold."""
    products: list[Product] = []
    sellables: list[Sellable] = []
    next_id = FIRST_PRODUCT_ID
    for index, (name, category, price, sale, axis, flags) in enumerate(_CATALOGUE):
        pid = next_id
        next_id += 1
        status = "draft" if "draft" in flags else "publish"
        kind = "variable" if axis else "simple"
        sku = f"SL-{index + 1:03d}" if status == "publish" else ""
        ts = created_ts + index * 3600
        parent = Product(_product_data(pid, name, sku, kind, status, price, sale, category, flags, 0), ts, ts + 86400)
        products.append(parent)
        if axis is None:
            if parent.data["purchasable"]:
                sellables.append(Sellable(pid, 0, name, sku, Decimal(sale or price), "virtual" in flags))
            continue
        attribute, options = axis
        parent.data["attributes"] = [
            {
                "id": 0,
                "name": attribute,
                "position": 0,
                "visible": True,
                "variation": True,
                "options": list(options),
            }
        ]
        for opt_index, option in enumerate(options):
            vid = next_id
            next_id += 1
            vsku = f"{sku}-{slugify(option).upper() or opt_index}"
            variation = Product(
                _product_data(
                    vid, f"{name} - {option}", vsku, "variation", "publish", price, sale, category, flags, pid
                ),
                ts,
                ts + 86400,
            )
            variation.data["attributes"] = [{"id": 0, "name": attribute, "option": option}]
            parent.data["variations"].append(vid)
            products.append(variation)
            sellables.append(Sellable(pid, vid, f"{name} - {option}", vsku, Decimal(sale or price), False))
    for product in products:
        set_date(product.data, "date_created", product.created_ts, tz)
        set_date(product.data, "date_modified", product.modified_ts, tz)
        product.data["total_sales"] = rng.randint(0, 500) if product.data["status"] == "publish" else 0
    return products, sellables


def product_price(product: Product) -> str:
    return money(Decimal(product.data["price"])) if product.data["price"] else ""
