"""``python -m storeloop.integrations.twilio.fake``: run the fake Twilio until SIGTERM/SIGINT.

Prints one JSON line ``{"url", "account_sid", "auth_token", "from_number", "messaging_service_sid"}``
once it is listening.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .account import DEFAULT_ACCOUNT_SID, FakeTwilio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeloop.integrations.twilio.fake")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default="token")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second (token bucket)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--advanced-opt-out", action="store_true", help="inbound webhooks carry OptOutType")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    twilio = FakeTwilio(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        rate_limit_per_second=args.rate_limit,
        seed=args.seed,
        advanced_opt_out=args.advanced_opt_out,
    )
    twilio.faults.update({"latency_ms": args.latency_ms, "error_rate": args.error_rate})
    twilio.start(args.host, args.port)
    try:
        info = {
            "url": twilio.url,
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": twilio.from_number,
            "messaging_service_sid": twilio.messaging_service_sid,
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        twilio.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
