# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Build one release on a host from the lock and the shipped wheelhouse, and prune old ones.

The venv is built at its final path (venvs are not relocatable), from the
offline wheelhouse only, with every hash required and bytecode compiled (the
release is read-only once built). ``release.json`` is written last and
atomically: a directory without it is unfinished, never switched to, and
removed by the next build or prune.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile

from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    link_target,
    list_releases,
    read_manifest,
    remove_tree,
    write_atomic,
)


class BuildFailed(Exception):
    def __init__(self, step, message):
        super().__init__(message)
        self.step = step


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sums(directory):
    """Every wheel listed in SHA256SUMS is there and matches; nothing else is there."""
    listed = {}
    with open(os.path.join(directory, "SHA256SUMS"), encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    for line in lines:
        digest, name = line.split(None, 1)
        listed[name] = digest
    present = {n for n in os.listdir(directory) if n.endswith(".whl")}
    if present != set(listed):
        raise BuildFailed("wheelhouse", f"wheelhouse {directory} does not hold exactly the wheels its SHA256SUMS lists")
    for name, digest in listed.items():
        if sha256_file(os.path.join(directory, name)) != digest:
            raise BuildFailed("wheelhouse", f"wheel {name} in {directory} does not match its SHA256SUMS (corrupt?)")


def unpack_wheelhouse(tarball, target):
    """Unpack a shipped wheelhouse tarball into ``target`` (atomically, by renaming a staging directory)."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise BuildFailed("wheelhouse", f"unexpected member {member.name!r} in wheelhouse {tarball}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # members were checked above: plain files, no paths
                tar.extractall(staging)  # noqa: S202
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o644)
        os.chmod(staging, 0o755)
        verify_sums(staging)
        remove_tree(target)
        os.rename(staging, target)
    finally:
        remove_tree(staging)


def install_uv(wheel, target_dir, version):
    """Take the uv binary out of its wheel (shipped in the wheelhouse, hash-checked)."""
    path = os.path.join(target_dir, "uv")
    if os.access(path, os.X_OK):
        return path
    member = f"uv-{version}.data/scripts/uv"
    os.makedirs(target_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    write_atomic(path, data, 0o755)
    return path


def find_wheel(directory, name):
    prefix = name.replace("-", "_") + "-"
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(prefix) and entry.endswith(".whl"):
            return os.path.join(directory, entry)
    raise BuildFailed("tools", f"no {name} wheel in {directory}")


def make_readonly(path):
    """Nothing in a release is writable by anyone but its owner (uv leaves a world-writable venv/.lock)."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o022:
                os.chmod(full, stat.S_IMODE(mode) & ~0o022)


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.lchown(root, uid, gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


class Builder:
    """Build ``release_id`` under ``app.releases``. ``run`` executes argv (tests pass a fake)."""

    def __init__(
        self,
        app,
        release_id,
        manifest,
        requirements,
        python="/usr/bin/python3",
        installer="uv",
        niceness=10,
        uid=0,
        gid=0,
        run=None,
        clock=time.monotonic,
    ):
        self.app, self.release_id, self.manifest, self.requirements = app, release_id, manifest, requirements
        self.python, self.installer, self.niceness, self.uid, self.gid = python, installer, niceness, uid, gid
        self.run = run or self._run
        self.clock = clock
        self.timings = {}
        self.dir = app.release_dir(release_id)

    @staticmethod
    def _run(argv, step):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise BuildFailed(step, f"{os.path.basename(argv[0])} failed (exit {result.returncode}): {output[-3000:]}")
        return result.stdout

    def nice(self, argv):
        if self.niceness > 0:
            # Built beside the live release on the same cores: yield CPU and I/O to it.
            return ["nice", "-n", str(self.niceness), "ionice", "-c", "3", *argv]
        return list(argv)

    def timed(self, step, action, *args):
        began = self.clock()
        try:
            return action(*args)
        finally:
            self.timings[step] = round(self.clock() - began, 2)

    def build(self, app_wheel, wheelhouse_dir, uv_version="", index_url=""):
        """Returns the manifest written. On failure the unfinished directory is removed."""
        remove_tree(self.dir)  # the same id without a manifest: a run died half way
        try:
            os.makedirs(os.path.join(self.dir, "dist"), mode=0o755)
            shutil.copy2(app_wheel, os.path.join(self.dir, "dist", os.path.basename(app_wheel)))
            write_atomic(os.path.join(self.dir, "requirements.txt"), self.requirements, 0o644)
            venv = os.path.join(self.dir, "venv")
            if self.installer == "uv":
                uv = self.timed(
                    "uv",
                    install_uv,
                    find_wheel(wheelhouse_dir, "uv"),
                    os.path.join(self.app.tools, "uv-" + uv_version),
                    uv_version,
                )
                self.timed(
                    "venv",
                    self.run,
                    self.nice([uv, "venv", "--quiet", "--no-python-downloads", "--python", self.python, venv]),
                    "venv",
                )
                sources = (
                    ["--offline", "--no-index", "--find-links", wheelhouse_dir]
                    if not index_url
                    else ["--index-url", index_url]
                )
                self.timed(
                    "install",
                    self.run,
                    self.nice(
                        [
                            uv,
                            "pip",
                            "sync",
                            "--quiet",
                            "--require-hashes",
                            *sources,
                            "--find-links",
                            os.path.join(self.dir, "dist"),
                            "--compile-bytecode",
                            "--link-mode",
                            "copy",
                            "--no-cache",
                            "--python",
                            os.path.join(venv, "bin", "python"),
                            os.path.join(self.dir, "requirements.txt"),
                        ]
                    ),
                    "install",
                )
                self.timed(
                    "check",
                    self.run,
                    [uv, "pip", "check", "--quiet", "--python", os.path.join(venv, "bin", "python")],
                    "check",
                )
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(venv, ".lock"))
            else:
                self.timed("venv", self.run, self.nice([self.python, "-m", "venv", venv]), "venv")
                pip = os.path.join(venv, "bin", "pip")
                sources = (
                    ["--no-index", "--find-links", wheelhouse_dir] if not index_url else ["--index-url", index_url]
                )
                self.timed(
                    "install",
                    self.run,
                    self.nice(
                        [
                            pip,
                            "install",
                            "--quiet",
                            "--disable-pip-version-check",
                            "--no-deps",
                            "--require-hashes",
                            *sources,
                            "--find-links",
                            os.path.join(self.dir, "dist"),
                            "-r",
                            os.path.join(self.dir, "requirements.txt"),
                        ]
                    ),
                    "install",
                )
                self.timed("check", self.run, [pip, "check", "--disable-pip-version-check"], "check")
            make_readonly(self.dir)
            if self.uid or self.gid:
                chown_tree(self.dir, self.uid, self.gid)
        except BaseException:
            remove_tree(self.dir)
            raise
        return self.dir

    def import_check(self, module, user, group, extra_properties=()):
        """Import ``module`` from the new venv as the service user, in a sandbox like the unit's: release
        code never runs as root."""
        python = os.path.join(self.dir, "venv", "bin", "python")
        argv = [
            "systemd-run",
            "--quiet",
            "--wait",
            "--pipe",
            "--collect",
            "--service-type=exec",
            "--unit",
            f"asgi-import-check-{self.app.name}-{os.getpid()}",
            "-p",
            "User=" + user,
            "-p",
            "Group=" + group,
            "-p",
            "WorkingDirectory=" + self.dir,
            "-p",
            "NoNewPrivileges=yes",
            "-p",
            "ProtectSystem=strict",
            "-p",
            "ProtectHome=yes",
            "-p",
            "PrivateTmp=yes",
            "-p",
            "PrivateDevices=yes",
            "-p",
            "Environment=PYTHONDONTWRITEBYTECODE=1",
        ]
        for prop in extra_properties:
            argv += ["-p", prop]
        argv += [python, "-I", "-c", "import importlib, sys; importlib.import_module(sys.argv[1])", module]
        self.timed("import check", self.run, argv, "import check")

    def finish(self):
        """From this moment the release exists."""
        write_atomic(
            os.path.join(self.dir, "release.json"),
            json.dumps(self.manifest, indent=2, sort_keys=True) + "\n",
            0o644,
            self.uid,
            self.gid,
        )


def prune(app, keep, dry_run=False):
    """Remove unfinished releases, all but the newest ``keep`` finished ones, and wheelhouses no kept
    release uses. The targets of current, previous and next are always kept."""
    protected = {link_target(app.link(name)) for name in ("current", "previous", "next")} - {""}
    finished, unfinished = list_releases(app)
    newest_first = list(reversed(finished))
    kept = newest_first[:keep] + [r for r in newest_first[keep:] if r["id"] in protected]
    removed = [r["id"] for r in newest_first[keep:] if r["id"] not in protected]
    removed += [name for name in unfinished if name not in protected]
    used = {r["wheelhouse_key"] for r in kept}
    houses = []
    if os.path.isdir(app.wheels):
        houses = [h for h in sorted(os.listdir(app.wheels)) if not h.startswith(".") and h not in used]
    if not dry_run:
        for name in removed:
            remove_tree(app.release_dir(name))
        for house in houses:
            remove_tree(os.path.join(app.wheels, house))
    return {"removed": sorted(removed), "wheelhouses_removed": houses, "kept": sorted(r["id"] for r in kept)}


def manifest_exists(app, release_id):
    return read_manifest(app, release_id) is not None


def ensure_user(user, group, comment, run=None):
    """The unprivileged system user and group the app runs as; created when missing. True when created."""
    import grp
    import pwd

    run = run or Builder._run
    created = False
    try:
        grp.getgrnam(group)
    except KeyError:
        run(["groupadd", "--system", group], "user")
        created = True
    try:
        pwd.getpwnam(user)
    except KeyError:
        run(
            [
                "useradd",
                "--system",
                "--gid",
                group,
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
                "--comment",
                comment,
                user,
            ],
            "user",
        )
        created = True
    return created
