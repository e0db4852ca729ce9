"""``storeloop crm connect|test|status|resync``."""

from __future__ import annotations

import argparse
from typing import Any

from storeloop.cli.output import console, print_json, print_table


def register(sub: Any) -> None:
    crm = sub.add_parser("crm", help="connect HubSpot or Zoho and keep them in step with orders")
    csub = crm.add_subparsers(dest="crm_command", metavar="<action>", required=True)

    connect = csub.add_parser("connect", help="connect a store to a CRM (credentials are encrypted)")
    psub = connect.add_subparsers(dest="provider", metavar="<provider>", required=True)
    hub = psub.add_parser("hubspot", help="HubSpot private-app token")
    hub.add_argument("--store", type=int, required=True)
    hub.add_argument("--token", required=True, help="private-app access token (pat-…)")
    hub.add_argument("--base-url", help="API base URL (default https://api.hubapi.com)")
    hub.add_argument("--pipeline", default="default", help="deal pipeline id (default: default)")
    hub.add_argument("--no-check", action="store_true", help="store without checking against HubSpot")
    hub.set_defaults(handler=_connect)
    zoho = psub.add_parser("zoho", help="Zoho CRM OAuth2 self-client (refresh token)")
    zoho.add_argument("--store", type=int, required=True)
    zoho.add_argument("--client-id", required=True)
    zoho.add_argument("--client-secret", required=True)
    zoho.add_argument("--refresh-token", required=True)
    zoho.add_argument("--dc", default="com", help="data centre: com, eu, in, com.au, jp, ca, cn, sa")
    zoho.add_argument("--accounts-url", help="override the accounts server of the data centre")
    zoho.add_argument("--api-url", help="override the API domain of the data centre")
    zoho.add_argument("--module", choices=["Deals", "Sales_Orders"], default="Deals")
    zoho.add_argument("--no-check", action="store_true")
    zoho.set_defaults(handler=_connect)

    test = csub.add_parser("test", help="check a store's CRM credentials and setup")
    test.add_argument("--store", type=int, required=True)
    test.set_defaults(handler=_test)

    status = csub.add_parser("status", help="connections and sync records by state")
    status.add_argument("--store", type=int, required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    resync = csub.add_parser("resync", help="sync orders again (one, by state, or all)")
    resync.add_argument("--store", type=int, required=True)
    group = resync.add_mutually_exclusive_group(required=True)
    group.add_argument("--order", type=int, action="append", help="order id (repeatable)")
    group.add_argument("--failed", action="store_true", help="every failed and dead record")
    group.add_argument("--all", action="store_true", help="every order of the store")
    resync.set_defaults(handler=_resync)


def _connect(args: argparse.Namespace) -> int:
    from storeloop.crm.connections import check_connection, connect_hubspot, connect_zoho

    if args.provider == "hubspot":
        connection = connect_hubspot(store_id=args.store, token=args.token, base_url=args.base_url,
                                     pipeline=args.pipeline)  # fmt: skip
    else:
        connection = connect_zoho(
            store_id=args.store, client_id=args.client_id, client_secret=args.client_secret,
            refresh_token=args.refresh_token, dc=args.dc, accounts_url=args.accounts_url, api_url=args.api_url,
            module=args.module,
        )  # fmt: skip
    if not args.no_check:
        check_connection(connection)
    console.print(f"Connected store {args.store} to {connection.get_provider_display()}.")
    return 0


def _test(args: argparse.Namespace) -> int:
    from storeloop.crm.connections import check_connection
    from storeloop.crm.models import CrmConnection

    connections = list(CrmConnection.objects.filter(store_id=args.store))
    if not connections:
        console.print(f"[red]Store {args.store} has no CRM connection.[/red]")
        return 2
    for connection in connections:
        check_connection(connection)
        console.print(f"{connection.get_provider_display()}: [green]ok[/green]")
    return 0


def _status(args: argparse.Namespace) -> int:
    from storeloop.crm.selectors import connection_summaries

    summaries = connection_summaries(args.store)
    if args.json:
        print_json(summaries)
        return 0
    print_table(
        "CRM connections",
        ["provider", "status", "pending", "synced", "failed", "dead", "problem"],
        [
            [
                s["provider"],
                s["status"],
                s["records"].get("pending", 0),
                s["records"].get("synced", 0),
                s["records"].get("failed", 0),
                s["records"].get("dead", 0),
                s["broken_reason"],
            ]
            for s in summaries
        ],
    )
    return 0


def _resync(args: argparse.Namespace) -> int:
    from storeloop.crm.services import resync

    if args.order:
        count = resync(store_id=args.store, order_ids=args.order)
    elif args.failed:
        count = resync(store_id=args.store, states=["failed", "dead"])
    else:
        count = resync(store_id=args.store, everything=True)
    console.print(f"{count} sync record(s) queued; the workers push them within the rate budget.")
    return 0
