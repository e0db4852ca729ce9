"""Template rendering: renders per second of a typical SMS through ``TemplateRepository.render_template``.

1. a fresh data dir and SQLite file, ``migrate``, one store; an order-confirmation SMS template
   (contact name, order number, total with currency, store name, a short tracking link) saved,
   validated and published through ``TemplateRepository`` — not measured;
2. the published version is fetched once with ``get_template`` (as the dispatcher holds it for
   a batch), then rendered ``--renders`` times through the public ``render_template`` with a
   different contact and order each time; the compiled template comes from the cache after the
   first render. Best and median of ``--rounds`` rounds;
3. the same run's baselines over the same contexts: raw Jinja2 ``Template.render`` of the same
   source (unsandboxed, no cache lookup, no wrapper) and a plain ``str.format`` of the same text;
   the ratios of the public path to both.

Target: at least 20,000 renders/s on this 2-core machine. The last line of output is JSON.

    .venv/bin/python bench/templates.py --quick
    .venv/bin/python bench/templates.py            # 200,000 renders x 5 rounds
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import machine_busy_fraction, machine_info, print_json_line, temp_data_dir

ROOT = Path(__file__).resolve().parents[1]
TARGET = 20_000
KEY = "order-confirmation"
SOURCE = (
    "Hi {{ contact.first_name }}, thanks for your order #{{ order.number }} of {{ order.total }} "
    "{{ order.currency }} at {{ store.name }}. Track it: {{ custom.track_url }}"
)
FORMAT = "Hi {first_name}, thanks for your order #{number} of {total} {currency} at {store}. Track it: {track_url}"
NAMES = ["Ann", "Bob", "Zoë", "Mehmet", "Ines", "Kofi", "Li", "Sven", "Priya", "José"]


def setup_django(data_dir: Path) -> None:
    os.environ.update(
        STORELOOP_DATA_DIR=str(data_dir),
        STORELOOP_DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
        STORELOOP_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="storeloop.config.settings",
    )
    sys.path.insert(0, str(ROOT / "src"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def contexts(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """What ``dispatcher.default_context`` builds for a message: plain dicts, one per recipient."""
    out = []
    for n in range(count):
        out.append({
            "contact": {"first_name": rng.choice(NAMES), "last_name": "", "email": f"c{n}@example.com",
                        "phone": f"+49151{n:08d}", "country": "DE"},
            "order": {"number": str(10_000 + n), "total": f"{rng.uniform(5, 300):.2f}",
                      "currency": rng.choice(["EUR", "USD", "GBP"]), "status": "processing"},
            "store": {"name": "Demo shop", "url": "https://shop.example"},
            "custom": {"track_url": f"https://s.example/t/{n:06x}"},
            "unsubscribe_url": "", "preferences_url": "",
        })  # fmt: skip
    return out


def rate(render_one: Callable[[dict[str, Any]], Any], ctxs: list[dict[str, Any]], renders: int) -> float:
    """Renders per second of ``render_one`` over ``renders`` calls cycling through ``ctxs``."""
    size = len(ctxs)
    started = time.perf_counter()
    for i in range(renders):
        render_one(ctxs[i % size])
    return renders / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 renders x 3 rounds")
    parser.add_argument("--renders", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed", type=int, default=20260401)
    args = parser.parse_args()
    renders = args.renders or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (3 if args.quick else 5)
    rng = random.Random(args.seed)
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    with temp_data_dir("storeloop-bench-templates-") as data_dir:
        setup_django(data_dir)
        from jinja2 import Environment
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        from storeloop.integrations.twilio.segments import count_segments
        from storeloop.messaging.templates import TemplateRepository
        from storeloop.stores.models import Store

        store = Store.objects.create(name="Bench shop", url="https://bench.example", consumer_key="ck",
                                     consumer_secret="cs", webhook_secret="whsec", manage_webhooks=False)  # fmt: skip
        repo = TemplateRepository()
        repo.publish(repo.save_template(store, KEY, "sms", body_text=SOURCE,
                                        variables=["contact", "order", "store", "custom"]))  # fmt: skip
        version = repo.get_template(store, KEY, "sms")
        ctxs = contexts(1000, rng)
        sample = repo.render_template(version, ctxs[0]).text
        segments = count_segments(sample)
        print(f"template v{version.number}: {len(SOURCE)} characters of source; renders like {sample!r} "
              f"({segments.segments} segment, {segments.encoding})", flush=True)  # fmt: skip

        started = time.perf_counter()
        ImmutableSandboxedEnvironment().from_string(SOURCE)
        compile_ms = (time.perf_counter() - started) * 1000
        raw = Environment().from_string(SOURCE)
        assert raw.render(**ctxs[1]) == repo.render_template(version, ctxs[1]).text, "baseline renders differently"

        def formatted(ctx: dict[str, Any]) -> str:
            c, o = ctx["contact"], ctx["order"]
            return FORMAT.format(first_name=c["first_name"], number=o["number"], total=o["total"],
                                 currency=o["currency"], store=ctx["store"]["name"],
                                 track_url=ctx["custom"]["track_url"])  # fmt: skip

        assert formatted(ctxs[2]) == repo.render_template(version, ctxs[2]).text, "str.format renders differently"

        busy = machine_busy_fraction(1.0)
        print(f"machine busy before measuring: {busy:.0%} (other work on the same cores)", flush=True)
        rate(lambda ctx: repo.render_template(version, ctx), ctxs, min(renders, 5000))  # warm-up
        public, jinja, fmt = [], [], []
        for n in range(rounds):
            # Interleaved, so a burst of other load on the machine hits all three alike.
            public.append(rate(lambda ctx: repo.render_template(version, ctx), ctxs, renders))
            jinja.append(rate(lambda ctx: raw.render(**ctx), ctxs, renders))
            fmt.append(rate(formatted, ctxs, renders))
            print(f"round {n + 1}/{rounds}: render_template {public[-1]:,.0f}/s, raw Jinja2 {jinja[-1]:,.0f}/s, "
                  f"str.format {fmt[-1]:,.0f}/s", flush=True)  # fmt: skip

    best, median = max(public), statistics.median(public)
    ratio_jinja = median / statistics.median(jinja)
    ratio_format = median / statistics.median(fmt)
    verdict = "met" if median >= TARGET else "NOT met"
    print(f"render_template: median {median:,.0f} renders/s (best {best:,.0f}) over {rounds} x {renders:,}; "
          f"{ratio_jinja:.2f}x raw Jinja2, {ratio_format:.3f}x str.format; compiling once costs "
          f"{compile_ms:.1f} ms; target {TARGET:,}/s {verdict}", flush=True)  # fmt: skip
    print_json_line({
        "renders_per_s": round(median),
        "renders_per_s_best": round(best),
        "target_per_s": TARGET,
        "target_met": median >= TARGET,
        "baseline_jinja_per_s": round(statistics.median(jinja)),
        "baseline_format_per_s": round(statistics.median(fmt)),
        "ratio_vs_jinja": round(ratio_jinja, 3),
        "ratio_vs_format": round(ratio_format, 4),
        "compile_ms": round(compile_ms, 2),
        "renders": renders,
        "rounds": rounds,
        "sms_segments": segments.segments,
        "machine_busy_before": round(busy, 2),
        "machine": machine,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
