# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Settings sets: everything an instance is started with besides its release, immutable, by digest.

``/etc/asgi-deploy/<app>/settings/<id>/`` holds ``gunicorn.conf.py``, the
environment file, secrets and the unit files (``units/``) that reference them.
A set is written into a staging directory, validated, and renamed into place:
it is there whole or not at all. Main and next each run the set their unit
names, so a new set can be tried on next while main keeps its own.

A set's id is keyed: an HMAC, with a root-only key of the app on the host, of
the digest of the options that shape it (computed on the controller, secrets
left out) and of the secrets themselves. The id is in unit files, process
environments and the audit log; keyed, it says nothing about a secret, while a
changed secret still makes a new set and a handover.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import re
import secrets as random
import shutil
import tempfile

from ansible_collections.asgi.deploy.plugins.module_utils.build import ensure_user
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text, record_made, remove_tree, write_atomic
from ansible_collections.asgi.deploy.plugins.module_utils.process import systemd_run

DIGEST = re.compile(r"^[0-9a-f]{16,64}$")
# systemd-analyze verify checks that ExecStart exists (the release provides it, and may not be built yet), and that
# the socket's service is there (<app>.service, the link to the live slot, is made by the first handover).
NOT_YET_THERE = re.compile(
    r"Command .* is not executable|Failed to create .* Invalid argument$|Unit .*\.service not found"
    r"|service \S+\.service not loaded, socket cannot be started"
)
# systemd only warns about a misspelt or malformed directive (and exits 0): it would run without it.
IGNORED = re.compile(r"ignoring|Unknown (key|section)|Failed to parse", re.IGNORECASE)


class SettingsInvalid(Exception):
    pass


def check_files(files):
    for name, spec in files.items():
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or not all(parts):
            raise SettingsInvalid(f"bad file name in the settings set: {name!r}")
        if not isinstance(spec.get("content"), str):
            raise SettingsInvalid(f"file {name} of the settings set has no content")


def same_set(directory, files):
    """True when ``directory`` holds exactly ``files`` with the same contents."""
    present = set()
    for root, _dirs, names in os.walk(directory):
        for name in names:
            present.add(os.path.relpath(os.path.join(root, name), directory))
    if present != set(files):
        return False
    return all(
        read_text(os.path.join(directory, name), default=None) == spec["content"] for name, spec in files.items()
    )


class KeyDamaged(Exception):
    """The app's settings key is there but cannot be used (empty, not hex, unreadable)."""


