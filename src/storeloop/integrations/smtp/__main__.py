"""``python -m storeloop.integrations.smtp``: run the fake SMTP server until SIGTERM/SIGINT.

Prints one JSON line ``{"host": ..., "port": ...}`` once it is listening (plus ``cert_file`` when
``--cert-out`` is given with ``--starttls``/``--tls``, so clients can trust the throwaway certificate).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .fake import FakeSmtpServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeloop.integrations.smtp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument("--require-auth", action="store_true")
    parser.add_argument("--username", default="user")
    parser.add_argument("--password", default="pass")
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--starttls", action="store_true", help="offer and require STARTTLS")
    security.add_argument("--tls", action="store_true", help="implicit TLS")
    parser.add_argument("--cert-out", help="write the self-signed certificate (PEM) to this file")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    fake = FakeSmtpServer(
        host=args.host,
        port=args.port,
        require_auth=args.require_auth,
        username=args.username,
        password=args.password,
        starttls=args.starttls,
        tls=args.tls,
    )
    fake.latency_ms = args.latency_ms
    fake.start()
    try:
        info: dict[str, object] = {"host": fake.host, "port": fake.port}
        if args.cert_out and fake.cert_pem:
            with open(args.cert_out, "wb") as fh:
                fh.write(fake.cert_pem)
            info["cert_file"] = args.cert_out
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
