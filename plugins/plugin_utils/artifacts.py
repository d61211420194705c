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

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


class BadInput(Exception):
    """Input the release must not be built from."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> list[dict]:
    """Return the lock's requirements; every one must be pinned and hashed."""
    if not path.is_file():
        raise BadInput(f"lockfile {path} does not exist")
    entries, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("--hash") else raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            entries.append(current.strip())
            current = ""
    if current:
        entries.append(current.strip())
    if not entries:
        raise BadInput(f"lockfile {path} lists no requirements")
    parsed, unpinned, unhashed = [], [], []
    for entry in entries:
        if entry.startswith(("-e", "--editable")):
            raise BadInput(
                f"lockfile {path} installs the project itself ({entry!r}): the app comes as its own wheel, so leave it "
                "out (`uv export --no-emit-project`, or drop the line)"
            )
        if entry.startswith("-"):
            raise BadInput(f"lockfile {path}: option lines are not allowed in a release lock: {entry!r}")
        match = PIN.match(entry)
        if not match:
            unpinned.append(entry.split()[0])
            continue
        hashes = HASH.findall(entry)
        if not hashes:
            unhashed.append(match.group(1))
        marker = entry.split(";", 1)[1].split("--hash")[0].strip() if ";" in entry else ""
        parsed.append(
            {"name": normalize(match.group(1)), "version": match.group(3), "marker": marker, "hashes": hashes}
        )
    if unpinned:
        raise BadInput(f"lockfile {path}: requirements not pinned with ==: {', '.join(unpinned)}")
    if unhashed:
        raise BadInput(
            f"lockfile {path} has requirements without hashes: {', '.join(unhashed)} "
            "(compile it with `uv pip compile --generate-hashes`)"
        )
    return parsed


def _packaging():
    try:
        from packaging import markers, version
    except ImportError:  # pip vendors packaging
        from pip._vendor.packaging import markers, version
    return markers, version


# The server stack the units run, and the uvicorn releases the shutdown fix
# (roles/service/files/asgi_deploy_gunicorn.py) is tested against (make compat).
UVICORN_RANGE = (">=0.30.0", "<0.55")
UVICORN_TESTED = ("0.30.0", "0.54.0")
RELOCK = "uv pip compile --generate-hashes requirements.in -o requirements.lock"


def check_server_stack(lock: list[dict], worker_class: str, lockfile: Path) -> None:
    """The lock must bring what the units run: Gunicorn, and for Uvicorn workers uvicorn-worker and a uvicorn
    the collection's shutdown fix supports."""
    found = {r["name"]: r["version"] for r in lock}
    wanted = ["gunicorn"] + (["uvicorn-worker", "uvicorn"] if worker_class != "asgi" else [])
    missing = [name for name in wanted if name not in found]
    if missing:
        raise BadInput(
            f"lockfile {lockfile} lacks {', '.join(missing)}, which the units run: add {' '.join(missing)} to the "
            f"app's requirements and relock ({RELOCK}, or `uv add {' '.join(missing)} && uv lock`)"
        )
    if "uvicorn" in found:
        _, version = _packaging()
        spec = version.Version(found["uvicorn"])
        low, high = (version.Version(bound.lstrip("<>=")) for bound in UVICORN_RANGE)
        if not low <= spec < high:
            raise BadInput(
                f"lockfile {lockfile} pins uvicorn {found['uvicorn']}; the collection supports uvicorn "
                f"{','.join(UVICORN_RANGE)} (its graceful-shutdown fix is tested against those): relock with "
                f"'uvicorn{','.join(UVICORN_RANGE)}'"
            )


def export_lock(lockfile: Path, cache: Path) -> Path:
    """A hashed requirements file for the lock as the user has it: a requirements file as it is; a uv.lock
    exported on the controller (uv export, hashes kept, the project itself left out); a pylock.toml
    converted. Converted locks are kept by content, so a repeat costs nothing."""
    lockfile = Path(lockfile)
    if not lockfile.is_file():
        raise BadInput(f"lockfile {lockfile} does not exist")
    name = lockfile.name
    if name != "uv.lock" and not (name.startswith("pylock.") and name.endswith(".toml")):
        return lockfile
    digest = hashlib.sha256(lockfile.read_bytes())
    project = lockfile.parent / "pyproject.toml"
    if name == "uv.lock" and project.is_file():
        digest.update(project.read_bytes())
    out = cache / "locks" / f"{name}-{digest.hexdigest()[:16]}.txt"
    if out.is_file():
        return out
    text = _uv_export(lockfile) if name == "uv.lock" else _from_pylock(lockfile)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(f"# asgi.deploy: exported from {lockfile}\n{text}")
    tmp.replace(out)
    return out


