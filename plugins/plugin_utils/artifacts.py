# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""A release's artifacts, built once on the controller.

``identify`` gives the release: its id (the same on every host and in every
``serial`` batch: it derives from the app wheel and the lock), the app wheel,
and the requirements the hosts install. ``wheelhouse`` gives one offline
wheelhouse per target Python/platform. Everything lands in a content-addressed
cache, so a second call for the same inputs builds nothing. Calls from parallel
workers serialise on a lock file in the cache.

Needs only the standard library, ``pip`` (for ``pip download``) and, to build
the app from source, ``uv``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import csv
import fcntl
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from ansible_collections.asgi.deploy.plugins.module_utils.build import read_sums
from ansible_collections.asgi.deploy.plugins.plugin_utils.pins import (
    UVICORN_RANGE,
    UVICORN_TESTED,
    BadInput,
    check_server_stack,
    describe,
    export_lock,
    platform_tags,
    read_pins,
    requirement_lines,
    select,
)

try:
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version
except ImportError:  # pins.read_pins says what is missing, before anything here needs it
    pass

VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
__all__ = ["UVICORN_RANGE", "UVICORN_TESTED", "BadInput", "identify", "shipment", "wheelhouse"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def verify_wheel(wheel: Path) -> None:
    """A wheel whose name is a wheel's, whose zip is sound and whose every file matches its RECORD."""
    try:
        parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise BadInput(f"app wheel {wheel}: {exc}") from None
    try:
        with zipfile.ZipFile(wheel) as archive:
            bad = archive.testzip()
            if bad:
                raise BadInput(f"app wheel {wheel} is corrupt: {bad} fails its CRC check")
            records = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
            if len(records) != 1:
                raise BadInput(f"app wheel {wheel} has no RECORD")
            for row in csv.reader(archive.read(records[0]).decode().splitlines()):
                if not row or not row[1]:
                    continue
                algorithm, expected = row[1].split("=", 1)
                digest = hashlib.new(algorithm, archive.read(row[0])).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != expected:
                    raise BadInput(f"app wheel {wheel} is corrupt: {row[0]} does not match its RECORD hash")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise BadInput(f"app wheel {wheel} is corrupt: {exc}") from None


def same_version(given: str, built: str) -> bool:
    try:
        return Version(given) == Version(built)
    except InvalidVersion:
        return given == built


def wheel_metadata(wheel: Path) -> tuple[str, str]:
    """Return (normalized name, version) from a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = archive.read(meta).decode().split("\n\n", 1)[0]
    fields = dict(line.split(": ", 1) for line in headers.splitlines() if ": " in line)
    return canonicalize_name(fields["Name"]), fields["Version"]


# Never part of what a wheel is built from.
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".tox"}


def source_digest(source: Path) -> str:
    """Digest of every file under the app source that a build could read."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root, name)
            if path.is_file() and not name.endswith((".pyc", ".pyo")):
                digest.update(f"{path.relative_to(source).as_posix()}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def build_app_wheel(source: Path, out: Path, build_env: dict | None = None) -> Path:
    """Build the app's wheel, or find the one built before from the same source."""
    if not (source / "pyproject.toml").is_file():
        raise BadInput(f"app source {source} has no pyproject.toml")
    # Kept by the digest of the source: a repeat deploy of unchanged source
    # reuses its wheel (no build; the same bytes, so the same release id, even
    # if the build backend moved on), and other source never shares its path.
    home = out / f"source-{source_digest(source)[:16]}"
    built_before = sorted(home.glob("*.whl")) if home.is_dir() else []
    if len(built_before) == 1:
        return built_before[0]
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800"), **(build_env or {})}
        result = subprocess.run(
            [uv, "build", "--wheel", "--quiet", "--out-dir", tmp, str(source)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if result.returncode != 0:
            raise BadInput(
                f"cannot build the app wheel from {source}:\n{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        [built] = Path(tmp).glob("*.whl")
        out.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
        shutil.move(built, staged / built.name)
        shutil.rmtree(home, ignore_errors=True)
        staged.rename(home)  # the wheel appears whole or not at all
    return home / built.name


def git_state(source: Path | None) -> dict:
    """The commit the app source is at, and whether its working tree differs from it (``git describe
    --dirty`` for the source directory only); unknown when the source is not a tracked git checkout."""
    unknown = {"git_sha": "unknown", "git_describe": "", "dirty": False, "commit_time": ""}
    if source is None:
        return unknown

    def git(*args):
        result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, check=False)
        return result.returncode, result.stdout.strip()

    rc, sha = git("rev-parse", "HEAD")
    if rc != 0 or git("check-ignore", "-q", ".")[0] == 0 or not git("ls-files", "--", ".")[1]:
        return unknown
    changes = git("status", "--porcelain", "--untracked-files=normal", "--", ".")[1]
    described = git("describe", "--always", "--tags")[1]
    return {
        "git_sha": sha,
        "git_describe": described + ("-dirty" if changes else ""),
        "dirty": bool(changes),
        # When the commit was made: a deploy's lead time starts there.
        "commit_time": git("show", "-s", "--format=%cI", "HEAD")[1],
    }


def deterministic_tar(directory: Path, tarball: Path, names: list[str] | None = None) -> None:
    """A tar of the files ``names`` (all) of ``directory``, the same bytes for the same files."""
    tmp = tarball.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for name in sorted(names if names is not None else (p.name for p in directory.iterdir())):
            path = directory / name
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with path.open("rb") as stream:
                tar.addfile(info, stream)
        end = tar.offset + 2 * tarfile.BLOCKSIZE
    # Up to the end-of-archive marker: the padding to a 10 KiB record after it is bytes shipped for nothing.
    os.truncate(tmp, end)
    tmp.replace(tarball)


@contextlib.contextmanager
def locked(cache: Path):
    """One builder at a time per cache (forks of one run, or two runs, share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pip_download(pins: list[dict], options: list, target: dict, into: Path, requirements: Path) -> list[str]:
    """The ``pip download`` command line for the target's wheels, from where the lock says they come from."""
    python = target["python"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    cmd += ["--no-deps", "--only-binary=:all:", "--require-hashes", "--implementation", "cp"]
    cmd += ["--python-version", python, "--abi", "cp" + python.replace(".", ""), "--abi", "abi3", "--abi", "none"]
    for tag in platform_tags(target["machine"], target["glibc"]):
        cmd += ["--platform", tag]
    for flag, value in options:
        cmd += [flag, value]
    return [*cmd, "-d", str(into), "-r", str(requirements)]


def fetch_wheel(pin: dict, into: Path, lockfile: str | None = None) -> Path:
    """Fetch the wheel a pylock.toml records for ``pin`` from its URL (or path, relative to the lock) and check it
    against the lock's hash."""
    wheel = pin["wheel"]
    where = wheel["url"] or wheel["path"]
    target = into / wheel["name"]
    digest = hashlib.sha256()
    try:
        if wheel["url"]:
            source = urllib.request.urlopen(wheel["url"], timeout=120)  # noqa: S310 (the lock's own URL, hash-checked)
        else:
            base = Path(lockfile).parent if lockfile else Path.cwd()
            source = (base / wheel["path"]).open("rb")
        with source, target.open("wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise BadInput(f"cannot fetch {pin['name']} {pin['version']} from {where}: {exc}") from None
    if digest.hexdigest() != wheel["sha256"]:
        target.unlink()
        raise BadInput(f"{wheel['name']} from {where} does not match the lock's sha256 (tampered?)")
    return target


def wheelhouse_key(lock_sha: str, tools: list[dict], target: dict, pins: list[dict]) -> str:
    chosen = sha256_text(requirement_lines(pins))
    parts = [lock_sha, json.dumps(tools, sort_keys=True), target["python"], target["machine"], target["glibc"], chosen]
    return sha256_text("|".join(parts))[:16]


def build_wheelhouse(lock: dict, tools: list[dict], target: dict, cache: Path, lock_sha: str, run: str = "") -> dict:
    """The offline wheelhouse for one target: the lock's pins whose markers hold there, and the tools. One that is
    there already is checked against the lock once per run (``run``), not once per host."""
    pins = select(lock, target)
    key = wheelhouse_key(lock_sha, tools, target, pins)
    home = cache / "wheelhouses" / key
    tarball = home.with_suffix(".tar")
    if tarball.is_file() and (home / "SHA256SUMS").is_file():
        checked = home.with_suffix(".checked")
        if not run or not checked.is_file() or checked.read_text() != run:
            verify_wheelhouse(home, pins + tools)
            checked.write_text(run)
        return describe_wheelhouse(key, home, tarball, pins, built=False)
    staging = Path(tempfile.mkdtemp(prefix=f"wheelhouse-{key}-", dir=cache))
    # A pylock.toml says where each wheel is (a private index's URL, a path): fetched from there, hash checked.
    direct = [pin for pin in pins if (pin.get("wheel") or {}).get("url") or (pin.get("wheel") or {}).get("path")]
    rest = [pin for pin in pins if pin not in direct]
    try:
        reqs = staging / "requirements.txt"
        reqs.write_text(requirement_lines(rest + tools))
        wheels = staging / "wheels"
        wheels.mkdir()
        for pin in direct:
            fetch_wheel(pin, wheels, lock.get("path"))
        argv = pip_download(rest, lock["options"], target, wheels, reqs) if rest + tools else ["true"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BadInput(
                f"cannot assemble the wheelhouse for {describe(target)} (glibc {target['glibc']}) from the lock:\n"
                f"{result.stderr.strip()[-2000:]}"
            )
        (wheels / "SHA256SUMS").write_text(
            "".join(f"{sha256_file(w)}  {w.name}\n" for w in sorted(wheels.glob("*.whl")))
        )
        verify_wheelhouse(wheels, pins + tools)
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        wheels.rename(home)
        deterministic_tar(home, tarball)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return describe_wheelhouse(key, home, tarball, pins, built=True)


def verify_wheelhouse(home: Path, reqs: list[dict]) -> None:
    """Every wheel must hash to a value the lock allows for its package."""
    allowed = {h for r in reqs for h in r["hashes"]}
    listed = read_sums(home)
    for wheel in sorted(home.glob("*.whl")):
        digest = sha256_file(wheel)
        if digest not in allowed or listed.get(wheel.name) != digest:
            raise BadInput(f"wheel {wheel} does not match the hashes in the lockfile (tampered?)")


def describe_wheelhouse(key: str, home: Path, tarball: Path, pins: list[dict], built: bool) -> dict:
    return {
        "warnings": uvicorn_warnings(home, pins),
        "key": key,
        "requirements": requirement_lines(pins),
        "path": str(home),
        "tarball": str(tarball),
        "sha256": sha256_file(home / "SHA256SUMS"),
        "built": built,
    }


# What the shutdown fix (roles/service/files/asgi_deploy_gunicorn.py) relies on in each uvicorn protocol class:
# a shutdown(self) that reads self.cycle and self.transport, and a self.loop set by the class.
SHUTDOWN_FIX_NEEDS = {
    "uvicorn/protocols/http/h11_impl.py": "H11Protocol",
    "uvicorn/protocols/http/httptools_impl.py": "HttpToolsProtocol",
}


def shutdown_fix_fits(wheel: Path) -> list[str]:
    """Where a uvicorn wheel's HTTP protocols no longer have the shape the shutdown fix patches (none: it fits)."""
    misfits = []
    with zipfile.ZipFile(wheel) as archive:
        for member, name in SHUTDOWN_FIX_NEEDS.items():
            try:
                tree = ast.parse(archive.read(member))
            except KeyError:
                misfits.append(f"{member} is gone")
                continue
            found = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name]
            if not found:
                misfits.append(f"{member} has no class {name}")
                continue
            methods = {n.name: n for n in found[0].body if isinstance(n, ast.FunctionDef)}
            shutdown = methods.get("shutdown")
            if shutdown is None or [a.arg for a in shutdown.args.args] != ["self"] or shutdown.args.vararg:
                misfits.append(f"{name}.shutdown is no longer shutdown(self)")
                continue
            read = {n.attr for n in ast.walk(shutdown) if isinstance(n, ast.Attribute)}
            set_anywhere = {n.attr for n in ast.walk(found[0]) if isinstance(n, ast.Attribute)}
            missing = sorted({"cycle", "transport"} - read) + sorted({"loop"} - set_anywhere)
            if missing:
                misfits.append(f"{name} no longer uses self.{', self.'.join(missing)} as the fix expects")
    return misfits


def uvicorn_warnings(home: Path, pins: list[dict]) -> list[str]:
    """A uvicorn newer than the tested range ships with a warning while the shutdown fix still fits it, and is
    refused once it does not (the fix would patch something else, or nothing)."""
    pinned = next((p["version"] for p in pins if p["name"] == "uvicorn"), None)
    if pinned is None or Version(pinned) <= Version(UVICORN_TESTED[1]):
        return []
    wheel = next(iter(sorted(home.glob(f"uvicorn-{pinned}-*.whl"))), None)
    misfits = shutdown_fix_fits(wheel) if wheel else [f"no uvicorn {pinned} wheel in the wheelhouse"]
    if misfits:
        raise BadInput(
            f"uvicorn {pinned} changed what the collection's graceful-shutdown fix patches ({'; '.join(misfits)}): "
            f"pin 'uvicorn{UVICORN_RANGE[1]}' (tested up to {UVICORN_TESTED[1]}) and relock, until a collection "
            "release supports it"
        )
    return [
        f"uvicorn {pinned} is newer than the collection has tested ({UVICORN_TESTED[0]} to {UVICORN_TESTED[1]}); "
        "its protocols still have the shape the graceful-shutdown fix patches, so it ships"
    ]


def app_cache(cache_dir: str | Path, app_name: str) -> Path:
    return Path(cache_dir).expanduser().resolve() / canonicalize_name(app_name)


def app_wheel(cache: Path, version: str, source: Path | None, wheel: Path | None, build_env=None) -> Path:
    """The app wheel given, or the one built from the source (reused by content), verified."""
    if wheel:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise BadInput(f"app wheel {wheel} does not exist")
        wheel = wheel.resolve()
    else:
        wheel = build_app_wheel(Path(source).resolve(), cache / "dist" / version, build_env)
    verify_wheel(wheel)
    return wheel


def release_record(cache: Path, release: dict) -> tuple[dict, bool]:
    """The controller's record of a release, written once: a release is immutable, its first build's facts stay."""
    record = cache / "releases" / f"{release['release_id']}.json"
    if record.is_file():
        return json.loads(record.read_text()), False
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(release, indent=2, sort_keys=True))
    return release, True


def source_state(source, wheel, allow_dirty):
    """The git state of the app source (exactly one of a source and a wheel); refused when dirty unless allowed."""
    if bool(source) == bool(wheel):
        raise BadInput("give exactly one of an app source directory (asgi_app_source) or an app wheel (asgi_app_wheel)")
    git = git_state(Path(source).resolve() if source else None)
    if git["dirty"] and not allow_dirty:
        raise BadInput(
            f"the app source {source} has changes not committed ({git['git_describe']}): commit them, deploy a clean "
            "checkout of a tag, or give -e asgi_allow_dirty=true (the release records it as dirty)"
        )
    return git


def own_version(cache, source, wheel, build_env=None):
    """The version the app's wheel says it is (its metadata: pyproject.toml's, or git's with hatch-vcs or
    setuptools-scm)."""
    with locked(cache):
        return wheel_metadata(app_wheel(cache, "unversioned", source, wheel, build_env))[1]


def scm_version(described: str) -> str:
    """The version setuptools-scm (and hatch-vcs) gives a commit, from ``git describe --tags --long``: the tag's on
    it, else the next patch version's development release (guess-next-dev): v1.4.0-3-gabc1234 -> 1.4.1.dev3+gabc1234.
    '' when the tag is not a version."""
    found = re.match(r"^v?(\d+(?:\.\d+)*)-(\d+)-g([0-9a-f]+)$", described)
    if not found:
        return ""
    tag, distance, sha = found.groups()
    if distance == "0":
        return tag
    parts = tag.split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return f"{'.'.join(parts)}.dev{distance}+g{sha}"


def checkout_ref(source: Path, ref: str, cache: Path) -> tuple[Path, dict, dict]:
    """A clean tree of the app source at git ``ref`` (``git archive``: nothing uncommitted, nothing ignored), kept by
    commit: (directory, git facts, build environment). An app whose version comes from git (hatch-vcs,
    setuptools-scm) builds with the version the checkout would have (SETUPTOOLS_SCM_PRETEND_VERSION)."""

    def git(*args, text=True):
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=text, check=False)
        return done.returncode, done.stdout.strip() if text else done.stdout

    rc, sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if rc != 0:
        raise BadInput(
            f"-e asgi_git_ref={ref}: no such commit in {source} (a tag, a branch or a sha; git fetch first?)"
        )
    prefix = git("rev-parse", "--show-prefix")[1]
    home = cache / "git" / f"{sha[:16]}-{sha256_text(prefix)[:8]}"
    if not (home / "pyproject.toml").is_file():
        top = git("rev-parse", "--show-toplevel")[1]
        rc, archive = git("-C", top, "archive", "--format=tar", f"{sha}:{prefix}" if prefix else sha, text=False)
        if rc != 0:
            raise BadInput(f"-e asgi_git_ref={ref}: git archive of {source} failed")
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=home.parent))
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    described = git("describe", "--tags", "--long", "--always", sha)[1]
    facts = {"git_sha": sha, "git_describe": described, "dirty": False,
             "commit_time": git("show", "-s", "--format=%cI", sha)[1]}  # fmt: skip
    version = scm_version(described)
    return home, facts, ({"SETUPTOOLS_SCM_PRETEND_VERSION": version} if version else {})


def check_wheel_version(version, dist_name, app_version):
    if not same_version(version, app_version):
        raise BadInput(
            f"-e asgi_version={version} but the app is {dist_name} {app_version}: deploy version {app_version}, "
            f"or build the wheel from the source of {version} (a tag), or pass it with -e asgi_app_wheel=..."
        )


def resolve_source(cache, source, wheel, version, git_ref, allow_dirty):
    """(source, version, git facts, build environment): with ``git_ref``, a clean tree of that commit; with
    ``version`` None, the app's own (its metadata's, or git's through hatch-vcs or setuptools-scm)."""
    build_env = {}
    if git_ref:
        if not source:
            raise BadInput("-e asgi_git_ref needs the app's source (asgi_app_source, a git checkout), not a wheel")
        source, git, build_env = checkout_ref(Path(source).resolve(), git_ref, cache)
    if version is None:
        version = own_version(cache, source, wheel, build_env)
    if not re.match(VERSION_PATTERN, version):
        raise BadInput(f"version {version!r} is not a valid release version ([0-9A-Za-z.+_-], 64 max)")
    if not git_ref:
        git = source_state(source, wheel, allow_dirty)
    return source, version, git, build_env


def identify(
    app_name: str,
    version: str,
    lockfile: Path,
    tools_lockfile: Path,
    cache_dir: str | Path,
    source: Path | None = None,
    wheel: Path | None = None,
    git_sha: str = "",
    worker_class: str = "uvicorn_worker.UvicornWorker",
    allow_dirty: bool = False,
    build: str = "",
    git_ref: str = "",
) -> dict:
    """The release these inputs make, building the app wheel when needed. Everything a host would refuse
    later is refused here, before any host changes. ``version`` None is the app's own (its metadata's); with
    ``git_ref``, the source is a clean tree of that commit."""
    source, version, git, build_env = resolve_source(
        app_cache(cache_dir, app_name), source, wheel, version, git_ref, allow_dirty
    )
    cache = app_cache(cache_dir, app_name)
    given_lock, lockfile = Path(lockfile), export_lock(Path(lockfile), cache)
    check_server_stack(read_pins(lockfile)["pins"], worker_class, given_lock)
    tools, lock_sha = read_pins(Path(tools_lockfile))["pins"], sha256_file(lockfile)
    with locked(cache):
        wheel = app_wheel(cache, version, source, wheel, build_env)
        wheel_sha = sha256_file(wheel)
        dist_name, app_version = wheel_metadata(wheel)
        check_wheel_version(version, dist_name, app_version)
        # The build step makes part of the release: another step, another release.
        release_id = f"{version}-{sha256_text(wheel_sha + lock_sha + build)[:8]}"
        release, changed = release_record(
            cache,
            {
                "app": app_name,
                "release_id": release_id,
                "version": version,
                "app_version": app_version,
                "dist_name": dist_name,
                **git,
                "git_sha": git_sha or git["git_sha"],
                "lock_sha256": lock_sha,
                "app_wheel_sha256": wheel_sha,
                "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "built_by": f"{getpass.getuser()}@{socket.gethostname()}",
            },
        )
    return {
        "changed": changed,
        "release": release,
        "app_wheel": {"path": str(wheel), "filename": wheel.name, "sha256": wheel_sha},
        "app_requirement": f"{dist_name}=={app_version} --hash=sha256:{wheel_sha}\n",
        "worker_class": worker_class,
        "uv_version": next((t["version"] for t in tools if t["name"] == "uv"), ""),
        "lockfile": str(lockfile.resolve()),
        "given_lockfile": str(given_lock),
        "tools_lockfile": str(Path(tools_lockfile).resolve()),
        "cache": str(cache),
    }


def wheelhouse(artifacts: dict, target: dict, run: str = "") -> dict:
    """The offline wheelhouse of ``artifacts`` (from ``identify``) for one host ``target`` (``{python, full,
    machine, glibc, sys_platform}``), built when missing (checked once per ``run``), and the requirements that host
    installs."""
    lockfile = Path(artifacts["lockfile"])
    lock, tools = read_pins(lockfile), read_pins(Path(artifacts["tools_lockfile"]))["pins"]
    check_server_stack(
        select(lock, target), artifacts.get("worker_class", ""), artifacts.get("given_lockfile", lockfile), target
    )
    cache = Path(artifacts["cache"])
    with locked(cache):
        house = build_wheelhouse(lock, tools, target, cache, sha256_file(lockfile), run)
    release_id = artifacts["release"]["release_id"]
    house["requirements"] = (
        f"# asgi.deploy release {release_id} for {describe(target)}: the lock's pins for this host, and the app.\n"
        f"{house['requirements']}{artifacts['app_requirement']}"
    )
    return house


def shipment(house: dict, stored: list[str]) -> tuple[str, list[str]]:
    """The tarball a host gets for the wheelhouse ``house`` (from ``wheelhouse``) when its wheel store holds the
    wheels ``stored`` (sha256s), and the wheels in it: SHA256SUMS and the wheels the host lacks."""
    home = Path(house["path"])
    sums = read_sums(home)
    missing = sorted(name for name, digest in sums.items() if digest not in set(stored))
    if len(missing) == len(sums):
        return house["tarball"], missing
    tarball = home.parent / "{}-{}.tar".format(home.name, sha256_text(" ".join(missing))[:16])
    with locked(home.parent):
        if not tarball.is_file():
            deterministic_tar(home, tarball, ["SHA256SUMS", *missing])
    return str(tarball), missing


def check_targets(artifacts: dict, targets: list[dict]) -> list[str]:
    """Problems the lock has on some target (its markers leave out the server stack there), one per target."""
    lock = read_pins(Path(artifacts["lockfile"]))
    problems = []
    for target in {json.dumps(t, sort_keys=True): t for t in targets if t}.values():
        try:
            check_server_stack(
                select(lock, target), artifacts.get("worker_class", ""), artifacts.get("given_lockfile"), target
            )
        except BadInput as problem:
            problems.append(str(problem))
    return problems
