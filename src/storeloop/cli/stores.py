"""``storeloop store …`` and ``storeloop apikey …``."""

from __future__ import annotations

import argparse
from typing import Any

from storeloop.cli.output import console, print_json, print_table


def register(sub: Any) -> None:
    store = sub.add_parser("store", help="connect, list, remove and reconcile WooCommerce shops")
    ssub = store.add_subparsers(dest="store_command", metavar="<action>", required=True)

    add = ssub.add_parser("add", help="connect a shop: checks the credentials and registers webhooks")
    add.add_argument("--name", required=True, help="a name for the shop")
    add.add_argument("--url", required=True, help="the shop's home URL, e.g. https://shop.example")
    add.add_argument("--consumer-key", required=True, help="WooCommerce REST consumer key (ck_…)")
    add.add_argument("--consumer-secret", required=True, help="WooCommerce REST consumer secret (cs_…)")
    add.add_argument("--webhook-secret", help="secret for webhook signatures (default: generated)")
    add.add_argument(
        "--auth",
        choices=["basic", "query"],
        default="basic",
        help="basic = HTTP Basic over HTTPS; query = keys in the query string for servers "
        "that drop the Authorization header",
    )
    add.add_argument("--no-register", action="store_true", help="do not create webhooks on the shop")
    add.add_argument(
        "--import-history",
        action="store_true",
        help="let reconciliation import every past order (default: only the last 24 hours)",
    )
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=_add)

    lst = ssub.add_parser("list", help="list connected shops")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_list)

    rm = ssub.add_parser("remove", help="disconnect a shop and delete its mirrored data")
    rm.add_argument("--store", type=int, required=True, help="store id")
    rm.add_argument("--keep-webhooks", action="store_true", help="leave our webhooks on the shop")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(handler=_remove)

    rec = ssub.add_parser("reconcile", help="fetch orders modified since the watermark now, repair webhooks")
    rec.add_argument("--store", type=int, required=True, help="store id")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=_reconcile)

    key = sub.add_parser("apikey", help="create, list and revoke API keys")
    ksub = key.add_subparsers(dest="key_command", metavar="<action>", required=True)
    create = ksub.add_parser("create", help="create a key for one store (shown once)")
    create.add_argument("--store", type=int, required=True)
    create.add_argument("--name", default="default")
    create.add_argument(
        "--operator", action="store_true", help="also allow the installation-wide task endpoints (dead letters)"
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_key_create)
    klist = ksub.add_parser("list", help="list keys (prefixes only)")
    klist.add_argument("--store", type=int)
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(handler=_key_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=_key_revoke)


def _store_dict(store: Any) -> dict[str, Any]:
    return {
        "id": store.pk,
        "name": store.name,
        "url": store.url,
        "is_demo": store.is_demo,
        "manage_webhooks": store.manage_webhooks,
        "reconciled_until": store.reconciled_until,
        "last_reconciled_at": store.last_reconciled_at,
    }


def _add(args: argparse.Namespace) -> int:
    from storeloop.stores.services import add_store

    store = add_store(
        name=args.name,
        url=args.url,
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        webhook_secret=args.webhook_secret,
        register_webhooks=not args.no_register,
        auth_mode=args.auth,
        import_history=args.import_history,
    )
    if args.json:
        print_json({**_store_dict(store), "webhooks_registered": not args.no_register})
    else:
        console.print(f"[green]Connected[/green] {store.name} as store [bold]{store.pk}[/bold].")
        if not args.no_register:
            console.print("Webhooks registered for orders, customers and products.")
    return 0


def _list(args: argparse.Namespace) -> int:
    from storeloop.stores.models import Store

    stores = [_store_dict(s) for s in Store.objects.order_by("id")]
    if args.json:
        print_json(stores)
    else:
        print_table(
            "Stores",
            ["id", "name", "url", "demo", "last reconciled"],
            [[s["id"], s["name"], s["url"], s["is_demo"], s["last_reconciled_at"]] for s in stores],
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    from storeloop.stores.models import Store
    from storeloop.stores.services import remove_store

    store = Store.objects.filter(pk=args.store).first()
    if store is None:
        console.print(f"[red]No store {args.store}[/red]")
        return 2
    if not args.yes:
        answer = input(f"Remove {store.name} and all its mirrored data? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            console.print("Nothing removed.")
            return 1
    remove_store(args.store, unregister=not args.keep_webhooks)
    console.print(f"Removed store {args.store}.")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from storeloop.orders.reconcile import reconcile_store

    with console.status(f"Reconciling store {args.store}…"):
        result = reconcile_store(args.store)
    if args.json:
        print_json(result.as_dict())
    else:
        console.print(f"Fetched {result.fetched} orders: {dict(result.outcomes)}; watermark {result.watermark}")
        if result.webhooks_repaired:
            console.print(f"[yellow]Repaired webhooks:[/yellow] {', '.join(result.webhooks_repaired)}")
    return 0


def _key_create(args: argparse.Namespace) -> int:
    from storeloop.stores.services import create_api_key

    issued = create_api_key(store_id=args.store, name=args.name, operator=args.operator)
    if args.json:
        print_json(
            {"key": issued.plaintext, "prefix": issued.api_key.prefix, "store": args.store, "operator": args.operator}
        )
    else:
        console.print(f"API key for store {args.store} (shown once, keep it safe):")
        console.print(issued.plaintext, soft_wrap=True, highlight=False)
    return 0


def _key_list(args: argparse.Namespace) -> int:
    from storeloop.stores.models import ApiKey

    qs = ApiKey.objects.order_by("id")
    if args.store:
        qs = qs.filter(store_id=args.store)
    rows = [
        {
            "prefix": k.prefix,
            "name": k.name,
            "store": k.store_id,
            "operator": k.operator,
            "created_at": k.created_at,
            "last_used_at": k.last_used_at,
            "revoked_at": k.revoked_at,
        }
        for k in qs
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(
            "API keys",
            ["prefix", "name", "store", "last used", "revoked"],
            [[r["prefix"], r["name"], r["store"], r["last_used_at"], r["revoked_at"]] for r in rows],
        )
    return 0


def _key_revoke(args: argparse.Namespace) -> int:
    from storeloop.stores.services import revoke_api_key

    if revoke_api_key(prefix=args.prefix):
        console.print(f"Revoked key {args.prefix}.")
        return 0
    console.print(f"[red]No active key with prefix {args.prefix}[/red]")
    return 2
