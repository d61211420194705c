# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The app's lock as its team has it, read with ``packaging``, and what it asks of each target host.

Three forms: a hashed requirements file (``uv pip compile --generate-hashes``, ``pip-compile``), a
``uv.lock`` (exported on the controller with ``uv export``), a ``pylock.toml`` (PEP 751, read with
``packaging.pylock``). Markers are judged for each *target host* - its machine, its full Python
version, its platform - never for the controller that reads the lock.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    from packaging.markers import InvalidMarker, Marker
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # reported where a lock is first read, as a problem of the controller's
    HAS_PACKAGING = False
else:
    HAS_PACKAGING = True

HASH = re.compile(r"--hash[= ]sha256:([0-9a-f]{64})")
# Lines of a requirements lock that say where the wheels come from: handed to the wheelhouse download.
INDEX_OPTIONS = {
    "--index-url": "--index-url",
    "-i": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "--find-links": "--find-links",
    "-f": "--find-links",
    "--trusted-host": "--trusted-host",
}
RELOCK = "uv pip compile --generate-hashes requirements.in -o requirements.lock"
# The server stack the units run, and the uvicorn releases the shutdown fix
# (roles/service/files/asgi_deploy_gunicorn.py) is tested against (make compat).
# Older than the range is refused; newer is shipped, with a warning, while the
# uvicorn wheel still has the shape the fix patches (artifacts.shutdown_fix_fits).
UVICORN_RANGE = (">=0.30.0", "<0.56")
UVICORN_TESTED = ("0.30.0", "0.55.0")


class BadInput(Exception):
    """Input the release must not be built from."""


def logical_lines(text):
    """A requirements file's entries, continuations joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        line = stripped if stripped.startswith("--hash") else raw.split(" #", 1)[0].strip()
        current = f"{current} {line.rstrip(chr(92)).strip()}".strip()
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    if current:
        lines.append(current)
    return lines


OPTION = re.compile(r"^(-{1,2}[A-Za-z][\w-]*)(?:[= ]\s*(.*))?$")


def _option(line, path):
    match = OPTION.match(line)
    flag, value = (match.group(1), match.group(2) or "") if match else (line, "")
    if flag in ("-e", "--editable"):
        raise BadInput(
            f"lockfile {path} installs the project itself ({line!r}): the app comes as its own wheel, so leave it "
            "out (`uv export --no-emit-project`, or drop the line)"
        )
    if flag not in INDEX_OPTIONS or not value:
        raise BadInput(
            f"lockfile {path}: {line!r} is not allowed in a release lock; option lines may only say where wheels "
            f"come from ({', '.join(sorted(set(INDEX_OPTIONS.values())))} URL)"
        )
    return INDEX_OPTIONS[flag], value.strip()


def _pin(entry, path):
    body = HASH.sub("", entry).strip()
    try:
        requirement = Requirement(body)
    except InvalidRequirement as exc:
        raise BadInput(f"lockfile {path}: cannot read {body!r}: {exc}") from None
    pinned = [spec for spec in requirement.specifier if spec.operator in ("==", "===") and "*" not in spec.version]
    return {
        "name": canonicalize_name(requirement.name),
        "version": pinned[0].version if len(pinned) == 1 and len(requirement.specifier) == 1 else "",
        "extras": sorted(requirement.extras),
        "marker": str(requirement.marker) if requirement.marker else "",
        "hashes": HASH.findall(entry),
    }


def parse_requirements(path):
    """(pins, index options) of a hashed requirements lock; every pin pinned with == and hashed."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"lockfile {path} does not exist")
    pins, options = [], []
    for entry in logical_lines(path.read_text()):
        if entry.startswith("-"):
            options.append(_option(entry, path))
        else:
            pins.append(_pin(entry, path))
    if not pins:
        raise BadInput(f"lockfile {path} lists no requirements")
    unpinned = [p["name"] for p in pins if not p["version"]]
    if unpinned:
        raise BadInput(f"lockfile {path}: requirements not pinned with ==: {', '.join(unpinned)}")
    unhashed = [p["name"] for p in pins if not p["hashes"]]
    if unhashed:
        raise BadInput(
            f"lockfile {path} has requirements without hashes: {', '.join(unhashed)} "
            "(compile it with `uv pip compile --generate-hashes`)"
        )
    return pins, options


