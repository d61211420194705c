"""Steady HTTP load across the test hosts, recording every request.

Hosts come from LOAD_TARGETS (comma separated base URLs, loopback only); each
request is appended to LOAD_EVENTS as a JSON line: start time, latency, error.

Every request uses a fresh connection (Connection: close). A server closing an
idle keep-alive connection (worker recycling, keep-alive timeout, a graceful
stop) always races a client that reuses it at that instant; HTTP lets clients
retry such requests and proxies do. What this load proves is the server side:
no connection refused, no accepted connection dropped.
"""

import itertools
import json
import os
import time

from locust import HttpUser, constant, events, task

TARGETS = itertools.cycle(os.environ["LOAD_TARGETS"].split(","))
SINK = open(os.environ["LOAD_EVENTS"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)


@events.request.add_listener
def record(request_type, name, response_time, response_length, exception, start_time=None, **kwargs):
    started = start_time if start_time is not None else time.time() - response_time / 1000
    SINK.write(
        json.dumps(
            {"t": round(started, 4), "ms": round(response_time, 2), "error": repr(exception) if exception else None}
        )
        + "\n"
    )


class Visitor(HttpUser):
    host = "http://127.0.0.1"
    wait_time = constant(0.05)

    @task
    def version(self):
        url = next(TARGETS) + "/version"
        headers = {"Connection": "close"}
        with self.client.get(url, name="/version", headers=headers, catch_response=True, timeout=30) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}")
