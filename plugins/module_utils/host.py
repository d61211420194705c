# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""What an app looks like on a host, and the few file operations every step needs.

Layout (``base`` is ``/srv`` by default)::

    <base>/<app>/releases/<id>/{venv,dist,requirements.txt,release.json}
    <base>/<app>/current, previous, next   relative links to releases/<id>
    <base>/<app>/wheels/<key>/             offline wheelhouses
    <base>/<app>/tools/uv-<version>/uv
    <base>/<app>/deploy.lock               JSON: who holds the host
    <base>/<app>/deploys.log               JSON lines: the audit log
    <base>/<app>/deployed-settings.sha256  the settings main runs with
    /etc/asgi-deploy/<app>/settings/<digest>/   one immutable settings set

A release exists once its ``release.json`` does: it is written last, atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time

AUDIT_MAX_BYTES = 4 * 1024 * 1024


def app_argument_spec(**more):
    """The options every module shares (documented by the asgi.deploy.app doc fragment), plus its own."""
    return dict(app=dict(type="str", required=True), base_dir=dict(type="path", default="/srv"), **more)


# The audit line's run, actor and host (the asgi.deploy.app.audit doc fragment).
AUDIT_ARGUMENT_SPEC = dict(
    run=dict(type="str", default=""), actor=dict(type="str", default=""), host=dict(type="str", default="")
)


class App:
    """Paths and unit names of one app; every directory is configurable for tests."""

    def __init__(
        self, name, base_dir="/srv", config_dir="/etc/asgi-deploy", unit_dir="/etc/systemd/system", run_dir="/run"
    ):
        self.name = name
        self.root = os.path.join(base_dir, name)
        self.releases = os.path.join(self.root, "releases")
        self.wheels = os.path.join(self.root, "wheels")
        self.tools = os.path.join(self.root, "tools")
        self.lock = os.path.join(self.root, "deploy.lock")
        self.audit = os.path.join(self.root, "deploys.log")
        self.applied = os.path.join(self.root, "deployed-settings.sha256")
        self.config = os.path.join(config_dir, name)
        self.settings_root = os.path.join(self.config, "settings")
        self.unit_dir = unit_dir
        self.run_dir = run_dir
        self.units = {
            "main": name + ".service",
            "next": name + "-next.service",
            "socket": name + ".socket",
            "main_probe": name + "-probe.socket",
            "next_probe": name + "-next-probe.socket",
        }
        self.probes = {
            "main": os.path.join(run_dir, name + "-probe.sock"),
            "next": os.path.join(run_dir, name + "-next-probe.sock"),
        }

    def link(self, which):
        return os.path.join(self.root, which)

    def release_dir(self, release_id):
        return os.path.join(self.releases, release_id)

    def settings_dir(self, digest):
        return os.path.join(self.settings_root, digest)

    def unit_path(self, unit):
        return os.path.join(self.unit_dir, unit)


def read_text(path, default=""):
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except (FileNotFoundError, NotADirectoryError):
        return default


def write_atomic(path, content, mode=0o644, uid=-1, gid=-1):
    """Write ``content`` to ``path`` so readers see the old or the new file, never a part."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def link_target(path):
    """The release id a link points at ('' when there is no link)."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return ""


def swap_link(path, release_id):
    """Point ``path`` at ``releases/<id>`` by renaming a new link over it (atomic);
    an empty id removes the link."""
    if not release_id:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release_id), tmp)
    os.replace(tmp, path)


def read_manifest(app, release_id):
    try:
        return json.loads(read_text(os.path.join(app.release_dir(release_id), "release.json")) or "null")
    except ValueError:
        return None


def list_releases(app):
    """(finished, unfinished): finished releases oldest first by build time, with their manifest fields."""
    finished, unfinished = [], []
    try:
        names = sorted(os.listdir(app.releases))
    except FileNotFoundError:
        return finished, unfinished
    for name in names:
        path = app.release_dir(name)
        if name.startswith(".") or os.path.islink(path) or not os.path.isdir(path):
            continue
        manifest = read_manifest(app, name)
        if manifest is None:
            unfinished.append(name)
            continue
        finished.append(
            {
                "id": name,
                "version": manifest.get("version", ""),
                "app_version": manifest.get("app_version", ""),
                "built_at": manifest.get("built_at", ""),
                "wheelhouse_key": manifest.get("wheelhouse_key", ""),
            }
        )
    finished.sort(key=lambda r: (r["built_at"], r["id"]))
    return finished, unfinished


def free_mb(path):
    """Free space of the file system that holds ``path`` (or its nearest existing parent)."""
    while path and not os.path.isdir(path):
        path = os.path.dirname(path)
    stats = os.statvfs(path or "/")
    return stats.f_bavail * stats.f_frsize // (1024 * 1024)


PYTHON_PROBE = (
    "import importlib.util, json, platform, sys;"
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'full': platform.python_version(),"
    " 'machine': platform.machine(), 'glibc': platform.libc_ver()[1] or '0.0',"
    " 'venv': importlib.util.find_spec('ensurepip') is not None}))"
)


def python_info(python):
    """Version and platform of the interpreter releases are built with ({} when it does not run)."""
    try:
        out = subprocess.run([python, "-I", "-c", PYTHON_PROBE], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def now_iso(now=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None else time.time()))


def audit(app, event, now=None):
    """Append one JSON line to the audit log in a single write (O_APPEND: lines never interleave).

    The log rotates to ``deploys.log.1`` past AUDIT_MAX_BYTES, so it never grows without bound.
    """
    record = dict(event)
    record.setdefault("time", now_iso(now))
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    os.makedirs(app.root, exist_ok=True)
    try:
        if os.path.getsize(app.audit) + len(line) > AUDIT_MAX_BYTES:
            os.replace(app.audit, app.audit + ".1")
    except FileNotFoundError:
        pass
    fd = os.open(app.audit, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return record


def read_audit(app, last=0):
    lines = read_text(app.audit).splitlines()
    records = []
    for line in lines[-last:] if last else lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


class Busy(Exception):
    pass


@contextlib.contextmanager
def operation_lock(app, wait_s=300.0, sleep=time.sleep, clock=time.monotonic):
    """Only one build or handover of an app at a time on a host.

    A controller that dies does not stop what it started on a host: over SSH the module runs on until it
    ends. The run that follows must wait for it rather than work beside it. This is a flock, so it is
    gone the moment its process is, whatever killed it.
    """
    path = os.path.join(app.run_dir, f"asgi-deploy-{app.name}.lock")
    os.makedirs(app.run_dir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = clock() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() > deadline:
                    holder = os.pread(fd, 64, 0).decode("utf-8", "replace").strip() or "unknown"
                    raise Busy(
                        f"another asgi.deploy operation on {app.name} is still running on this host "
                        f"(pid {holder}) after {wait_s:.0f}s"
                    ) from None
                sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def operation_running(app):
    """The PID of a build or handover running now on this host ('' when none)."""
    path = os.path.join(app.run_dir, f"asgi-deploy-{app.name}.lock")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode("utf-8", "replace").strip() or "unknown"
    finally:
        os.close(fd)
    return ""
