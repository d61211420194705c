# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Static files that survive a deploy (asset bridging).

While a handover runs, both releases serve one socket, and after it, pages a browser or a cache keeps go on asking
for the old release's hashed files. So the front door serves ``<base>/<app>/assets/current``: a directory made for
each handover, before the new release starts serving, holding the new release's static files and, under names the
new release does not have, the hashed files (``name.<hash>.ext``, ``name-<hash>.ext``) of every release kept on the
host. A name is never overwritten; files go with the releases they came from (pruning a release prunes them from
the next directory made).

Root copies from sealed releases only: every file is opened with O_NOFOLLOW and must be a regular file, links are
skipped, and what is written is new files (O_EXCL) in a root-only directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import stat

from ansible_collections.asgi.deploy.plugins.module_utils.host import list_releases, point_link

HASHED = re.compile(r"[.-]([0-9a-f]{8,}|[A-Za-z0-9_]{8})\.[A-Za-z0-9]+(\.(gz|br))?$")
CHUNK = 1 << 20


class AssetsFailed(Exception):
    """A release's static files cannot be bridged."""


def assets_root(app):
    return os.path.join(app.root, "assets")


def static_source(app, release_id, pattern):
    """The static directory of release ``release_id`` (see ``find_static``)."""
    return find_static(app.release_dir(release_id), pattern, f"release {release_id}")


def find_static(release_dir, pattern, what="the release"):
    """A release's static directory: ``pattern`` (a path in the release, ``*`` allowed, e.g.
    ``venv/lib/python3*/site-packages/staticfiles``) must name exactly one directory in it, reached through no link."""
    release = os.path.realpath(release_dir)
    found = sorted(glob.glob(os.path.join(glob.escape(release), pattern)))
    dirs = [path for path in found if os.path.isdir(path) and os.path.realpath(path) == os.path.normpath(path)]
    if len(dirs) != 1 or not dirs[0].startswith(release + os.sep):
        raise AssetsFailed(
            f"{what} has {'no' if not dirs else len(dirs)} directories matching {pattern!r} (asgi_static_dir must "
            "name one directory of the release, e.g. the one collectstatic fills)"
        )
    return dirs[0]


def files_of(top):
    """Relative paths of the regular files under ``top``; links and anything else are left out."""
    found = []
    stack = [""]
    while stack:
        relative = stack.pop()
        with os.scandir(os.path.join(top, relative)) as entries:
            for entry in entries:
                path = os.path.join(relative, entry.name)
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found.append(path)
    return sorted(found)


def copy_file(source, target):
    """Copy a regular file, never through a link, into a new file."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return False
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            while True:
                chunk = os.read(src, CHUNK)
                if not chunk:
                    break
                os.write(dst, chunk)
            os.fchmod(dst, 0o644)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


def bridge(app, release_id, pattern):
    """Make the assets directory of a handover to ``release_id`` and make it current. Returns (made, before): the
    new directory's name and the one current named before ('' when none), for ``unbridge``."""
    root = assets_root(app)
    os.makedirs(root, mode=0o755, exist_ok=True)
    name = f"{release_id}.{secrets.token_hex(4)}"
    staging = os.path.join(root, f".{name}.tmp")
    taken = set()
    others = [r["id"] for r in reversed(list_releases(app)[0]) if r["id"] != release_id]
    try:
        os.mkdir(staging, 0o755)
        for source_id in [release_id, *others]:
            try:
                source = static_source(app, source_id, pattern)
            except AssetsFailed:
                if source_id == release_id:
                    raise
                continue  # an older release without static files has nothing to bridge
            for relative in files_of(source):
                if relative in taken or (source_id != release_id and not HASHED.search(relative)):
                    continue
                if copy_file(os.path.join(source, relative), os.path.join(staging, relative)):
                    taken.add(relative)
        os.rename(staging, os.path.join(root, name))
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    current = os.path.join(root, "current")
    try:
        before = os.readlink(current)
    except OSError:
        before = ""
    point_link(current, name)
    return name, before


def unbridge(app, made, before):
    """Back to the assets directory that was current before ``bridge`` made ``made``."""
    root = assets_root(app)
    point_link(os.path.join(root, "current"), before)
    if made:
        shutil.rmtree(os.path.join(root, made), ignore_errors=True)


def prune(app):
    """Every assets directory but the current one goes (a failed run's leftovers included)."""
    root = assets_root(app)
    try:
        keep = os.readlink(os.path.join(root, "current"))
        names = os.listdir(root)
    except OSError:
        return []
    gone = []
    for name in names:
        path = os.path.join(root, name)
        if name in ("current", keep) or os.path.islink(path):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(path)
            gone.append(name)
    return gone
