"""The fetching half of a backfill: walk the slices, prepare each page for the database. No Django.

A slice is walked by modification-time keyset (``orders.walk.fetch_step``), never by page number,
``parallel`` slices at a time (one thread and one client each, so at most ``parallel`` requests are
in flight at the merchant's server). Each page is turned into database-ready rows
(``orders.prepare``: parsed, validated, payload hashed, values in their database form) and handed
to the writer in order per slice, with the cursor the writer checkpoints once the page is committed.

By default the walk runs in a child process (``ProcessFeed``, entry point ``backfill.feeder``): the
parsing and preparing then use the machine's other core while the parent writes, instead of
fighting the writer for one interpreter lock. Everything crossing the pipe is plain data (tuples,
str, int, datetimes, bytes). ``ThreadFeed`` runs the same walk in threads of the calling process,
for clients that cannot cross a process boundary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import httpx

from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.port import WooCommercePort
from storeloop.orders.prepare import PreparedOrder, prepare_order
from storeloop.orders.walk import fetch_step, fetch_step_prepared

MAX_BACKOFF_SECONDS = 30.0
PIPE_BYTES = 1 << 20  # a few prepared pages in flight between the processes
_HEADER = struct.Struct(">I")


class FeedClient(WooCommercePort, Protocol):
    """A shop client the walk can close when it is done with it."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class SliceTask:
    id: int
    cursor: dt.datetime | None  # the slice's checkpoint, or its start
    end: dt.datetime


class FedPage(NamedTuple):
    """One keyset step of a slice: its orders, prepared, and the cursor to checkpoint after them."""

    slice_id: int
    cursor: dt.datetime | None
    finished: bool
    orders: list[PreparedOrder]


class FeedError(NamedTuple):
    """A failed step (retried from the same cursor); ``fatal`` after too many in a row."""

    slice_id: int
    message: str
    fatal: bool


class FeedEnd(NamedTuple):
    """Every slice was walked to its end."""


Message = FedPage | FeedError | FeedEnd


class FeedClosed(Exception):
    """The writer went away; the walk stops."""


def fetch_prepared(client: FeedClient, task: SliceTask) -> FedPage:
    """One keyset step of ``task``, its orders prepared for the database."""
    if isinstance(client, WooCommerceClient):  # straight from the JSON to the rows
        prepared, cursor, finished = fetch_step_prepared(client, task.cursor, task.end)
        return FedPage(task.id, cursor, finished, prepared)
    orders, cursor, finished = fetch_step(client, task.cursor, task.end)
    return FedPage(task.id, cursor, finished, [prepare_order(order) for order in orders])


def error_text(exc: BaseException) -> str:
    # Our client's messages name methods, paths and fields, never payload values.
    return f"{type(exc).__name__}: {exc}"[:2000]


def walk_slices(
    make_client: Callable[[], FeedClient],
    tasks: Sequence[SliceTask],
    *,
    parallel: int,
    emit: Callable[[Message], None],
    stop: threading.Event,
    max_consecutive_errors: int = 5,
) -> bool:
    """Walk every slice to its end, ``parallel`` at a time; ``emit`` each page in order per slice.

    A failed step is reported and retried from the same cursor after an exponential pause; after
    ``max_consecutive_errors`` failures in a row the error is fatal and the walk stops. Returns
    whether every slice was walked to its end (False when stopped).
    """
    pending = deque(tasks)
    lock = threading.Lock()

    def next_task() -> SliceTask | None:
        with lock:
            return pending.popleft() if pending else None

    def walker() -> None:
        client = make_client()
        try:
            walk(client)
        except BaseException:  # e.g. the writer went away: the other walkers stop too
            stop.set()
            raise
        finally:
            client.close()

    def walk(client: FeedClient) -> None:
        while not stop.is_set() and (task := next_task()) is not None:
            cursor, failures = task.cursor, 0
            while not stop.is_set():
                try:
                    page = fetch_prepared(client, SliceTask(task.id, cursor, task.end))
                except Exception as exc:  # reported to the writer, retried from the same cursor
                    failures += 1
                    fatal = failures >= max_consecutive_errors
                    emit(FeedError(task.id, error_text(exc), fatal))
                    if fatal:
                        stop.set()
                        return
                    stop.wait(min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures))
                    continue
                failures = 0
                emit(page)
                cursor = page.cursor
                if page.finished:
                    break

    workers = max(1, min(parallel, len(tasks)))
    with ThreadPoolExecutor(workers, thread_name_prefix="backfill-fetch") as executor:
        futures = [executor.submit(walker) for _ in range(workers)]
        for future in futures:
            future.result()
    return not stop.is_set()