def _uv_export(lockfile: Path) -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    argv = [uv, "export", "--frozen", "--no-emit-project", "--no-dev", "--no-header", "--no-annotate"]
    argv += ["--format", "requirements-txt", "--project", str(lockfile.parent)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BadInput(f"cannot export {lockfile} with uv: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def _from_pylock(lockfile: Path) -> str:
    import tomllib

    try:
        data = tomllib.loads(lockfile.read_text())
    except ValueError as exc:
        raise BadInput(f"{lockfile} is not valid TOML: {exc}") from None
    lines, problems = [], []
    for package in data.get("packages", []):
        name = package.get("name", "?")
        if "directory" in package or "editable" in package:
            continue  # the project itself: the app ships as its own wheel
        hashes = [w["hashes"]["sha256"] for w in package.get("wheels", []) if w.get("hashes", {}).get("sha256")]
        if not package.get("version") or not hashes:
            problems.append(name)
            continue
        marker = f" ; {package['marker']}" if package.get("marker") else ""
        lines.append(f"{name}=={package['version']}{marker} " + " ".join(f"--hash=sha256:{h}" for h in hashes))
    if problems:
        raise BadInput(f"{lockfile}: packages without a pinned version and hashed wheels: {', '.join(problems)}")
    return "\n".join(lines) + "\n"


def verify_wheel(wheel: Path) -> None:
    """A wheel whose zip is sound and whose every file matches its RECORD."""
    import base64
    import csv

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
                algorithm, _, expected = row[1].partition("=")
                digest = hashlib.new(algorithm, archive.read(row[0])).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != expected:
                    raise BadInput(f"app wheel {wheel} is corrupt: {row[0]} does not match its RECORD hash")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise BadInput(f"app wheel {wheel} is corrupt: {exc}") from None


def same_version(given: str, built: str) -> bool:
    _, version = _packaging()
    try:
        return version.Version(given) == version.Version(built)
    except version.InvalidVersion:
        return given == built


def marker_applies(marker: str, python: str) -> bool:
    """Evaluate an environment marker for a CPython ``python`` on x86_64/aarch64 Linux."""
    if not marker:
        return True
    Marker = _packaging()[0].Marker
    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
    }
    return Marker(marker).evaluate(env)


def platform_tags(machine: str, glibc: str) -> list[str]:
    major, minor = (int(part) for part in glibc.split(".")[:2])
    if major != 2:
        raise BadInput(f"unsupported glibc {glibc}")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    tags += [f"{name}_{machine}" for name, floor in legacy.items() if minor >= floor]
    return tags


def wheel_metadata(wheel: Path) -> tuple[str, str]:
    """Return (normalized name, version) from a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = archive.read(meta).decode().split("\n\n", 1)[0]
    fields = dict(line.split(": ", 1) for line in headers.splitlines() if ": " in line)
    return normalize(fields["Name"]), fields["Version"]


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


def build_app_wheel(source: Path, out: Path) -> Path:
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
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
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


def git_sha_of(source: Path | None) -> str:
    if source is None:
        return "unknown"
    result = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def deterministic_tar(directory: Path, tarball: Path) -> None:
    tmp = tarball.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for path in sorted(directory.iterdir()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with path.open("rb") as stream:
                tar.addfile(info, stream)
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


def build_wheelhouse(lock: list[dict], tools: list[dict], target: dict, cache: Path, lock_sha: str) -> dict:
    python, machine, glibc = target["python"], target["machine"], target["glibc"]
    key = sha256_text(f"{lock_sha}|{json.dumps(tools, sort_keys=True)}|{python}|{machine}|{glibc}")[:16]
    home = cache / "wheelhouses" / key
    tarball = home.with_suffix(".tar")
    sums = home / "SHA256SUMS"
    if tarball.is_file() and sums.is_file():
        verify_wheelhouse(home, lock + tools)
        return describe_wheelhouse(key, home, tarball, python, built=False)

    wanted = [req for req in lock + tools if marker_applies(req["marker"], python)]
    staging = Path(tempfile.mkdtemp(prefix=f"wheelhouse-{key}-", dir=cache))
    try:
        reqs = staging / "requirements.txt"
        reqs.write_text(
            "".join(
                f"{r['name']}=={r['version']} " + " ".join(f"--hash=sha256:{h}" for h in r["hashes"]) + "\n"
                for r in wanted
            )
        )
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-deps", "--only-binary=:all:", "--require-hashes", "--implementation", "cp"]
        cmd += ["--python-version", python, "--abi", "cp" + python.replace(".", ""), "--abi", "abi3"]
        cmd += ["--abi", "none"]
        for tag in platform_tags(machine, glibc):
            cmd += ["--platform", tag]
        cmd += ["-d", str(staging / "wheels"), "-r", str(reqs)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BadInput(
                f"cannot assemble the wheelhouse for Python {python} on {machine} (glibc {glibc}) "
                f"from the lock:\n{result.stderr.strip()[-2000:]}"
            )
        wheels = staging / "wheels"
        (wheels / "SHA256SUMS").write_text(
            "".join(f"{sha256_file(w)}  {w.name}\n" for w in sorted(wheels.glob("*.whl")))
        )
        verify_wheelhouse(wheels, lock + tools)
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        wheels.rename(home)
        deterministic_tar(home, tarball)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return describe_wheelhouse(key, home, tarball, python, built=True)


def verify_wheelhouse(home: Path, reqs: list[dict]) -> None:
    """Every wheel must hash to a value the lock allows for its package."""
    allowed = {h for r in reqs for h in r["hashes"]}
    listed = {}
    for line in (home / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(None, 1)
        listed[name] = digest
    for wheel in sorted(home.glob("*.whl")):
        digest = sha256_file(wheel)
        if digest not in allowed or listed.get(wheel.name) != digest:
            raise BadInput(f"wheel {wheel} does not match the hashes in the lockfile (tampered?)")


def describe_wheelhouse(key: str, home: Path, tarball: Path, python: str, built: bool) -> dict:
    return {
        "key": key,
        "python": python,
        "path": str(home),
        "tarball": str(tarball),
        "sha256": sha256_file(home / "SHA256SUMS"),
        "built": built,
    }


def app_cache(cache_dir: str | Path, app_name: str) -> Path:
    return Path(cache_dir).expanduser().resolve() / normalize(app_name)


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
) -> dict:
    """The release these inputs make, building the app wheel when needed. Everything a host would refuse
    later is refused here, before any host changes."""
    if not VERSION.match(version):
        raise BadInput(f"version {version!r} is not a valid release version ([0-9A-Za-z.+_-], 64 max)")
    if bool(source) == bool(wheel):
        raise BadInput("give exactly one of an app source directory (asgi_app_source) or an app wheel (asgi_app_wheel)")
    cache = app_cache(cache_dir, app_name)
    given_lock = Path(lockfile)
    lockfile, tools_lockfile = export_lock(given_lock, cache), Path(tools_lockfile)
    check_server_stack(parse_lock(lockfile), worker_class, given_lock)
    tools = parse_lock(tools_lockfile)
    lock_sha = sha256_file(lockfile)
    with locked(cache):
        if wheel:
            wheel = Path(wheel)
            if not wheel.is_file():
                raise BadInput(f"app wheel {wheel} does not exist")
            wheel = wheel.resolve()
        else:
            source = Path(source).resolve()
            wheel = build_app_wheel(source, cache / "dist" / version)
        verify_wheel(wheel)
        wheel_sha = sha256_file(wheel)
        dist_name, app_version = wheel_metadata(wheel)
        if not same_version(version, app_version):
            raise BadInput(
                f"-e version={version} but the app is {dist_name} {app_version}: deploy version {app_version}, or "
                f"build the wheel from the source of {version} (a tag), or pass that wheel with -e app_wheel=..."
            )
        release_id = f"{version}-{sha256_text(wheel_sha + lock_sha)[:8]}"
        record = cache / "releases" / f"{release_id}.json"
        changed = False
        if record.is_file():
            release = json.loads(record.read_text())
        else:
            release = {
                "app": app_name,
                "release_id": release_id,
                "version": version,
                "app_version": app_version,
                "dist_name": dist_name,
                "git_sha": git_sha or git_sha_of(source),
                "lock_sha256": lock_sha,
                "app_wheel_sha256": wheel_sha,
                "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "built_by": f"{getpass.getuser()}@{socket.gethostname()}",
            }
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(release, indent=2, sort_keys=True))
            changed = True
    requirements = (
        f"# asgi.deploy release {release_id}: the lockfile plus the app wheel.\n"
        f"{lockfile.read_text().rstrip()}\n{dist_name}=={app_version} --hash=sha256:{wheel_sha}\n"
    )
    return {
        "changed": changed,
        "release": release,
        "app_wheel": {"path": str(wheel), "filename": wheel.name, "sha256": wheel_sha},
        "requirements": requirements,
        "uv_version": next((t["version"] for t in tools if t["name"] == "uv"), ""),
        "lockfile": str(lockfile.resolve()),
        "tools_lockfile": str(tools_lockfile.resolve()),
        "cache": str(cache),
    }


def wheelhouse(artifacts: dict, target: dict) -> dict:
    """The offline wheelhouse of ``artifacts`` (from ``identify``) for one host ``target``
    (``{python, machine, glibc}``), built when missing."""
    lockfile, tools_lockfile = Path(artifacts["lockfile"]), Path(artifacts["tools_lockfile"])
    lock, tools = parse_lock(lockfile), parse_lock(tools_lockfile)
    cache = Path(artifacts["cache"])
    with locked(cache):
        return build_wheelhouse(lock, tools, target, cache, sha256_file(lockfile))
