"""``python -m storeloop.backfill.feeder``: the backfill's fetch-and-prepare process (see ``feed``).

Reads a pickled ``FeedConfig`` from stdin, walks the slices and writes each message to stdout as a
4-byte length and a pickle. Exits when the walk ends, when stdin closes (the parent finished or
died) or when stdout has no reader. Imports no Django: it starts in a fraction of a second.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import signal
import sys
import threading

from storeloop.backfill.feed import _HEADER, FeedConfig, FeedEnd, Message, client_from_config, walk_slices

OUTBOX_PAGES = 32


def main() -> int:
    # Stopping is the parent's call (a Ctrl-C at the CLI reaches the whole process group, and the
    # parent pauses the job); this process ends when the parent closes its stdin or dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Frames go to the original stdout; anything printed by accident lands on stderr instead.
    out = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)  # failures travel to the parent as messages
    # The pages in flight are thousands of young containers without cycles: at the default
    # thresholds the collector would rescan them over and over. Collect rarely (httpx leaves a few
    # cycles per request), and never rescan what the imports built.
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)
    config: FeedConfig = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by our parent over a private pipe
    stop = threading.Event()
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    # Pages wait here rather than in the fetch threads: the pipe holds only a few, and the writer
    # takes them in batches, so the walk keeps going while a batch is being written.
    outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=OUTBOX_PAGES)
    sender = threading.Thread(target=_send, args=(out, outbox), daemon=True)
    sender.start()

    def emit(message: Message) -> None:
        outbox.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    if walk_slices(
        lambda: client_from_config(config),
        config.tasks,
        parallel=config.parallel,
        emit=emit,
        stop=stop,
        max_consecutive_errors=config.max_consecutive_errors,
    ):
        emit(FeedEnd())
    outbox.put(None)
    sender.join()
    return 0


def _send(out: int, outbox: queue.Queue[bytes | None]) -> None:
    while (data := outbox.get()) is not None:
        try:
            _write_all(out, _HEADER.pack(len(data)))
            _write_all(out, data)
        except OSError:  # the parent is gone (or its pipe broke): nobody to work for
            os._exit(0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _exit_when_parent_goes() -> None:
    while os.read(0, 65536):  # returns b"" at EOF: the parent closed the pipe or died
        pass
    os._exit(0)


if __name__ == "__main__":
    code = main()
    # Straight out: the stdin watcher may still be blocked in a read, and a normal interpreter
    # shutdown would wait on it.
    os._exit(code)
