"""``python -m storeloop.integrations.hubspot.fake``: run the fake HubSpot until SIGTERM/SIGINT.

Prints one JSON line ``{"url": ..., "token": ...}`` once it is listening.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .hub import FakeHubSpot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeloop.integrations.hubspot.fake")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--token", default="pat-test")
    parser.add_argument("--rate-limit", type=int, default=190, help="requests per window, per token")
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    hub = FakeHubSpot(token=args.token, rate_limit=args.rate_limit, window_seconds=args.window_seconds, seed=args.seed)
    hub.faults.update({"latency_ms": args.latency_ms, "error_rate": args.error_rate})
    hub.start(args.host, args.port)
    try:
        sys.stdout.write(json.dumps({"url": hub.url, "token": hub.token}) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