def settings_id(app, public, secrets, create=False, renew=False):
    """The id of the set shaped by ``public`` (the controller's digest of the options, secrets left out) and
    ``secrets``, keyed with the app's key on this host; '' when there is no key yet and ``create`` is false
    (then no set was ever made here with it: the host needs new settings anyway). A damaged key raises KeyDamaged,
    unless ``renew``: then a new key replaces it (a new id: the host is handed over)."""
    try:
        key = read_key(app)
    except KeyDamaged:
        if not renew:
            raise
        key = random.token_bytes(32)
        write_atomic(app.settings_key, key.hex(), 0o600)
    if key is None:
        if not create:
            return ""
        key = random.token_bytes(32)
        os.makedirs(app.config, mode=0o755, exist_ok=True)
        try:
            fd = os.open(app.settings_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another run: use that one
            key = read_key(app)
        else:
            try:
                os.write(fd, key.hex().encode())
            finally:
                os.close(fd)
    message = public + "\0" + json.dumps(sorted((str(k), str(v)) for k, v in (secrets or {}).items()))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def read_key(app):
    """The key, or None when there is none yet; KeyDamaged when it is there but cannot be used."""
    try:
        text = read_text(app.settings_key, default=None)
    except OSError as exc:
        raise KeyDamaged(f"{app.settings_key} cannot be read ({exc.strerror})") from None
    if text is None:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise KeyDamaged(f"{app.settings_key} is not a key (not hex)") from None
    if len(key) < 16:
        raise KeyDamaged(f"{app.settings_key} is {'empty' if not key else 'too short'}")
    return key


def key_state(app):
    """'ok', 'missing', or what is wrong with the key (for the state read and status)."""
    try:
        return "ok" if read_key(app) is not None else "missing"
    except KeyDamaged as damaged:
        return str(damaged)


def validate(directory, files, run, verify=True):
    problems = []
    for name, spec in files.items():
        if name.endswith(".py"):
            try:
                compile(spec["content"], name, "exec")  # syntax only: nothing is executed
            except SyntaxError as exc:
                problems.append(f"{name}: {exc}")
    units = sorted(os.path.join(directory, n) for n in files if n.startswith("units/"))
    if verify and units and shutil.which("systemd-analyze"):
        rc, out, err = run(["systemd-analyze", "verify", "--man=no", *units])
        lines = [line for line in (err + out).splitlines() if line.strip() and not NOT_YET_THERE.search(line)]
        problems += lines if rc != 0 else [line for line in lines if IGNORED.search(line)]
    if problems:
        raise SettingsInvalid("the settings set is not valid:\n" + "\n".join(problems))


def credential_probe(user, group, run):
    """A check that this host's systemd can hand the service user a credential, as the units will
    (LoadCredential=, PrivateUsers=): where it cannot, the app would get PermissionError at its first
    request; this makes it an error before the switch."""

    def probe(directory, names):
        source = os.path.join(directory, "credentials", sorted(names)[0])
        properties = ["User=" + user, "Group=" + group, "PrivateUsers=yes", "LoadCredential=probe:" + source]
        rc, out, err = run(systemd_run(properties, ["/bin/sh", "-c", 'test -r "$CREDENTIALS_DIRECTORY/probe"']))
        if rc != 0:
            raise SettingsInvalid(
                f"this host's systemd cannot hand a credential to {user} (LoadCredential=, "
                f"{(err or out).strip() or 'the file is not readable in the service'}): in a "
                "container, /run must be a shared mount (mount --make-shared /run, as systemd's CONTAINER_INTERFACE "
                "asks); or set service_secrets_via: environment_file"
            )

    return probe


def normalised(given):
    """The files of a set as the modules take them: ``{name: content}`` or ``{name: {content, mode, secret}}``."""
    files = {}
    for name, spec in given.items():
        spec = spec if isinstance(spec, dict) else {"content": spec}
        files[name] = {
            "content": str(spec.get("content", "")),
            "mode": str(spec.get("mode", "0640")),
            "secret": bool(spec.get("secret", False)),
        }
    return files


def write_set(app, digest, files, user, group, run, keep=3, verify=True):
    """Create the service user, stage the set (validated), install the console, prune unused sets:
    (changed, user created, pruned). The caller holds the host flock and the run's lock."""
    groups_before = group_exists(group)
    created = ensure_user(run, user, group, f"{app.name} (asgi.deploy)")
    probe = credential_probe(user, group, run)
    gid = grp.getgrnam(group).gr_gid
    changed = stage(app, digest, files, run, gid=gid, verify=verify, probe=probe)
    changed |= install_console(app)
    record_made(
        app,
        dirs=[app.root, app.config, *systemd_directories(files)],
        users=[user] if created else [],
        groups=[group] if created and not groups_before else [],
        runs_as=[user],
    )
    return changed, created, prune(app, keep, also_keep=[digest])


def group_exists(group):
    try:
        grp.getgrnam(group)
    except KeyError:
        return False
    return True


DIRECTORIES = {"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache", "LogsDirectory": "/var/log"}


def systemd_directories(files):
    """The directories the set's units have systemd make for the app (StateDirectory= and the like)."""
    found = set()
    for name, spec in files.items():
        if name.startswith("units/") and name.endswith(".service"):
            for line in spec["content"].splitlines():
                key, _sep, value = line.partition("=")
                if key.strip() in DIRECTORIES:
                    found.update(os.path.join(DIRECTORIES[key.strip()], part) for part in value.split())
    return sorted(found)


def stage(app, digest, files, run, gid=0, verify=True, check_mode=False, probe=None):
    """Write the settings set ``digest``. Returns True when it had to be written."""
    if not DIGEST.match(digest):
        raise SettingsInvalid(f"settings digest {digest!r} is not a hex digest")
    check_files(files)
    target = app.settings_dir(digest)
    if os.path.isdir(target) and same_set(target, files):
        return False
    if check_mode:
        return True
    os.makedirs(app.settings_root, mode=0o755, exist_ok=True)
    os.chmod(app.config, 0o755)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=app.settings_root)
    try:
        os.chmod(staging, 0o750)
        os.chown(staging, 0, gid)
        for name, spec in sorted(files.items()):
            path = os.path.join(staging, name)
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent)
                # Secrets are for systemd (root) alone; the rest the service group may read.
                os.chmod(parent, 0o700 if spec.get("secret") else 0o750)
                os.chown(parent, 0, 0 if spec.get("secret") else gid)
            mode = 0o600 if spec.get("secret") else int(spec.get("mode", "0640"), 8)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            try:
                os.write(fd, spec["content"].encode("utf-8"))
                os.fchmod(fd, mode)
                os.fchown(fd, 0, 0 if spec.get("secret") else gid)
            finally:
                os.close(fd)
        validate(staging, files, run, verify)
        credentials = [name.split("/", 1)[1] for name in files if name.startswith("credentials/")]
        if credentials and probe:
            probe(staging, credentials)
        if os.path.isdir(target):
            # Same digest, other content (edited by hand): replace it whole.
            aside = tempfile.mkdtemp(prefix=".replaced-", dir=app.settings_root)
            os.rename(target, os.path.join(aside, "old"))
            os.rename(staging, target)
            remove_tree(aside)
        else:
            os.rename(staging, target)
    finally:
        remove_tree(staging)
    return True