# --- feeds: the writer's view ------------------------------------------------------------------------


class Feed(Protocol):
    def receive(self, timeout: float, max_orders: int) -> list[Message]:
        """Wait up to ``timeout`` s for a message, then take what else is waiting, up to
        ``max_orders`` orders (so a writer that falls behind commits several pages at once). An
        error or the end of the feed closes the list."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FeedConfig:
    """What the child process needs; sent over its stdin (credentials never appear in argv or env)."""

    url: str
    consumer_key: str
    consumer_secret: str
    auth: str
    timeout_seconds: float
    tasks: tuple[SliceTask, ...]
    parallel: int
    max_consecutive_errors: int


def client_from_config(config: FeedConfig) -> FeedClient:
    return WooCommerceClient(
        config.url,
        config.consumer_key,
        config.consumer_secret,
        auth=config.auth,  # type: ignore[arg-type]
        timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
    )


class ProcessFeed:
    """Runs ``walk_slices`` in a child process and reads its pages from a pipe.

    The child dies with its parent: it exits when its stdin closes, and a write to a pipe nobody
    reads fails. Closing the feed closes stdin and ends the child.
    """

    def __init__(self, config: FeedConfig) -> None:
        self._proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", "storeloop.backfill.feeder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._fd = self._proc.stdout.fileno()
        with contextlib.suppress(OSError, AttributeError):  # Linux only; a bigger pipe smooths the flow
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        try:
            self._proc.stdin.write(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))
            self._proc.stdin.flush()
        except OSError:
            self.close()
            raise

    def receive(self, timeout: float, max_orders: int) -> list[Message]:
        messages: list[Message] = []
        orders = 0
        wait_ms = int(timeout * 1000)
        while orders < max_orders and self._poller.poll(wait_ms):
            message = self._read_message()
            messages.append(message)
            if isinstance(message, FeedEnd | FeedError):
                break
            orders += len(message.orders)
            wait_ms = 0
        return messages

    def _read_message(self) -> Message:
        size = _HEADER.unpack(self._read_exact(_HEADER.size))[0]
        message: Message = pickle.loads(self._read_exact(size))  # noqa: S301 - our own child, over a private pipe
        return message

    def _read_exact(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = os.readv(self._fd, [view[got:]])
            if count == 0:
                code = self._proc.poll()
                raise FeedClosed(f"the fetch process ended unexpectedly (exit status {code})")
            got += count
        return buffer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        assert self._proc.stdout is not None
        self._proc.stdout.close()


class ThreadFeed:
    """Runs ``walk_slices`` in threads of this process (for clients that cannot be pickled)."""

    def __init__(
        self,
        make_client: Callable[[], FeedClient],
        tasks: Sequence[SliceTask],
        *,
        parallel: int,
        max_consecutive_errors: int,
    ) -> None:
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=32)  # pages
        self._stop = threading.Event()  # the walk's: set on close, or by a fatal error
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(make_client, tasks, parallel, max_consecutive_errors),
            name="backfill-feed",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self, make_client: Callable[[], FeedClient], tasks: Sequence[SliceTask], parallel: int, errors: int
    ) -> None:
        try:
            if walk_slices(
                make_client, tasks, parallel=parallel, emit=self._put, stop=self._stop, max_consecutive_errors=errors
            ):
                self._put(FeedEnd())
        except FeedClosed:
            return
        except Exception as exc:  # e.g. a client that cannot be built
            with contextlib.suppress(FeedClosed):
                self._put(FeedError(0, error_text(exc), True))

    def _put(self, message: Message) -> None:
        while True:
            if self._closed.is_set():
                raise FeedClosed
            try:
                self._queue.put(message, timeout=0.1)
                return
            except queue.Full:
                continue

    def receive(self, timeout: float, max_orders: int) -> list[Message]:
        messages: list[Message] = []
        orders = 0
        wait: float | None = timeout
        while orders < max_orders:
            try:
                message = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue.Empty:
                break
            messages.append(message)
            if isinstance(message, FeedEnd | FeedError):
                break
            orders += len(message.orders)
            wait = None
        return messages

    def close(self) -> None:
        self._closed.set()
        self._stop.set()
        self._thread.join()