def is_pylock(path):
    name = Path(path).name
    return name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml"))


def export_lock(lockfile, cache):
    """The lock as a file this module reads: a requirements file or a pylock.toml as they are; a uv.lock
    exported (``uv export``: hashes kept, dev groups and the project itself left out), kept by content."""
    lockfile = Path(lockfile)
    if not lockfile.is_file():
        raise BadInput(f"lockfile {lockfile} does not exist")
    if lockfile.name != "uv.lock":
        return lockfile
    digest = hashlib.sha256(lockfile.read_bytes())
    project = lockfile.parent / "pyproject.toml"
    if project.is_file():
        digest.update(project.read_bytes())
    out = Path(cache) / "locks" / f"uv.lock-{digest.hexdigest()[:16]}.txt"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(f"# asgi.deploy: exported from {lockfile}\n{_uv_export(lockfile)}")
        tmp.replace(out)
    return out


def _uv_export(lockfile):
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    # Where the wheels come from goes with them: a private index or a find-links directory the project names.
    argv = [uv, "export", "--frozen", "--no-emit-project", "--no-dev", "--no-header", "--no-annotate"]
    argv += ["--emit-index-url", "--emit-find-links"]
    argv += ["--format", "requirements-txt", "--project", str(lockfile.parent)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BadInput(f"cannot export {lockfile} with uv: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def load_pylock(path):
    import tomllib

    try:
        from packaging.pylock import Pylock, PylockValidationError
    except ImportError:
        raise BadInput(f"{path}: reading a pylock.toml needs packaging>=26.1 on the controller") from None
    try:
        return Pylock.from_dict(tomllib.loads(Path(path).read_text()))
    except (ValueError, PylockValidationError) as exc:
        raise BadInput(f"{path} is not a valid pylock.toml: {exc}") from None


def read_pins(lockfile):
    """{kind, pins, options, pylock}: every package of the lock, whatever the target."""
    if not HAS_PACKAGING:
        raise BadInput("the controller's Python lacks the packaging library (pip install packaging): it reads the lock")
    if is_pylock(lockfile):
        pylock = load_pylock(lockfile)
        pins = [_pylock_pin(package, lockfile) for package in pylock.packages if package.directory is None]
        return {"kind": "pylock", "pins": pins, "options": [], "pylock": pylock, "path": str(lockfile)}
    pins, options = parse_requirements(lockfile)
    return {"kind": "requirements", "pins": pins, "options": options, "pylock": None}


def _pylock_pin(package, path):
    hashes = [wheel.hashes["sha256"] for wheel in package.wheels or () if "sha256" in (wheel.hashes or {})]
    if not package.version or not hashes:
        raise BadInput(f"{path}: {package.name} has no pinned version with hashed wheels")
    return {
        "name": canonicalize_name(str(package.name)),
        "version": str(package.version),
        "extras": [],
        "marker": str(package.marker) if package.marker else "",
        "hashes": hashes,
    }


def _pylock_wheel(dist):
    """Where a pylock.toml's chosen wheel is: {url, path, name, sha256} (url or path may be empty)."""
    url, path = str(getattr(dist, "url", None) or ""), str(getattr(dist, "path", None) or "")
    name = str(getattr(dist, "name", None) or "") or (url or path).rsplit("/", 1)[-1]
    return {"url": url, "path": path, "name": name, "sha256": (getattr(dist, "hashes", None) or {}).get("sha256", "")}


def environment(target):
    """The marker environment of a target host (CPython on Linux): ``{python, full, machine, sys_platform}``."""
    full = target.get("full") or f"{target['python']}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": target["machine"],
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": target["python"],
        "sys_platform": target.get("sys_platform") or "linux",
    }


def platform_tags(machine, glibc):
    major, minor = (int(part) for part in glibc.split(".")[:2])
    if major != 2:
        raise BadInput(f"unsupported glibc {glibc}")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    tags += [f"{name}_{machine}" for name, floor in legacy.items() if minor >= floor]
    return tags


def target_tags(target):
    from packaging.tags import compatible_tags, cpython_tags

    version = tuple(int(p) for p in target["python"].split(".")[:2])
    platforms = [*platform_tags(target["machine"], target.get("glibc") or "2.17"), "linux_" + target["machine"]]
    return [*cpython_tags(version, platforms=platforms), *compatible_tags(version, platforms=platforms)]


def select(lock, target):
    """The pins a target host installs: markers judged for that host (and, in a pylock, its default groups)."""
    if lock["kind"] == "pylock":
        try:
            chosen = {
                canonicalize_name(str(p.name)): dist
                for p, dist in lock["pylock"].select(environment=environment(target), tags=target_tags(target))
                if dist is not None
            }
        except Exception as exc:  # packaging's PylockSelectError and friends: say which target
            raise BadInput(f"the pylock.toml has nothing to install for {describe(target)}: {exc}") from None
        # The wheel the lock records for this target, where it says it is: fetched from there, not from an index.
        return [{**pin, "wheel": _pylock_wheel(chosen[pin["name"]])} for pin in lock["pins"] if pin["name"] in chosen]
    env = environment(target)
    selected = []
    for pin in lock["pins"]:
        try:
            applies = not pin["marker"] or Marker(pin["marker"]).evaluate(env)
        except InvalidMarker as exc:
            raise BadInput(f"the lock's marker for {pin['name']} cannot be read: {exc}") from None
        if applies:
            selected.append(pin)
    return selected


def describe(target):
    return "Python {} on {} ({})".format(
        target.get("full") or target["python"], target["machine"], target.get("sys_platform") or "linux"
    )


def check_server_stack(pins, worker_class, lockfile, target=None):
    """The lock must bring what the units run - Gunicorn, and for Uvicorn workers uvicorn-worker and a uvicorn
    the collection's shutdown fix supports - for every target host (its markers may leave them out)."""
    found = {p["name"]: p["version"] for p in pins}
    wanted = ["gunicorn"] + (["uvicorn-worker", "uvicorn"] if worker_class != "asgi" else [])
    missing = [name for name in wanted if name not in found]
    if missing and target:
        raise BadInput(
            f"lockfile {lockfile}: its markers leave out {', '.join(missing)} for {describe(target)}, a host of this "
            "deploy: relock for that host's Python and platform (uv pip compile --universal, or uv lock)"
        )
    if missing:
        raise BadInput(
            f"lockfile {lockfile} lacks {', '.join(missing)}, which the units run: add {' '.join(missing)} to the "
            f"app's requirements and relock ({RELOCK}, or `uv add {' '.join(missing)} && uv lock`)"
        )
    if "uvicorn" in found:
        try:
            pinned = Version(found["uvicorn"])
        except InvalidVersion:
            pinned = None
        low = Version(UVICORN_RANGE[0].lstrip(">="))
        if pinned is None or pinned < low:
            raise BadInput(
                f"lockfile {lockfile} pins uvicorn {found['uvicorn']}; the collection supports uvicorn "
                f"{UVICORN_RANGE[0]} and later (its graceful-shutdown fix needs it): relock with "
                f"'uvicorn{UVICORN_RANGE[0]}'"
            )


def requirement_lines(pins):
    """Hashed requirement lines for exactly these pins (markers already judged for the target)."""
    lines = []
    for pin in sorted(pins, key=lambda p: p["name"]):
        extras = "[{}]".format(",".join(pin["extras"])) if pin["extras"] else ""
        lines.append(
            f"{pin['name']}{extras}=={pin['version']} " + " ".join(f"--hash=sha256:{h}" for h in pin["hashes"])
        )
    return "\n".join(lines) + "\n"
