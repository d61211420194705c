"""A small closed-loop HTTP load: N threads, a fresh connection per request.

Each request is recorded (start time, latency, outcome), so any window of the
run can be summarised afterwards and latency plotted over time. A fresh
connection per request measures what a deploy promises: no refused connection
and no accepted connection dropped (keep-alive reuse races with any server
closing idle connections, which is a client matter, not a deploy's).
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Record:
    t: float  # seconds since the load started
    ms: float
    ok: bool
    error: str = ""
    target: str = ""  # host:port the request went to


@dataclass
class Load:
    urls: list[str]
    users: int = 4
    path: str = "/version"
    rate: float = 0.0  # requests per second in all; 0 = as fast as the users go
    timeout: float = 10.0
    records: list[Record] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._targets = itertools.cycle([urlsplit(url) for url in self.urls])
        self.t0 = 0.0

    def _one(self, target) -> Record:
        began = time.monotonic()
        try:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=self.timeout)
            conn.request("GET", self.path, headers={"Connection": "close"})
            reply = conn.getresponse()
            reply.read()
            conn.close()
            ok, error = reply.status == 200, "" if reply.status == 200 else f"HTTP {reply.status}"
        except (OSError, http.client.HTTPException) as exc:
            # A reply cut short (a host killed mid-response: IncompleteRead) is a failed request, and this
            # user goes on loading.
            ok, error = False, type(exc).__name__
        return Record(began - self.t0, (time.monotonic() - began) * 1000, ok, error, f"{target.hostname}:{target.port}")

    def _user(self) -> None:
        interval = self.users / self.rate if self.rate else 0.0
        due = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                target = next(self._targets)
            record = self._one(target)
            with self._lock:
                self.records.append(record)
            if interval:
                # Paced, not bursty: a late request does not make the next ones early.
                due = max(due + interval, time.monotonic() - interval)
                self._stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Load:
        self.t0, self.wall0 = time.monotonic(), time.time()
        for _ in range(self.users):
            thread = threading.Thread(target=self._user, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def at(self, wall: float) -> float:
        """Load time of a wall-clock timestamp (hosts here share this machine's clock)."""
        return wall - self.wall0

    def window(self, start: float, end: float, target: str = "") -> dict:
        """Summary of the requests started in [start, end), to one ``host:port`` or to all."""
        return summarize([r for r in self.records if start <= r.t < end and (not target or r.target == target)])


def http_ok(url: str, timeout: float = 5.0) -> bool:
    target = urlsplit(url)
    try:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
        conn.request("GET", target.path or "/")
        return conn.getresponse().status == 200
    except OSError:
        return False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(records: list[Record]) -> dict:
    latencies = [r.ms for r in records if r.ok]
    errors: dict[str, int] = {}
    for r in records:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "requests": len(records),
        "failures": len(records) - len(latencies),
        "errors": errors,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
    }
