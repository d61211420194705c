# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Build one release on a host from the lock and the shipped wheelhouse, and prune old ones.

The venv is built at its final path (venvs are not relocatable), from the offline
wheelhouse only, with every hash required and bytecode compiled (the release is
read-only once built). Every step that runs code from the release - installing,
compiling bytecode, checking, the app's own build step - runs as an unprivileged
build identity, offline (no network in its sandbox), able to write only inside the
release; then the release is made root-owned and read-only, and the app is imported
as the service user, with the unit's environment, credentials and sandbox.
``release.json`` is written last and atomically: a directory without it is
unfinished, never switched to, and removed by the next build or prune.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile

from ansible_collections.asgi.deploy.plugins.module_utils.hooks import as_app
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    SLOTS,
    link_target,
    list_releases,
    read_manifest,
    read_text,
    remove_tree,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.process import (
    CommandFailed,
    check,
    last_line,
    systemd_run,
    tail,
    unit_name,
)

BUILD_PREFIX = "asgi-build-"
# What a build may leave in a release besides regular files and directories: links, inside the venv only.
LINKS_ONLY_UNDER = "venv" + os.sep
# Bytecode with hashes, not build times: the same release builds the same bytes on every host.
SOURCE_DATE_EPOCH = "315532800"
IMPORT_PROBE = "asgi.deploy import check: "
MANIFEST_FILE = "venv.sha256"
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


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


def read_sums(directory):
    """{wheel name: sha256} from a wheelhouse's SHA256SUMS."""
    with open(os.path.join(directory, "SHA256SUMS"), encoding="utf-8") as stream:
        return {name: digest for digest, name in (line.split(None, 1) for line in stream.read().splitlines())}


def verify_sums(directory):
    """Every wheel listed in SHA256SUMS is there and matches; nothing else is there."""
    listed = read_sums(directory)
    present = {n for n in os.listdir(directory) if n.endswith(".whl")}
    if present != set(listed):
        raise BuildFailed("wheelhouse", f"wheelhouse {directory} does not hold exactly the wheels its SHA256SUMS lists")
    for name, digest in listed.items():
        if sha256_file(os.path.join(directory, name)) != digest:
            raise BuildFailed("wheelhouse", f"wheel {name} in {directory} does not match its SHA256SUMS (corrupt?)")


