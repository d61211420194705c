"""Load on loopback for the benchmarks and the molecule scenarios alike: locust, headless.

``Load(urls, users, path, rate)`` starts ``locust --headless`` with the collection's locustfile
(roles/rollout/files/locustfile.py, which asgi.deploy.check uses too): N users,
a fresh connection per request, every request recorded (start time, latency, outcome, target) so
any window of the run can be summarised afterwards and latency plotted over time. The seed's CI
chain (``pytest && locust --headless``) is this: the scenarios run pytest, which runs locust.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The collection's own locustfile: asgi.deploy.check loads an app's CI run with it too.
LOCUSTFILE = Path(__file__).resolve().parents[1] / "roles/rollout/files/locustfile.py"


@dataclass
class Record:
    t: float  # seconds since the load started
    ms: float
    ok: bool
    error: str = ""
    target: str = ""  # host:port the request went to


class Load:
    """A locust run on ``urls`` for as long as the ``with`` block lasts."""

    def __init__(self, urls, users=4, path="/version", rate=0.0, timeout=10.0, tls_name="", tls_ca=""):
        self.urls, self.users, self.path, self.rate, self.timeout = list(urls), users, path, rate, timeout
        # HTTPS through a front door: the host name asked for (SNI, certificate, Host) and the CA trusted.
        self.tls_name, self.tls_ca = tls_name, tls_ca
        self._records: list[Record] = []
        self._offset = 0
        self._stopped = False
        self.marks: dict[str, float] = {}
        self.t0 = self.wall0 = 0.0

    def __enter__(self) -> Load:
        self._events = Path(tempfile.mkstemp(prefix="load-", suffix=".jsonl")[1])
        env = {
            **os.environ,
            "LOAD_TARGETS": ",".join(self.urls),
            "LOAD_PATH": self.path,
            "LOAD_RATE": str(self.rate),
            "LOAD_TIMEOUT": str(self.timeout),
            "LOAD_EVENTS": str(self._events),
            "LOAD_TLS_NAME": self.tls_name,
            "LOAD_TLS_CA": self.tls_ca,
        }
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
        argv += ["-u", str(self.users), "-r", str(self.users), "--run-time", "3600s", "--stop-timeout", "10"]
        self.t0, self.wall0 = time.monotonic(), time.time()
        # locust's log goes to a file: a pipe nobody reads would block it once full.
        self._log = self._events.with_suffix(".log")
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
        self._started()
        return self

    def _started(self, within: float = 30.0) -> None:
        """Wait for the first recorded request: a load that never ran must not read as zero failures."""
        deadline = time.monotonic() + within
        while self._events.stat().st_size == 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                raise RuntimeError(f"locust recorded no request; its log:\n{self._log.read_text()[-3000:]}")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self._stopped = True
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._read()
        self._events.unlink(missing_ok=True)
        self._log.unlink(missing_ok=True)

    def _read(self) -> None:
        with self._events.open() as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        complete, _sep, _rest = chunk.rpartition("\n")
        if not complete:
            return
        self._offset += len(complete) + 1
        for line in complete.splitlines():
            r = json.loads(line)
            self._records.append(Record(r["t"] - self.wall0, r["ms"], r["ok"], r["error"], r["target"]))

    @property
    def records(self) -> list[Record]:
        if self._proc.poll() is None:
            self._read()
        elif not self._stopped:
            raise RuntimeError(f"locust exited during the run; its log:\n{self._log.read_text()[-3000:]}")
        return self._records

    def now(self) -> float:
        return time.monotonic() - self.t0

    def at(self, wall: float) -> float:
        """Load time of a wall-clock timestamp (hosts here share this machine's clock)."""
        return wall - self.wall0

    def window(self, start: float, end: float, target: str = "") -> dict:
        """Summary of the requests started in [start, end), to one ``host:port`` or to all."""
        return summarize([r for r in self.records if start <= r.t < end and (not target or r.target == target)])

    def once_serving(self, start: float, end: float) -> dict:
        """Per ``host:port``, the requests of [start, end) from its first answer on: a first deploy's
        "something serving" (before it, a host not yet deployed refuses, as it should)."""
        records = [r for r in self.records if start <= r.t < end]
        first = {}
        for r in records:
            if r.ok:
                first.setdefault(r.target, r.t)
        return {t: summarize([r for r in records if r.target == t and r.t >= since]) for t, since in first.items()}


def http_ok(url: str, timeout: float = 5.0) -> bool:
    import http.client

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
