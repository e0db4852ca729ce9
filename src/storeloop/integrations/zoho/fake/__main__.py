"""Serve a fake Zoho CRM until interrupted: ``python -m storeloop.integrations.zoho.fake``."""

from __future__ import annotations

import argparse
import threading

from .zoho import FakeZoho


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Zoho CRM v8 + accounts server on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--client-id", default="zid")
    parser.add_argument("--client-secret", default="zsecret")
    parser.add_argument("--refresh-token", default="1000.refresh")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    zoho = FakeZoho(
        client_id=args.client_id, client_secret=args.client_secret, refresh_token=args.refresh_token, seed=args.seed
    ).start(args.host, args.port)
    print(f"fake Zoho on {zoho.url} (accounts_url = api_url); control API under /__fake__/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        zoho.stop()


if __name__ == "__main__":
    main()
