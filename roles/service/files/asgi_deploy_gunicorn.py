# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""What every instance's Gunicorn runs besides the app, for any app: shipped in the settings set next to
gunicorn.conf.py, which imports it. Standard library only (it runs in the release's venv).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import socket

# uvicorn's own HTTP protocols; the shutdown fix patches their shutdown().
PROTOCOLS = (
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"),
    ("uvicorn.protocols.http.h11_impl", "H11Protocol"),
)
# How long a connection accepted just before a stop gets to deliver its request.
GRACE_POLLS, GRACE_STEP_S = 20, 0.1


def export_release(release_dir=None):
    """The release this instance runs, from the directory the unit started it in (current or next, which the
    kernel resolved at start). Exported before the workers fork, so any app can read its metadata as
    ASGI_RELEASE_ID, ASGI_RELEASE_VERSION and ASGI_RELEASE_MANIFEST without asking the collection."""
    release_dir = release_dir or os.getcwd()
    manifest = os.path.join(release_dir, "release.json")
    try:
        with open(manifest, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        data = {}
    os.environ["ASGI_RELEASE_ID"] = str(data.get("release_id", os.path.basename(release_dir)))
    os.environ["ASGI_RELEASE_VERSION"] = str(data.get("version", ""))
    os.environ["ASGI_RELEASE_MANIFEST"] = manifest
    return data


def startup_line(app, release):
    """One structured line per start, for every app: what runs, from where."""
    return json.dumps(
        {
            "app": app,
            "instance": os.environ.get("ASGI_INSTANCE", ""),
            "version": release.get("version", ""),
            "release_id": os.environ.get("ASGI_RELEASE_ID", ""),
            "app_version": release.get("app_version", ""),
            "git_sha": release.get("git_sha", ""),
            "lock_sha256": release.get("lock_sha256", ""),
            "settings": os.environ.get("ASGI_SETTINGS_DIGEST", ""),
            "python": platform.python_version(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
        sort_keys=True,
    )


def require_systemd_socket(app):
    """Refuse to fall back to binding an address of our own: without systemd's socket a restart would refuse
    connections, the very thing the units prevent."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not os.environ.get("LISTEN_FDS"):
        raise SystemExit(f"{app}: no socket from systemd (LISTEN_FDS); start {app}.socket")


def hold_until_gated(worker, held, probes):
    """A slot a handover started serves its probe socket only, until its gate passed: ``held`` maps each slot to
    the marker the handover makes before the start and removes once the gate passed, before it has Gunicorn
    replace the workers (SIGHUP). So a release that never gets ready never answers a client. A worker forked
    without the marker (the boot, a crash's restart, the replacement) serves every socket. Returns whether the
    worker is held."""
    slot = os.environ.get("ASGI_INSTANCE", "")
    if slot not in held or not os.path.exists(held[slot]):
        return False
    kept = [sock for sock in worker.sockets if _name_of(sock) == probes.get(slot)]
    if not kept:  # never leave a worker with nothing to accept on
        return False
    worker.sockets = kept
    return True


def _name_of(sock):
    try:
        return sock.getsockname()
    except OSError:
        return None


def answer_accepted_connections_on_shutdown():
    """A uvicorn worker that stops (graceful stop, HUP, max_requests recycling) closes every connection with no
    request parsed yet, including ones it accepted a moment ago whose request is already on the wire: the
    client gets a reset. Measured under load, that was the only source of failed requests across a handover.
    Instead, give such a connection up to GRACE_POLLS * GRACE_STEP_S seconds to deliver its request, answer
    it and close it, then let uvicorn's shutdown go on. Returns the classes it patched."""
    patched = []
    for module, name in PROTOCOLS:
        try:
            protocol = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if not getattr(protocol, "_asgi_deploy_patched", False):
            _patch(protocol)
        patched.append(protocol)
    return patched


def _patch(protocol):
    original = protocol.shutdown

    def shutdown(self):
        polls = getattr(self, "_asgi_deploy_polls", 0)
        if self.cycle is None and not self.transport.is_closing() and polls < GRACE_POLLS:
            self._asgi_deploy_polls = polls + 1
            self.loop.call_later(GRACE_STEP_S, shutdown, self)
            return
        original(self)

    protocol.shutdown = shutdown
    protocol._asgi_deploy_patched = True
