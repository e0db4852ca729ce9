"""``storeloop setup | web | run``: the pieces ``make run`` starts, and the supervisor itself."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from storeloop.cli.output import console

DEMO_KEY = "ck_demo_storeloop"
DEMO_SECRET = "cs_demo_storeloop"  # noqa: S105  (the bundled demo shop only)


def register(sub: Any) -> None:
    setup = sub.add_parser("setup", help="migrate the database and make sure an admin account exists")
    setup.set_defaults(handler=_setup)

    web = sub.add_parser("web", help="run the web server (gunicorn) on STORELOOP_HOST:STORELOOP_PORT")
    web.add_argument("--workers", type=int, help="processes (default STORELOOP_WEB_WORKERS)")
    web.set_defaults(handler=_web)

    run = sub.add_parser(
        "run",
        help="set up, then run web server, worker, scheduler (and the demo shop when no real shop "
        "is connected) until Ctrl-C",
    )
    run.add_argument("--demo", choices=["auto", "on", "off"], help="default STORELOOP_DEMO (auto)")
    run.set_defaults(handler=_run)


def _setup(args: argparse.Namespace | None = None) -> int:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    user_model = get_user_model()
    if not user_model.objects.filter(is_superuser=True).exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "", password)
        creds = settings.DATA_DIR / "admin-credentials.txt"
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"username: admin\npassword: {password}\n")
        console.print(
            f"[bold green]Admin account created[/bold green]: user [bold]admin[/bold], password "
            f"[bold]{password}[/bold] (also in {creds}; change it in the admin)"
        )
    return 0


def _web(args: argparse.Namespace) -> int:
    from django.conf import settings

    workers = args.workers or settings.WEB_WORKERS
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "storeloop.config.wsgi:application",
        "--bind",
        f"{settings.HOST}:{settings.PORT}",
        "--workers",
        str(workers),
        "--worker-tmp-dir",
        "/dev/shm" if Path("/dev/shm").is_dir() else "/tmp",  # noqa: S108
        "--graceful-timeout",
        "10",
        # Without --access-logfile gunicorn formats no access line at all (it cost ~5% per webhook).
        *(["--access-logfile", "-"] if settings.DEBUG else []),
    ]
    os.execvp(cmd[0], cmd)  # noqa: S606  (replace this process: signals go straight to gunicorn)
    return 0  # pragma: no cover


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM us if the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor's own shutdown path still stops the children


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # Each child gets its own process group so we can stop it (and only it) as a whole.
    return subprocess.Popen(args, start_new_session=True, env=env, preexec_fn=_die_with_parent)


def _stop_all(children: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.wait(remaining)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _wait_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _want_demo(mode: str) -> bool:
    from storeloop.stores.models import Store

    if mode == "on":
        return True
    if mode == "off":
        return False
    return not Store.objects.filter(is_demo=False).exists()


def _connect_demo_store(shop_url: str) -> int:
    from storeloop.orders.tasks import reconcile_store_task
    from storeloop.stores.models import Store
    from storeloop.stores.services import add_store, ensure_webhooks

    store = Store.objects.filter(is_demo=True).first()
    if store is None:
        store = add_store(
            name="Demo shop",
            url=shop_url,
            consumer_key=DEMO_KEY,
            consumer_secret=DEMO_SECRET,
            auth_mode=Store.AuthMode.QUERY,
            is_demo=True,
            import_history=True,
        )
    else:
        # The demo shop starts afresh each run: point the store at it and re-register webhooks.
        Store.objects.filter(pk=store.pk).update(url=shop_url)
        store.refresh_from_db()
        ensure_webhooks(store)
    reconcile_store_task.enqueue(str(store.pk))
    return store.pk


def _run(args: argparse.Namespace) -> int:
    from django.conf import settings
    from django.db import connections

    _setup()
    demo = _want_demo(args.demo or settings.DEMO)
    connections.close_all()
    exe = [sys.executable, "-m", "storeloop.cli.main"]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        base = f"http://{settings.HOST}:{settings.PORT}"
        children.append(_spawn([*exe, "web"]))
        children.append(_spawn([*exe, "worker"]))
        children.append(_spawn([*exe, "scheduler"]))
        if not _wait_http(f"{base}/healthz"):
            console.print("[red]The web server did not come up; see the log above.[/red]")
            return 1
        if demo:
            shop = _spawn(
                [
                    sys.executable,
                    "-m",
                    "storeloop.integrations.woocommerce.fake",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(settings.DEMO_PORT),
                    "--initial-orders",
                    "200",
                    "--orders-per-minute",
                    "12",
                    "--consumer-key",
                    DEMO_KEY,
                    "--consumer-secret",
                    DEMO_SECRET,
                ]
            )
            children.append(shop)
            shop_url = f"http://127.0.0.1:{settings.DEMO_PORT}"
            if not _wait_http(
                f"{shop_url}/wp-json/wc/v3/orders?consumer_key={DEMO_KEY}&consumer_secret={DEMO_SECRET}&per_page=1"
            ):
                console.print("[red]The demo shop did not start.[/red]")
                return 1
            store_id = _connect_demo_store(shop_url)
            connections.close_all()
            console.print(
                f"[bold]Demo shop[/bold] at {shop_url} connected as store {store_id}; orders arrive every few seconds."
            )
        console.print(
            f"[bold green]Storeloop is running[/bold green] at {base}/  "
            f"admin {base}/admin/  API docs {base}/api/v1/docs  (Ctrl-C to stop)"
        )
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    console.print(f"[red]A process exited ({json.dumps(str(child.args))}); stopping.[/red]")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(children)
