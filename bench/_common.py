"""Shared pieces for the scripts in ``bench/``.

What a benchmark here needs besides its own workload: a throwaway data directory and database,
the production web server started as its own process group (so stopping it stops only it), a
light closed-loop HTTP load generator meant to run in a separate process, exact percentiles,
CPU accounting for the measured window, and the final JSON line every benchmark prints.

Nothing in this module imports Django: the server runs in its own processes and Django work
(setup, fixtures, checks) runs in subprocesses with the same environment as the server.
"""

from __future__ import annotations

import array
import contextlib
import errno
import gc
import itertools
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
STORELOOP = str(VENV_BIN / "storeloop")

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- environment, databases, Django subprocesses ---------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_available() -> bool:
    """True when a PostgreSQL server answers at PG_HOST:PG_PORT and ``psql`` can log in."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            pass
    except OSError:
        return False
    if shutil.which("psql") is None:
        return False
    try:
        _psql("SELECT 1", database="postgres")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def _psql(sql: str, *, database: str = "postgres") -> str:
    command = ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", database]
    out = subprocess.run(
        [*command, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()


def create_postgres_database(name: str) -> str:
    """Create a fresh throwaway database and return its ``STORELOOP_DATABASE_URL``."""
    drop_postgres_database(name)
    _psql(f'CREATE DATABASE "{name}"')
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_postgres_database(name: str) -> None:
    # FORCE: a server killed mid-run may leave a backend behind for a moment.
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def storeloop_env(data_dir: Path, *, port: int, web_workers: int, database_url: str | None = None) -> dict[str, str]:
    """The server's environment: everything from a fresh data dir, nothing from the caller's ``var/``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORELOOP_")}
    env.update(
        STORELOOP_DATA_DIR=str(data_dir),
        STORELOOP_HOST="127.0.0.1",
        STORELOOP_PORT=str(port),
        STORELOOP_WEB_WORKERS=str(web_workers),
        STORELOOP_DEBUG="false",
        STORELOOP_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="storeloop.config.settings",
    )
    if database_url:
        env["STORELOOP_DATABASE_URL"] = database_url
    return env


_DJANGO_PRELUDE = "import django, json, os, sys\ndjango.setup()\n"


