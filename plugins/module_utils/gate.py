# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The one readiness gate: is this instance up, ready, and running what we asked for?

It asks systemd and the file system which release and settings the instance
runs (the main PID's working directory and its ASGI_SETTINGS_DIGEST), and the
instance itself only for readiness, through its private probe socket, which no
other instance answers. Checking the app's own ``/version`` is an option.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

SETTINGS_ENV = "ASGI_SETTINGS_DIGEST"
# How often a starting instance is asked again: each poll is one systemctl call and one connect.
POLL_S = 0.05


class GateFailed(Exception):
    def __init__(self, check, message):
        super().__init__(message)
        self.check = check


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def http_get(path, target, timeout=5.0):
    """GET ``target`` over the unix socket ``path``: (status, body)."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", target, headers={"Connection": "close"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def crashed(props, baseline):
    """Why the instance is no longer the one we started ('' when it is)."""
    if props.get("ActiveState") == "failed":
        return "failed (%s)" % (props.get("Result") or "unknown")
    if props.get("SubState") == "auto-restart" or props.get("NRestarts", 0) > baseline.get("NRestarts", 0):
        return "crashed and is being restarted by systemd"
    if baseline.get("InvocationID") and props.get("InvocationID", "") not in ("", baseline["InvocationID"]):
        return "was restarted (a new invocation)"
    if props.get("ActiveState") in ("inactive", "deactivating"):
        return "stopped"
    return ""


class Gate:
    """``wait(unit, probe, release, settings)`` returns once the instance answers
    ``path`` with 200 and runs ``release`` with ``settings``; raises GateFailed
    at its first crash, or when ``timeout`` runs out."""

    def __init__(
        self,
        systemd,
        path="/readyz",
        timeout=60.0,
        check_version=False,
        clock=time.monotonic,
        sleep=time.sleep,
        get=http_get,
    ):
        self.systemd, self.path, self.timeout, self.check_version = systemd, path, float(timeout), check_version
        self.clock, self.sleep, self.get = clock, sleep, get

    def wait(self, unit, probe, release, settings=""):
        began = self.clock()
        deadline = began + self.timeout
        baseline = self.systemd.show(unit)
        last = "no answer yet"
        while True:
            props = self.systemd.show(unit)
            why = crashed(props, baseline)
            if why:
                raise GateFailed("start", f"{unit} {why} before it was ready ({last})")
            try:
                status, _ = self.get(probe, self.path)
                if status == 200:
                    break
                last = f"{self.path} answered HTTP {status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{self.path}: {exc.__class__.__name__ if not str(exc) else exc}"
            if self.clock() > deadline:
                raise GateFailed(
                    "readiness", f"{unit} did not answer {self.path} with 200 within {self.timeout:.0f}s ({last})"
                )
            self.sleep(POLL_S)
        props = self.systemd.show(unit)
        pid = props.get("MainPID", 0)
        running = self.systemd.release_of(pid)
        if running != release:
            raise GateFailed("release", "{} runs release {!r}, not {!r}".format(unit, running or "unknown", release))
        if settings:
            applied = self.systemd.environ_of(pid).get(SETTINGS_ENV, "")
            if applied != settings:
                raise GateFailed(
                    "settings", "{} runs settings {!r}, not {!r}".format(unit, applied[:12] or "unknown", settings[:12])
                )
        if self.check_version:
            status, body = self.get(probe, "/version")
            try:
                reported = json.loads(body).get("release_id") if status == 200 else f"HTTP {status}"
            except (ValueError, AttributeError):
                reported = "an unreadable answer"
            if reported != release:
                raise GateFailed("version", f"{unit} says /version is {reported}, not {release}")
        return {"unit": unit, "pid": pid, "release": running, "ready_s": round(self.clock() - began, 2)}
