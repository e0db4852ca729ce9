"""``python -m storeloop.integrations.whatsapp.fake``: run the fake WhatsApp Cloud until SIGTERM/SIGINT.

Prints one JSON line ``{"url", "access_token", "phone_number_id", "app_secret", "verify_token"}`` once
it is listening.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .core import FakeWhatsApp


def _template(value: str) -> tuple[str, tuple[str, int, str]]:
    parts = value.split(":")
    if len(parts) not in (3, 4) or not parts[2].isdigit():
        raise argparse.ArgumentTypeError("use name:language:param_count[:category], e.g. order_update:en_US:2")
    category = parts[3] if len(parts) == 4 else "UTILITY"
    return parts[0], (parts[1], int(parts[2]), category)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeloop.integrations.whatsapp.fake")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--access-token", default="EAAG-test")
    parser.add_argument("--phone-number-id", default="1234567890")
    parser.add_argument("--app-secret", default="app-secret")
    parser.add_argument("--verify-token", default="verify-me")
    parser.add_argument("--webhook-url", default=None, help="where signed status/inbound webhooks go")
    parser.add_argument("--template", action="append", type=_template, default=[], help="name:lang:params[:category]")
    parser.add_argument("--rate-limit", type=float, default=None, help="messages per second (130429 above)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    wa = FakeWhatsApp(
        access_token=args.access_token,
        phone_number_id=args.phone_number_id,
        app_secret=args.app_secret,
        verify_token=args.verify_token,
        rate_limit_per_second=args.rate_limit,
        seed=args.seed,
        templates=dict(args.template),
        webhook_url=args.webhook_url,
    )
    wa.faults.update({"latency_ms": args.latency_ms, "error_rate": args.error_rate})
    wa.start(args.host, args.port)
    try:
        info = {
            "url": wa.url,
            "access_token": wa.access_token,
            "phone_number_id": wa.phone_number_id,
            "app_secret": wa.app_secret,
            "verify_token": wa.verify_token,
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        wa.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