def run_django(env: dict[str, str], code: str, *, timeout: float = 300) -> str:
    """Run ``code`` after ``django.setup()`` in a subprocess with ``env``; return its stdout."""
    command = [PYTHON, "-c", _DJANGO_PRELUDE + code]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"Django snippet failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def run_storeloop(env: dict[str, str], *args: str, timeout: float = 300) -> None:
    # Output is swallowed: `setup` prints the generated admin password.
    out = subprocess.run([STORELOOP, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"storeloop {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")


@contextlib.contextmanager
def temp_data_dir(prefix: str = "storeloop-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the server under test --------------------------------------------------------------------


class ServerProcess:
    """A server started in its own session: its pid is its process group id, so ``os.killpg``
    reaches the master and every worker it forked, and nothing else."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(args), env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready at {url} after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, *, hard: bool = False, timeout: float = 15.0) -> None:
        """SIGTERM (graceful) or SIGKILL the whole group; SIGKILL anyway after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")


# --- CPU accounting ---------------------------------------------------------------------------


def process_cpu_seconds(pgid: int | None, pg_database: str | None = None) -> tuple[float, float]:
    """User + system CPU seconds (from /proc) of the live processes in group ``pgid``, and of the
    PostgreSQL processes working for ``pg_database``: its backends plus the shared auxiliary
    processes (WAL writer, checkpointer, ...), not backends serving other databases."""
    group = database = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        split = raw.rfind(b")")
        fields = raw[split + 2 :].split()  # after "pid (comm) "
        ticks = int(fields[11]) + int(fields[12])  # stat fields 14, 15: utime, stime
        if int(fields[2]) == pgid:  # stat field 5: pgrp
            group += ticks
        elif pg_database and raw[raw.find(b"(") : split + 1] == b"(postgres)" and _serves(entry.path, pg_database):
            database += ticks
    return group / _CLK_TCK, database / _CLK_TCK


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds (from /proc) of one live process, all its threads."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _serves(proc_path: str, pg_database: str) -> bool:
    # Titles: "postgres: [CLUSTER: ]USER DB HOST(PORT) STATE" for a backend, "postgres: [CLUSTER: ]walwriter"...
    try:
        words = Path(proc_path, "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").split()
    except OSError:
        return False
    for i, word in enumerate(words[2:], start=2):
        if word == "[local]" or ("(" in word and word.endswith(")")):
            return words[i - 1] == pg_database
    return True


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    at: float
    own: float
    server: float
    database: float
    busy: float
    total: float

    @classmethod
    def take(cls, server_pgid: int | None, pg_database: str | None = None) -> CpuSample:
        server, database = process_cpu_seconds(server_pgid, pg_database)
        busy, total = machine_cpu_seconds()
        return cls(time.monotonic(), own_cpu_seconds(), server, database, busy, total)


def machine_busy_fraction(seconds: float = 1.0) -> float:
    """How busy the machine is right now, 0..1 (a check for other work sharing the cores)."""
    busy0, total0 = machine_cpu_seconds()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_seconds()
    return (busy1 - busy0) / max(total1 - total0, 1e-9)


# --- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Exact nearest-rank percentile (0 < q <= 100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- closed-loop HTTP load generator ----------------------------------------------------------


@dataclass
class PhaseSpec:
    """One load phase: ``warmup`` seconds unrecorded, then ``seconds`` measured."""

    name: str
    warmup: float
    seconds: float
    concurrency: int
    # Request number -> raw request bytes; numbers count up from ``first_number``.
    request: Callable[[int], bytes]
    # Whether a 200 body counts as success (e.g. "accepted", not "duplicate").
    accept: Callable[[bytes], bool] = lambda body: True
    timeout: float = 30.0
    first_number: int = 0


@dataclass
class PhaseResult:
    name: str
    seconds: float
    concurrency: int
    ok_in_window: int = 0
    latencies_ms: array.array[float] = field(default_factory=lambda: array.array("d"))
    # Every successful request number, warm-up and drain included (for durability checks).
    ok_numbers: array.array[int] = field(default_factory=lambda: array.array("q"))
    # Anything but a successful 200, over the whole phase: "HTTP 503", "200 not accepted", errors.
    failures: Counter[str] = field(default_factory=Counter)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    database_cpu_s: float = 0.0
    machine_busy_s: float = 0.0
    machine_total_s: float = 0.0

    @property
    def ok_total(self) -> int:
        return len(self.ok_numbers)

    @property
    def rate(self) -> float:
        return self.ok_in_window / self.seconds

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        n = self.ok_in_window or 1
        total = self.machine_total_s or math.nan
        other = self.machine_busy_s - self.client_cpu_s - self.server_cpu_s - self.database_cpu_s
        return {
            "per_s": round(self.rate, 1),
            "requests_in_window": self.ok_in_window,
            "ok_total": self.ok_total,
            "failures": dict(self.failures),
            "p50_ms": round(percentile(lat, 50), 2),
            "p90_ms": round(percentile(lat, 90), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else math.nan,
            "mean_ms": round(sum(lat) / len(lat), 2) if lat else math.nan,
            "client_cpu_ms_per_req": round(1000 * self.client_cpu_s / n, 3),
            "server_cpu_ms_per_req": round(1000 * self.server_cpu_s / n, 3),
            "database_cpu_ms_per_req": round(1000 * self.database_cpu_s / n, 3),
            "machine_busy_pct": round(100 * self.machine_busy_s / total, 1),
            # Kernel work not charged to a process, and anything else running: noise when high.
            "other_busy_pct": round(100 * other / total, 1),
        }


class _Exchange:
    """One connection with one request in flight; the answer is framed by Content-Length."""

    __slots__ = ("body_start", "buf", "data", "must_close", "need", "number", "sent", "sock", "status", "t0")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def begin(self, data: bytes, number: int, t0: float) -> None:
        self.data, self.sent, self.number, self.t0 = data, 0, number, t0
        self.buf.clear()
        self.body_start = self.need = -1
        self.status = 0
        self.must_close = False

    def complete(self) -> bool:
        """Parse what has arrived; True once the whole answer is in."""
        if self.body_start < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            self.body_start = end + 4
            self.must_close = head.startswith(b"http/1.0") or b"\r\nconnection: close" in head
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                self.need = self.body_start + int(head[at + 17 : head.find(b"\r\n", at + 2)])
        return 0 <= self.need <= len(self.buf)


def run_phase(
    host: str, port: int, spec: PhaseSpec, server_pgid: int | None = None, pg_database: str | None = None
) -> PhaseResult:
    """Run one closed-loop phase against ``host:port`` (Linux: epoll on non-blocking sockets).

    ``concurrency`` slots each send a request, wait for the whole answer, then send the next.
    Plain sockets and epoll rather than asyncio: the generator shares the cores with the server,
    and this costs it well under half the CPU per request that asyncio's transports do. A
    connection is reused while the server keeps it alive; gunicorn's sync workers answer
    ``Connection: close``, so there each request opens a new one, as WooCommerce's HTTP/1.0
    deliveries do. Latency runs from just before connecting to the answer's last byte.
    """
    numbers = itertools.count(spec.first_number)
    result = PhaseResult(name=spec.name, seconds=spec.seconds, concurrency=spec.concurrency)
    poller = select.epoll()
    live: dict[int, _Exchange] = {}
    retry_at: list[float] = []
    samples: dict[str, CpuSample] = {}
    t_measure = time.monotonic() + spec.warmup
    t_end = t_measure + spec.seconds

    def send_next(ex: _Exchange | None) -> None:
        number = next(numbers)
        data = spec.request(number)
        if ex is not None:  # a kept-alive connection
            ex.begin(data, number, time.monotonic())
            poller.modify(ex.sock.fileno(), select.EPOLLOUT)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ex = _Exchange(sock)
        ex.begin(data, number, time.monotonic())
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            failed(None, f"error {errno.errorcode.get(err, err)}")
            return
        live[sock.fileno()] = ex
        poller.register(sock.fileno(), select.EPOLLOUT)

    def close(ex: _Exchange) -> None:
        if live.pop(ex.sock.fileno(), None) is not None:
            poller.unregister(ex.sock.fileno())
        ex.sock.close()

    def failed(ex: _Exchange | None, what: str) -> None:
        result.failures[what] += 1
        if ex is not None:
            close(ex)
        retry_at.append(time.monotonic() + 0.01)  # a refused connection must not spin the loop

    def answered(ex: _Exchange, body: bytes) -> None:
        t1 = time.monotonic()
        if ex.status != 200:
            result.failures[f"HTTP {ex.status}"] += 1
        elif not spec.accept(body):
            result.failures["200 not accepted"] += 1
        else:
            result.ok_numbers.append(ex.number)
            if t_measure <= t1 < t_end:
                result.ok_in_window += 1
                result.latencies_ms.append((t1 - ex.t0) * 1000)
        if ex.must_close:
            close(ex)  # at once: gunicorn lingers on each connection until the client's FIN
        if t1 < t_end:
            send_next(None if ex.must_close else ex)
        elif not ex.must_close:
            close(ex)

    for _ in range(spec.concurrency):
        send_next(None)
    while live or retry_at:
        now = time.monotonic()
        # CPU samples exactly at the window's edges, whatever the connections are doing.
        if "start" not in samples and now >= t_measure:
            samples["start"] = CpuSample.take(server_pgid, pg_database)
        if "end" not in samples and now >= t_end:
            samples["end"] = CpuSample.take(server_pgid, pg_database)
        if retry_at and retry_at[0] <= now:
            retry_at.pop(0)
            if now < t_end:
                send_next(None)
            continue
        wake = t_measure if "start" not in samples else t_end if "end" not in samples else now + 1.0
        if retry_at:
            wake = min(wake, retry_at[0])
        for fd, event in poller.poll(max(0.0, wake - now)):
            ex = live.get(fd)
            if ex is None:
                continue
            if event & select.EPOLLOUT:
                try:
                    ex.sent += ex.sock.send(memoryview(ex.data)[ex.sent :])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    failed(ex, f"error {type(exc).__name__}")
                    continue
                if ex.sent == len(ex.data):
                    poller.modify(fd, select.EPOLLIN)
                continue
            try:
                chunk = ex.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                failed(ex, f"error {type(exc).__name__}")
                continue
            if chunk:
                ex.buf += chunk
                if ex.complete():
                    answered(ex, bytes(ex.buf[ex.body_start : ex.need]))
            elif ex.body_start >= 0 and ex.need < 0:  # no Content-Length: EOF ends the body
                ex.must_close = True
                answered(ex, bytes(ex.buf[ex.body_start :]))
            else:
                failed(ex, "error closed before the answer")
        if now - t_end > spec.timeout:
            for ex in list(live.values()):
                failed(ex, "error no answer in time")
            retry_at.clear()
    poller.close()
    samples.setdefault("end", CpuSample.take(server_pgid, pg_database))
    start, end = samples["start"], samples["end"]
    result.seconds = end.at - start.at
    result.client_cpu_s = end.own - start.own
    result.server_cpu_s = end.server - start.server
    result.database_cpu_s = end.database - start.database
    result.machine_busy_s = end.busy - start.busy
    result.machine_total_s = end.total - start.total
    return result


def settle(
    host: str, port: int, request: bytes, concurrency: int, *, max_ms: float = 250.0, timeout: float = 60.0
) -> float:
    """Send ``request`` in half-second bursts until no answer takes over ``max_ms`` (or 5 × the
    median, under heavy load); return the seconds spent.

    A fresh gunicorn worker answers its first request slowly (it imports the URLconf and views
    then) and ``/healthz`` answers as soon as one worker is up; this keeps that start-up cost out
    of every measured window, whatever the number of workers.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        spec = PhaseSpec("settle", 0.0, 0.5, concurrency, lambda n: request)
        result = run_phase(host, port, spec)
        lat = sorted(result.latencies_ms)
        if lat and not result.failures and lat[-1] < max(max_ms, 5 * percentile(lat, 50)):
            break
    return time.monotonic() - started


def run_phases(
    host: str,
    port: int,
    specs: Sequence[PhaseSpec],
    *,
    server_pgid: int | None = None,
    pg_database: str | None = None,
) -> list[PhaseResult]:
    """Run phases one after another; call this in the load-generator process, not the server's.

    Rate and latency count the answers that complete inside each measured window. GC is off
    while sending so that a collection pause does not show up as server latency.
    """
    results = []
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for spec in specs:
            results.append(run_phase(host, port, spec, server_pgid, pg_database))
    finally:
        gc.enable()
    return results


# --- machine and output -----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_json_line(figures: dict[str, Any]) -> None:
    """Every benchmark ends its output with one line of JSON holding its figures."""
    print(json.dumps(figures, separators=(",", ":"), default=str), flush=True)
