"""Tasks used by the engine's tests. They record their effects in files named by the test."""

from __future__ import annotations

import time
from pathlib import Path

from storeloop.core.errors import TerminalError, TransientError
from storeloop.core.tasks import durable_task


def _append(path: str, line: str) -> int:
    with Path(path).open("a") as handle:
        handle.write(line + "\n")
    return len(Path(path).read_text().splitlines())


@durable_task(max_attempts=4, retry_base_seconds=0.001, retry_max_seconds=0.002)
def flaky(log_path: str, failures: int) -> str:
    attempt = _append(log_path, "attempt")
    if attempt <= failures:
        raise TransientError("provider timed out")
    return "ok"


@durable_task(max_attempts=5, retry_base_seconds=0.001)
def terminal(log_path: str) -> None:
    _append(log_path, "attempt")
    raise TerminalError("the provider rejected the payload")


@durable_task(max_attempts=3, retry_base_seconds=0.001)
def rate_limited(log_path: str) -> None:
    _append(log_path, "attempt")
    raise TransientError("429", retry_after=120)


@durable_task(max_attempts=3)
def slow_effect(log_path: str, gate_path: str) -> str:
    """Write 'started', wait for the gate file (or 30 s), then write 'done' once per completion."""
    _append(log_path, "started")
    deadline = time.monotonic() + 30
    while not Path(gate_path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _append(log_path, "done")
    return "done"


@durable_task(queue="maintenance")
def prune_probe() -> str:
    return "pruned"


@durable_task()
def mark(log_path: str, n: int) -> int:
    # O_APPEND writes of one short line are atomic, so two processes can share the log.
    _append(log_path, str(n))
    return n
