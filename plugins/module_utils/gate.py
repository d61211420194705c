# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The one readiness gate: is this instance up, ready, and running what we asked for?

It asks systemd and the file system which release and settings the instance
runs (the main PID's working directory and its ASGI_SETTINGS_DIGEST), and the
instance itself only for readiness, through its private probe socket, which no
other instance answers. Checking the app's own ``/version`` is an option.

An answer that only configuration explains (a redirect, 400, 404) fails the gate
at once, naming the likely cause, instead of waiting out the timeout.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

SETTINGS_ENV = "ASGI_SETTINGS_DIGEST"
# How often a starting instance is asked again: each poll is one systemctl call and one connect.
POLL_S = 0.05
DEFAULT_HOST = "localhost"


def misconfigured(status, path, headers, location=""):
    """What an answer that no amount of waiting changes says about the app's configuration ('' if none)."""
    host = headers.get("Host", DEFAULT_HOST)
    if 300 <= status < 400:
        return (
            f"{path} answered HTTP {status} (redirect to {location or '?'}): the app redirects the readiness probe, "
            "likely to HTTPS (Django's SECURE_SSL_REDIRECT, FastAPI's HTTPSRedirectMiddleware). Send "
            "X-Forwarded-Proto: https with asgi_readiness_headers (and let the app trust it: Django's "
            "SECURE_PROXY_SSL_HEADER), or give a path that does not redirect"
        )
    if status == 400:
        return (
            f"{path} answered HTTP 400 to Host: {host}: the app refuses that host name (Django's ALLOWED_HOSTS, "
            f"FastAPI's TrustedHostMiddleware). Allow {host!r} in the app, or set asgi_readiness_headers.Host to a "
            "name it allows"
        )
    if status in (404, 405):
        return f"{path} answered HTTP {status}: the app has no such route; check asgi_readiness_path"
    return ""


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


def http_get(path, target, timeout=5.0, headers=None):
    """GET ``target`` over the unix socket ``path``: (status, body, Location header)."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", target, headers={"Host": DEFAULT_HOST, **(headers or {}), "Connection": "close"})
        reply = conn.getresponse()
        return reply.status, reply.read(), reply.getheader("Location", "")
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
    ``path`` with an accepted status and runs ``release`` with ``settings``;
    raises GateFailed at its first crash, at an answer only configuration
    explains, or when ``timeout`` runs out."""

    def __init__(
        self,
        systemd,
        path="/readyz",
        timeout=60.0,
        check_version=False,
        headers=None,
        accept=(200,),
        clock=time.monotonic,
        sleep=time.sleep,
        get=http_get,
    ):
        self.systemd, self.path, self.timeout, self.check_version = systemd, path, float(timeout), check_version
        self.headers, self.accept = dict(headers or {}), tuple(accept)
        self.clock, self.sleep, self.get = clock, sleep, get

    def wait(self, unit, probe, release, settings=""):
        began = self.clock()
        deadline = began + self.timeout
        baseline = self.systemd.show(unit)
        last = "no answer yet"
        while True:
            why = crashed(self.systemd.show(unit), baseline)
            if why:
                raise GateFailed("start", f"{unit} {why} before it was ready ({last})")
            try:
                status, _body, location = self.get(probe, self.path, headers=self.headers)
                if status in self.accept:
                    break
                last = f"{self.path} answered HTTP {status}"
                cause = misconfigured(status, self.path, self.headers, location)
                if cause:
                    raise GateFailed("configuration", f"{unit}: {cause}")
            except (OSError, http.client.HTTPException) as exc:
                last = f"{self.path}: {exc.__class__.__name__ if not str(exc) else exc}"
            if self.clock() > deadline:
                raise GateFailed(
                    "readiness",
                    f"{unit} did not answer {self.path} with {'/'.join(map(str, self.accept))} within "
                    f"{self.timeout:.0f}s ({last})",
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
            status, body, _location = self.get(probe, "/version", headers=self.headers)
            try:
                reported = json.loads(body).get("release_id") if status == 200 else f"HTTP {status}"
            except (ValueError, AttributeError):
                reported = "an unreadable answer"
            if reported != release:
                raise GateFailed("version", f"{unit} says /version is {reported}, not {release}")
        return {"unit": unit, "pid": pid, "release": running, "ready_s": round(self.clock() - began, 2)}
