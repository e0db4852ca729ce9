"""``storeloop``: everything an operator does, from one command.

Run ``storeloop --help`` or ``storeloop <command> --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storeloop.config.settings")
    import django

    django.setup()


def build_parser() -> argparse.ArgumentParser:
    from storeloop.cli import backfill, campaign, crm, messaging, ops, run, stores

    parser = argparse.ArgumentParser(
        prog="storeloop",
        description="Storeloop: customer engagement and compliance for WooCommerce shops.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    run.register(sub)
    stores.register(sub)
    ops.register(sub)
    backfill.register(sub)
    crm.register(sub)
    messaging.register(sub)
    campaign.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["manage"]:
        _setup_django()
        from django.core.management import execute_from_command_line

        execute_from_command_line(["storeloop manage", *args_list[1:]])
        return 0
    parser = build_parser()
    args = parser.parse_args(args_list)
    _setup_django()
    from storeloop.core.errors import ApplicationError

    try:
        result: int = args.handler(args)
    except ApplicationError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
