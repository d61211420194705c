"""The requests of a load run: one user class, a fresh connection per request, each request written
to LOAD_EVENTS as one JSON line. asgi.deploy.check loads an app with it in the app's CI; the
collection's own scenarios and benchmarks (bench/loadgen.py) do the same.

Targets come from LOAD_TARGETS (comma separated base URLs, loopback only) in turn, the paths from
LOAD_PATH (comma separated, in turn); each user is paced to LOAD_RATE / users requests a second
(0: as fast as it goes).
A fresh connection per request (Connection: close) measures what a deploy promises - no refused
connection and no accepted connection dropped - where keep-alive reuse would race any server
closing an idle connection, a client matter.
"""

import http.client
import itertools
import json
import os
import ssl
import time

from locust import User, constant, constant_throughput, events, task

TARGETS = itertools.cycle([url.split("//", 1)[1] for url in os.environ["LOAD_TARGETS"].split(",")])
PATHS = itertools.cycle(os.environ.get("LOAD_PATH", "/version").split(","))
RATE = float(os.environ.get("LOAD_RATE", "0"))
TIMEOUT = float(os.environ.get("LOAD_TIMEOUT", "10"))
SINK = open(os.environ["LOAD_EVENTS"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)


HEADERS = json.loads(os.environ.get("LOAD_HEADERS") or "{}")
# HTTPS through a front door: LOAD_TLS_NAME is the name the client asks for (SNI, the certificate, Host), whatever
# address the target is; LOAD_TLS_CA the CA it trusts.
TLS_NAME = os.environ.get("LOAD_TLS_NAME", "")
TLS = ssl.create_default_context(cafile=os.environ.get("LOAD_TLS_CA") or None) if TLS_NAME else None
if TLS_NAME:
    HEADERS.setdefault("Host", TLS_NAME)


class NamedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, as a client of TLS_NAME would connect."""

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = TLS.wrap_socket(self.sock, server_hostname=TLS_NAME)


def request(target, path):
    """One GET on a fresh connection: (ok, error)."""
    host, port = target.rsplit(":", 1)
    try:
        if TLS:
            conn = NamedHTTPS(host, int(port), timeout=TIMEOUT, context=TLS)
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        conn.request("GET", path, headers={**HEADERS, "Connection": "close"})
        reply = conn.getresponse()
        reply.read()
        conn.close()
        return reply.status == 200, "" if reply.status == 200 else f"HTTP {reply.status}"
    except (OSError, http.client.HTTPException) as exc:
        # A reply cut short (a host killed mid-response: IncompleteRead) is a failed request; the user goes on.
        return False, type(exc).__name__


class Visitor(User):
    def wait_time(self):
        users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
        return constant_throughput(RATE / users)(self) if RATE else constant(0)(self)

    @task
    def get(self):
        target, path = next(TARGETS), next(PATHS)
        began, wall = time.monotonic(), time.time()
        ok, error = request(target, path)
        ms = (time.monotonic() - began) * 1000
        SINK.write(
            json.dumps(
                {"t": round(wall, 4), "ms": round(ms, 2), "ok": ok, "error": error, "target": target, "path": path}
            )
            + "\n"
        )
        failure = None if ok else error
        events.request.fire(
            request_type="GET", name=path, response_time=ms, response_length=0, exception=failure, context={}
        )