CONSOLE = """#!/bin/sh
# asgi-{app}: python, a shell or a command, run as {app} runs - its user, environment, secrets and
# sandbox, from its live release (asgi-{app} --help). Written by asgi.deploy.
set -eu
settings=$(cat {applied} 2>/dev/null) || {{ echo "asgi-{app}: {app} is not deployed on this host" >&2; exit 1; }}
ASGI_CONSOLE_APP={app} ASGI_CONSOLE_ROOT={root} exec /usr/bin/python3 {settings_root}/"$settings"/asgi_console.py "$@"
"""


def install_console(app, check_mode=False):
    """The ``asgi-<app>`` command on the host's PATH; True when it had to be written."""
    wanted = CONSOLE.format(app=app.name, applied=app.applied, root=app.root, settings_root=app.settings_root)
    if read_text(app.console, default=None) == wanted:
        return False
    if not check_mode:
        write_atomic(app.console, wanted, 0o755)
    return True


def in_use(app):
    """Digests referenced by the installed units or recorded as applied."""
    used = {read_text(app.applied).strip()}
    pattern = re.compile(re.escape(app.settings_root) + r"/([0-9a-f]+)/")
    for unit in app.units.values():
        used.update(pattern.findall(read_text(app.unit_path(unit))))
    return used - {""}


def prune(app, keep, also_keep=(), check_mode=False):
    """Remove settings sets nothing uses, beyond the ``keep`` newest; staging leftovers always."""
    try:
        entries = os.listdir(app.settings_root)
    except FileNotFoundError:
        return []
    protected = in_use(app) | set(also_keep)
    sets = []
    removed = []
    for name in entries:
        path = os.path.join(app.settings_root, name)
        if name.startswith("."):
            removed.append(name)
        elif os.path.isdir(path):
            sets.append((os.stat(path).st_mtime, name))
    sets.sort(reverse=True)
    removed += [pair[1] for pair in sets[keep:] if pair[1] not in protected]
    if not check_mode:
        for name in removed:
            remove_tree(os.path.join(app.settings_root, name))
    return sorted(removed)
