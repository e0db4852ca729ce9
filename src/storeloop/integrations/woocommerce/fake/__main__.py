"""``python -m storeloop.integrations.woocommerce.fake``: run the fake shop until SIGTERM/SIGINT.

Prints one JSON line ``{"url": ..., "api_url": ...}`` once it is listening.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .shop import FakeWooShop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeloop.integrations.woocommerce.fake")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--initial-orders", type=int, default=200)
    parser.add_argument("--orders-per-minute", type=float, default=6.0, help="0 disables the activity stream")
    parser.add_argument("--status-change-ratio", type=float, default=0.3)
    parser.add_argument("--refund-ratio", type=float, default=0.05)
    parser.add_argument("--consumer-key", default="ck_demo")
    parser.add_argument("--consumer-secret", default="cs_demo")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--site-url", default=None, help="what the shop calls itself in links and webhooks")
    parser.add_argument(
        "--prerender", action="store_true", help="encode every historical order before announcing the URL (benchmarks)"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    shop = FakeWooShop(
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        seed=args.seed,
        currency=args.currency,
        site_url=args.site_url,
        initial_orders=args.initial_orders,
    ).start(args.host, args.port)
    try:
        if args.prerender:
            shop.prerender_history()
        if args.orders_per_minute > 0:
            shop.start_activity(args.orders_per_minute, args.status_change_ratio, args.refund_ratio)
        sys.stdout.write(json.dumps({"url": shop.url, "api_url": shop.api_url}) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        shop.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