def unpack_wheelhouse(tarball, target, store):
    """Unpack a shipped wheelhouse into ``target`` (atomically, by renaming a staging directory).

    The tarball holds the wheelhouse's SHA256SUMS and only the wheels the host's ``store`` lacked; the store keeps
    every wheel once, by its sha256, and each wheelhouse is hard links into it, so a lock change ships only the
    wheels it changes. Every wheel is checked against SHA256SUMS before a new one joins the store."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    os.makedirs(store, mode=0o755, exist_ok=True)
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
        shipped = {n for n in os.listdir(staging) if n.endswith(".whl")}
        sums = read_sums(staging)
        for name in set(sums) - shipped:
            stored = os.path.join(store, sums[name])
            if not os.path.isfile(stored):
                raise BuildFailed("wheelhouse", f"wheel {name} was neither shipped nor in the wheel store {store}")
            if sha256_file(stored) != sums[name]:
                # The host state lists it as held: gone, it is shipped again on the next run.
                os.unlink(stored)
                raise BuildFailed("wheelhouse", f"stored wheel {name} was corrupt and is removed: run again to ship it")
            os.link(stored, os.path.join(staging, name))
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o644)
        os.chmod(staging, 0o755)
        verify_sums(staging)
        for name in shipped & set(sums):
            with contextlib.suppress(FileExistsError):
                os.link(os.path.join(staging, name), os.path.join(store, sums[name]))
        remove_tree(target)
        os.rename(staging, target)
    finally:
        remove_tree(staging)
    # Now that the new wheelhouse links what it needs: a stored wheel whose only link is the store's own belonged to
    # wheelhouses pruned since. (Not in prune: it runs before the build, and the host was sent only what it lacked.)
    for name in os.listdir(store):
        if SHA256_NAME.match(name) and os.lstat(os.path.join(store, name)).st_nlink == 1:
            os.unlink(os.path.join(store, name))


def install_uv(wheel, target_dir, version):
    """Take the uv binary out of its wheel (shipped in the wheelhouse, hash-checked)."""
    path = os.path.join(target_dir, "uv")
    if os.access(path, os.X_OK):
        return path
    member = f"uv-{version}.data/scripts/uv"
    os.makedirs(target_dir, mode=0o755, exist_ok=True)
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


def build_user(app_name):
    """The build identity of an app: its own, so that one app's build never sees another's processes, files or
    environment. A name over 32 characters (useradd's limit) is shortened with a digest of the app's name."""
    name = BUILD_PREFIX + app_name
    return name if len(name) <= 32 else BUILD_PREFIX + hashlib.sha256(app_name.encode()).hexdigest()[:16]


def unsafe_entries(path):
    """What a build left in a release that root must never open or follow: FIFOs, sockets and devices anywhere,
    links outside the venv, and files with other names elsewhere (hard links). Paths relative to ``path``."""
    found = []
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            mode = os.lstat(full)
            kind = stat.S_IFMT(mode.st_mode)
            if kind == stat.S_IFLNK:
                if not rel.startswith(LINKS_ONLY_UNDER):
                    found.append(f"{rel} (a link outside venv/)")
            elif kind == stat.S_IFREG:
                if mode.st_nlink > 1:
                    found.append(f"{rel} (a file with {mode.st_nlink} names)")
            elif kind != stat.S_IFDIR:
                found.append(f"{rel} (a {KINDS.get(kind, 'special file')})")
    return sorted(found)


KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


def read_regular(path):
    """The bytes of a regular file, never through a link and never blocking on a FIFO; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def make_readonly(path):
    """Nothing in a release is writable by anyone but its owner (uv leaves a world-writable venv/.lock)."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o022:
                os.chmod(full, stat.S_IMODE(mode) & ~0o022)


def chown_tree(path, uid, gid):
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def uv_steps(uv, python, release_dir, wheelhouse):
    """What uv runs to build the venv: (step, argv) pairs."""
    venv_python = os.path.join(release_dir, "venv", "bin", "python")
    common = ["--no-config", "--quiet"]
    return [
        ("venv", [uv, "venv", *common, "--no-python-downloads", "--python", python, os.path.join(release_dir, "venv")]),
        (
            "install",
            [
                uv,
                "pip",
                "sync",
                *common,
                "--require-hashes",
                "--offline",
                "--no-index",
                "--find-links",
                wheelhouse,
                "--find-links",
                os.path.join(release_dir, "dist"),
                "--compile-bytecode",
                "--link-mode",
                "copy",
                "--no-cache",
                "--python",
                venv_python,
                os.path.join(release_dir, "requirements.txt"),
            ],
        ),
        ("check", [uv, "pip", "check", *common, "--python", venv_python]),
    ]


def pip_steps(python, release_dir, wheelhouse):
    """What pip runs to build the venv: (step, argv) pairs."""
    pip = [os.path.join(release_dir, "venv", "bin", "python"), "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check", "--no-cache-dir"]
    return [
        ("venv", [python, "-m", "venv", os.path.join(release_dir, "venv")]),
        (
            "install",
            [
                *pip,
                "install",
                *quiet,
                "--no-deps",
                "--require-hashes",
                "--no-index",
                "--find-links",
                wheelhouse,
                "--find-links",
                os.path.join(release_dir, "dist"),
                "-r",
                os.path.join(release_dir, "requirements.txt"),
            ],
        ),
        ("check", [*pip, "check", "--disable-pip-version-check"]),
    ]


def build_properties(release_dir, niceness, host_dir="", user=""):
    """The build identity's sandbox: unprivileged, offline, writing only inside the release. With ``host_dir``
    (a rebuild), that directory is what the sandbox sees at the release's path: venvs are not relocatable."""
    properties = [f"BindPaths={host_dir}:{release_dir}"] if host_dir and host_dir != release_dir else []
    properties += [
        f"User={user}",
        f"Group={user}",
        f"WorkingDirectory={release_dir}",
        f"ReadWritePaths={release_dir}",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateNetwork=yes",
        "NoNewPrivileges=yes",
        # Nothing of other users (another app's build, the apps, root) to see in /proc.
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "UMask=0022",
        "Environment=HOME=/nonexistent",
        # uv keeps what it must cache (interpreter discovery) in the sandbox's private /tmp.
        "Environment=UV_CACHE_DIR=/tmp/uv-cache",
        f"Environment=SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}",
    ]
    if niceness > 0:
        # Built beside the live release on the same cores: yield CPU and I/O to it.
        properties += [f"Nice={niceness}", "IOSchedulingClass=idle"]
    return properties


class Builder:
    """Build ``release_id`` under ``app.releases``. ``run`` is ``AnsibleModule.run_command`` (tests: a fake)."""

    def __init__(self, app, release_id, manifest, requirements, run, python="/usr/bin/python3", installer="uv",
                 niceness=10, clock=time.monotonic, host_dir=""):  # fmt: skip
        self.app, self.release_id, self.manifest, self.requirements = app, release_id, manifest, requirements
        self.run, self.python, self.installer, self.niceness, self.clock = run, python, installer, niceness, clock
        self.timings = {}
        # Where the release is built for (its path), and where its files are on this host (a rebuild's scratch).
        self.path = app.release_dir(release_id)
        self.dir = host_dir or self.path

    def timed(self, step, action, *args):
        began = self.clock()
        try:
            return action(*args)
        finally:
            self.timings[step] = round(self.clock() - began, 2)

    def sandboxed(self, step, argv, properties=()):
        """Run ``argv`` as the build identity in its sandbox; BuildFailed with the output's last lines."""
        unit = unit_name("asgi-build", self.app.name, step, os.getpid())
        own = build_properties(self.path, self.niceness, self.dir, build_user(self.app.name))
        command = systemd_run([*own, *properties], argv, unit=unit)
        try:
            return self.timed(step, check, self.run, command, step)
        except CommandFailed as failed:
            raise BuildFailed(step, str(failed)) from None

    def build(self, app_wheel, wheelhouse_dir, uv_version="", uid=0, gid=0, app_wheel_data=None):
        """The venv, built by the build identity (owned by ``uid``/``gid`` of it meanwhile), from ``app_wheel`` (a
        path; with ``app_wheel_data``, the wheel's bytes, only its name). On failure the unfinished directory is
        removed."""
        remove_tree(self.dir)  # the same id without a manifest: a run died half way
        try:
            os.makedirs(os.path.join(self.dir, "dist"), mode=0o755, exist_ok=True)
            wheel = os.path.join(self.dir, "dist", os.path.basename(app_wheel))
            if app_wheel_data is None:
                shutil.copy2(app_wheel, wheel)
            else:
                write_atomic(wheel, app_wheel_data, 0o644)
            write_atomic(os.path.join(self.dir, "requirements.txt"), self.requirements, 0o644)
            chown_tree(self.dir, uid, gid)
            if self.installer == "uv":
                uv = install_uv(
                    find_wheel(wheelhouse_dir, "uv"), os.path.join(self.app.tools, "uv-" + uv_version), uv_version
                )
                steps = uv_steps(uv, self.python, self.path, wheelhouse_dir)
            else:
                steps = pip_steps(self.python, self.path, wheelhouse_dir)
            for step, argv in steps:
                self.sandboxed(step, argv)
            normalise(os.path.join(self.dir, "venv"))
        except BaseException:
            remove_tree(self.dir)
            raise
        return self.dir

    def build_step(self, command, unit_text, extra_env=None):
        """The app's own build step (collectstatic, compilemessages): as the build identity, from the release
        with its venv and the unit's environment and credentials, writing only inside the release."""
        properties = [p for p in as_app(unit_text, self.path, "build", extra_env) if not p.startswith(NOT_FOR_BUILDS)]
        self.sandboxed("build step", ["/bin/sh", "-c", command], properties)

    def seal(self, uid=0, gid=0):
        """From now on nobody but root (or ``uid``) writes into the release. Refused, naming them, when the build
        left anything root must not open or follow (see ``unsafe_entries``)."""
        unsafe = unsafe_entries(self.dir)
        if unsafe:
            raise BuildFailed("seal", "the build left what a release may not hold: " + ", ".join(unsafe[:10]))
        chown_tree(self.dir, uid, gid)
        make_readonly(self.dir)

    def import_check(self, module, unit_text):
        """Import ``module`` from the new venv as the app's unit would run it: its user, environment,
        credentials, working directory and sandbox (release code never runs as root)."""
        python = os.path.join(self.dir, "venv", "bin", "python")
        properties = as_app(unit_text, self.dir, "import_check", {"PYTHONDONTWRITEBYTECODE": "1"})
        unit = unit_name("asgi-import-check", self.app.name, os.getpid())
        argv = systemd_run(properties, [python, "-I", "-c", IMPORT_CHECK, module], unit=unit)
        began = self.clock()
        rc, out, err = self.run(argv)
        self.timings["import check"] = round(self.clock() - began, 2)
        if rc != 0:
            said = redact((out or "") + (err or ""), secret_values(unit_text))
            raise BuildFailed("import check", import_failure(module, said, rc, unit))

    def finish(self):
        """From this moment the release exists."""
        write_atomic(os.path.join(self.dir, "release.json"), json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")


# A build step must not take over the app's own directories (systemd would chown them to the build
# identity) nor write anywhere but the release.
NOT_FOR_BUILDS = (
    "User=",
    "Group=",
    "StateDirectory=",
    "CacheDirectory=",
    "LogsDirectory=",
    "ReadWritePaths=",
    "UMask=",
)

# Run by the import check in the release's venv: imports the app's module and, when that fails, says
# whether the app's code or its settings failed (a missing variable, credential or setting), with no
# setting's value in what it prints.
IMPORT_CHECK = r"""
import importlib, json, os, sys, traceback
try:
    importlib.import_module(sys.argv[1])
except BaseException as exc:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    in_environ = bool(last) and last.filename.endswith(("os.py", "<frozen os>")) and last.name == "__getitem__"
    credentials = os.environ.get("CREDENTIALS_DIRECTORY") or "\0"
    settings = (
        type(exc).__name__ in ("ImproperlyConfigured", "ValidationError", "SettingsError")
        or (isinstance(exc, KeyError) and in_environ)
        or (isinstance(exc, OSError) and str(getattr(exc, "filename", "")).startswith(credentials))
    )
    if hasattr(exc, "errors") and callable(exc.errors):
        try:
            error = "; ".join(".".join(map(str, e.get("loc", ()))) + ": " + str(e.get("msg", "")) for e in exc.errors())
        except Exception:
            error = str(exc).splitlines()[0]
    elif isinstance(exc, KeyError) and in_environ:
        error = "environment variable %s is not set" % exc.args[0]
    else:
        error = str(exc)
    if not settings:
        traceback.print_exc()
    line = {"kind": "settings" if settings else "code", "error": "%s: %s" % (type(exc).__name__, error)}
    print("asgi.deploy import check: " + json.dumps(line), file=sys.stderr, flush=True)
    sys.exit(3)
"""


# scheme://user:password@host - a password in a URL (a database DSN) whatever holds it.
URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)")


def secret_values(unit_text):
    """The values of the secrets a unit hands the app (its credentials' files, its root-only environment file):
    root reads them to keep them out of what it says."""
    values = []
    for line in unit_text.splitlines():
        key, _sep, value = line.partition("=")
        paths = []
        if key == "LoadCredential" and ":" in value:
            paths.append(value.split(":", 1)[1])
        elif key == "EnvironmentFile":
            paths.append(value.lstrip("-"))
        for path in paths:
            data = read_regular(path)
            if data is None:
                continue
            text = data.decode("utf-8", "replace")
            if key == "EnvironmentFile":
                values += [entry.partition("=")[2].strip().strip("'\"") for entry in text.splitlines()]
            else:
                values.append(text)
    return [v for value in values for v in (value, *value.splitlines()) if len(v.strip()) >= 4]


def redact(text, secrets=()):
    """``text`` with every secret's value and any password in a URL replaced by ***."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)


def import_failure(module, output, rc=1, unit=""):
    """The import check's failure, the exception first: the app's settings or its code; or that the check itself
    could not start (systemd's exit codes, 200 and up, say so with no output)."""
    if not output.strip() and rc >= 200:
        return (
            f"the import check of {module} could not start (systemd exit code {rc}, see systemd.exec(5)); "
            f"its journal: journalctl -u {unit}"
        )
    verdict = {}
    for line in reversed(output.splitlines()):
        if line.startswith(IMPORT_PROBE):
            with contextlib.suppress(ValueError):
                verdict = json.loads(line[len(IMPORT_PROBE) :])
            break
    if verdict.get("kind") == "settings":
        return (
            f"importing {module} failed in the app's settings: {verdict['error']}. Give it with service_environment "
            "or service_secrets (the import check runs with the unit's environment and credentials)"
        )
    error = verdict.get("error") or last_line(output) or "no output"
    trace = tail("\n".join(line for line in output.splitlines() if not line.startswith(IMPORT_PROBE)), lines=15)
    return f"importing {module} failed in the app's code: {error}\n{trace}".rstrip()


def normalise(venv):
    """What an installer writes that differs from host to host for the same release: uv's cache record (an
    install time), and its line in the distribution's RECORD. Without them the same release is the same bytes
    everywhere (see tree_digest), and RECORD still lists exactly the files installed."""
    for root, _dirs, files in os.walk(venv):
        if root.endswith(".dist-info") and "uv_cache.json" in files:
            os.unlink(os.path.join(root, "uv_cache.json"))
            record = os.path.join(root, "RECORD")
            data = read_regular(record)
            if data is not None:
                entry = os.path.basename(root) + "/uv_cache.json,"
                lines = data.decode("utf-8").splitlines(keepends=True)
                write_atomic(record, "".join(line for line in lines if not line.startswith(entry)), 0o644)


def compare_manifest(recorded, lines):
    """``{modified, added, missing}`` paths between a recorded manifest and the lines of a tree's digest now."""
    before = {line.split(" ", 3)[3]: line for line in recorded if line.count(" ") >= 3}
    now = {line.split(" ", 3)[3]: line for line in lines}
    return {
        "modified": sorted(path for path in before.keys() & now.keys() if before[path] != now[path]),
        "added": sorted(now.keys() - before.keys()),
        "missing": sorted(before.keys() - now.keys()),
    }


def tree_digest(path, skip=(MANIFEST_FILE,)):
    """(digest, manifest lines): every file's path, type, mode and sha256 under ``path`` (links by target)."""
    lines = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel in skip:
                continue
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                lines.append(
                    f"l {oct(stat.S_IMODE(mode))} {hashlib.sha256(os.readlink(full).encode()).hexdigest()} {rel}"
                )
            else:
                data = read_regular(full)
                if data is None:
                    raise BuildFailed("digest", f"{rel} is not a regular file: a release holds files, dirs and links")
                lines.append(f"f {oct(stat.S_IMODE(mode))} {hashlib.sha256(data).hexdigest()} {rel}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), lines


def kept_ids(app, protect=()):
    # What a link names (current, previous, each slot's: a draining slot still runs from its release), and a lock's.
    return {link_target(app.link(name)) for name in ("current", "previous", *SLOTS)} | set(protect)


def prune(app, keep, protect=(), dry_run=False, wheelhouses=()):
    """Remove unfinished releases, all but the newest ``keep`` finished ones, wheelhouses no kept release uses,
    staging leftovers and old tools. The targets of current, previous and the slots' links, and ``protect`` (a release a
    lock names), are always kept, and the ``wheelhouses`` named (the one a build is about to use)."""
    protected = kept_ids(app, protect) - {""}
    finished, unfinished = list_releases(app)
    newest_first = list(reversed(finished))
    kept = newest_first[:keep] + [r for r in newest_first[keep:] if r["id"] in protected]
    removed = [r["id"] for r in newest_first[keep:] if r["id"] not in protected]
    removed += [name for name in unfinished if name not in protected]
    used = {r["wheelhouse_key"] for r in kept} | set(wheelhouses)
    houses = [h for h in _entries(app.wheels) if h not in used]
    leftovers = [
        os.path.join(d, n)
        for d in (app.releases, app.wheels)
        for n in _entries(d, hidden=True)
        if n.startswith(".staging-")
    ]
    if not dry_run:
        for name in removed:
            remove_tree(app.release_dir(name))
        for house in houses:
            remove_tree(os.path.join(app.wheels, house))
        for path in leftovers:
            remove_tree(path)
    return {
        "removed": sorted(removed),
        "wheelhouses_removed": houses,
        "leftovers_removed": sorted(os.path.basename(p) for p in leftovers),
        "kept": sorted(r["id"] for r in kept),
    }


def _entries(directory, hidden=False):
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [n for n in names if hidden or not n.startswith(".")]


def tree_mb(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total // (1024 * 1024)


def space(app, state, release, keep, min_free_mb=0, protect=()):
    """Whether ``release`` fits on the app's file system once pruning to ``keep`` (before the build) has run.

    The estimate is the size of the newest kept release plus a quarter (a release of the same app weighs
    about the same), at least ``min_free_mb``; a release already built needs nothing."""
    kept = state.get("kept", [])
    if any(r["id"] == release for r in kept):
        needed = 0
    else:
        newest = tree_mb(app.release_dir(kept[-1]["id"])) if kept else 0
        needed = max(int(min_free_mb), newest + newest // 4)
    plan = prune(app, max(keep - 1, 1), protect=[*protect, release], dry_run=True)
    reclaimable = sum(tree_mb(app.release_dir(name)) for name in plan["removed"])
    reclaimable += sum(tree_mb(os.path.join(app.wheels, name)) for name in plan["wheelhouses_removed"])
    free = state.get("free_mb", 0)
    return {"free_mb": free, "needed_mb": needed, "reclaimable_mb": reclaimable, "fits": needed <= free + reclaimable}


def manifest_exists(app, release_id):
    return read_manifest(app, release_id) is not None


def ensure_user(run, user, group, comment, home="/nonexistent"):
    """An unprivileged system user and group, created when missing. True when created."""
    import grp
    import pwd

    created = False
    try:
        grp.getgrnam(group)
    except KeyError:
        check(run, ["groupadd", "--system", group], "groupadd")
        created = True
    try:
        pwd.getpwnam(user)
    except KeyError:
        argv = ["useradd", "--system", "--gid", group, "--shell", "/usr/sbin/nologin", "--home-dir", home]
        check(run, [*argv, "--no-create-home", "--comment", comment, user], "useradd")
        created = True
    return created


def read_venv_manifest(app, release_id):
    return read_text(os.path.join(app.release_dir(release_id), MANIFEST_FILE)).splitlines()
